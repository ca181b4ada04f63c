"""The bad-input catalogue of evaluation: `keras-mim probe / knn / finetune` and the API
behind them (`keras_mim.evaluation`), in the style of tests/test_bad_inputs.py.

Every case must fail at once with a clear error (exit status 2 from the CLI, the expected
type from the API) whose message names the argument and the value, before the images are
decoded or anything trains (tripwires), and leave the user's files exactly as they were.
"""

import shutil
import zipfile

import keras
import numpy as np
import pytest

from keras_mim import ImageClassifier, LinearProbe, MaskedAutoencoder
from keras_mim.evaluation import fit_linear_probe, load_encoder, load_labelled_npz, scan_labelled_folder
from tests.test_bad_inputs import _snapshot, assert_refused

pytestmark = pytest.mark.one_backend  # end to end; the per-backend parts are tested on every backend elsewhere


@keras.saving.register_keras_serializable(package="tests_bad_inputs_eval")
class DenseHolder(keras.Model):
    """A model of another kind with an `.encoder` that is no encoder (a Dense layer)."""

    def __init__(self, encoder=None, **kwargs):
        super().__init__(**kwargs)
        self.encoder = keras.layers.Dense(2) if encoder is None else keras.saving.deserialize_keras_object(encoder)

    def call(self, x):
        return self.encoder(x)

    def get_config(self):
        return {**super().get_config(), "encoder": keras.saving.serialize_keras_object(self.encoder)}


def _png(path, value=128):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (16, 16), value).save(path)


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """What a user has in the working folder: a saved MAE, broken and foreign .keras files,
    .npz files and image folders, good and bad."""
    root = tmp_path_factory.mktemp("eval_workspace")
    MaskedAutoencoder.from_preset("mae_vit_test", num_channels=1, seed=0).save(root / "mae.keras")
    whole = (root / "mae.keras").read_bytes()
    (root / "truncated.keras").write_bytes(whole[: len(whole) // 2])
    (root / "random.keras").write_bytes(np.random.default_rng(0).bytes(300))
    (root / "old.keras").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    with zipfile.ZipFile(root / "foreign.keras", "w") as archive:
        archive.writestr("notes.txt", "a zip, but no Keras model")
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]).save(root / "sequential.keras")
    holder = DenseHolder()
    holder(np.zeros((1, 3), "float32"))
    holder.save(root / "holder.keras")
    x = np.zeros((4, 16, 16), "uint8")
    np.savez(root / "nolabels.npz", x_train=x, x_test=x)
    np.savez(root / "mismatch.npz", x_train=x, y_train=np.zeros(3, int), x_test=x, y_test=np.zeros(4, int))
    for name in ("a.png", "b.png"):
        _png(root / "flat" / name)
        _png(root / "oneclass" / "cats" / name)
    for i in range(3):
        _png(root / "small" / "cats" / f"{i}.png")
    for i in range(5):
        _png(root / "small" / "dogs" / f"{i}.png", 20)
    for split, classes in (("train", ("cats", "dogs")), ("val", ("cats", "owls"))):
        for name in classes:
            _png(root / "split" / split / name / "0.png")
    for name in ("cats", "dogs"):
        (root / "broken" / name).mkdir(parents=True)
        (root / "broken" / name / "x.png").write_bytes(b"not a png")
    (root / "notes.txt").write_text("my notes\n")
    return root


@pytest.fixture
def workspace(template, tmp_path, monkeypatch):
    work = tmp_path / "work"
    shutil.copytree(template, work)
    monkeypatch.chdir(work)
    return work


def _probe():
    return LinearProbe(MaskedAutoencoder.from_preset("mae_vit_test", num_channels=1).encoder, num_classes=2)


# (id, call, expected exception, regex the message must match)
API_EVAL_CASES = [
    ("API truncated .keras", lambda: load_encoder("truncated.keras"),
     ValueError, r"`path` 'truncated.keras' is truncated or damaged: it starts as a zip archive but does not open"),
    ("API random bytes .keras", lambda: load_encoder("random.keras"),
     ValueError, r"`path` 'random.keras' is not a Keras .keras archive \(not a zip file; it starts with b"),
    ("API missing .keras", lambda: load_encoder("missing.keras"),
     FileNotFoundError, r"`path` 'missing.keras' does not exist"),
    ("API plain Sequential", lambda: load_encoder("sequential.keras"),
     ValueError, r"`path` 'sequential.keras' holds a Sequential \(keras\), not a keras_mim encoder \(ViTEncoder\)"),
    ("API npz of mismatched lengths", lambda: load_labelled_npz("mismatch.npz"),
     ValueError, r"`path` 'mismatch.npz': y_train must be 4 non-negative integer labels \(one per image of "
                 r"x_train\), got shape \(3,\)"),
    ("API folder without class subfolders", lambda: scan_labelled_folder("flat"),
     ValueError, r"`path` 'flat' needs one subfolder per class .* 'flat/a.png' is directly in 'flat'"),
    ("API features of the wrong width", lambda: _probe().set_feature_statistics(np.zeros((4, 5))),
     ValueError, r"`features` must be \(N, 32\) pooled encoder features with N >= 2, got shape \(4, 5\)"),
    ("API probe recipe on a classifier",
     lambda: fit_linear_probe(ImageClassifier(_probe().encoder, 2), np.zeros((2, 16, 16, 1), "float32"), [0, 1]),
     TypeError, r"`probe` must be a keras_mim LinearProbe, got ImageClassifier"),
]

# (id, command line (the output folder is added), message on stderr); each exits with status 2
CLI_EVAL_CASES = [
    ("truncated .keras", ["probe", "truncated.keras"], "model 'truncated.keras' is truncated or damaged"),
    ("random bytes .keras", ["knn", "random.keras"], "model 'random.keras' is not a Keras .keras archive (not a zip"),
    ("Keras 2 HDF5 named .keras", ["finetune", "old.keras"],
     "model 'old.keras' is an HDF5 file (Keras 2's .h5 format), not a Keras 3 .keras archive"),
    ("zip without config.json", ["finetune", "foreign.keras"],
     "model 'foreign.keras' is not a Keras .keras archive: the zip holds no config.json (it holds notes.txt)"),
    ("plain Sequential passed to probe", ["probe", "sequential.keras"],
     "model 'sequential.keras' holds a Sequential (keras), not a keras_mim encoder (ViTEncoder) or a model "
     "holding one in `.encoder`"),
    ("model whose encoder is no encoder", ["knn", "holder.keras"],
     "model 'holder.keras' holds a DenseHolder whose `.encoder` is a Dense, not a keras_mim encoder"),
    ("npz without labels", ["knn", "mae.keras", "--data", "nolabels.npz"],
     "--data 'nolabels.npz' lacks y_train, y_test (has x_train, x_test); it needs x_train, y_train, x_test, y_test"),
    ("npz of mismatched lengths", ["probe", "mae.keras", "--data", "mismatch.npz"],
     "--data 'mismatch.npz': y_train must be 4 non-negative integer labels (one per image of x_train), "
     "got shape (3,)"),
    ("data neither folder nor npz", ["knn", "mae.keras", "--data", "notes.txt"],
     "--data 'notes.txt' must be a folder of class subfolders or a .npz file"),
    ("folder without class subfolders", ["probe", "mae.keras", "--data", "flat"],
     "--data 'flat' needs one subfolder per class (the labels are the subfolder names); 'flat/a.png' is directly"),
    ("folder of one class", ["knn", "mae.keras", "--data", "oneclass", "--k", "1"],
     "--data 'oneclass' holds one class ('cats'); classification needs 2 or more class subfolders"),
    ("folder of unreadable images", ["knn", "mae.keras", "--data", "broken"],
     "--data 'broken': No readable image under `path` 'broken'; skipped 2 file(s)"),
    ("train and val of other classes", ["knn", "mae.keras", "--data", "split"],
     "--data 'split': the classes of train/ (cats, dogs) and val/ (cats, owls) differ"),
    ("labels per class above the smallest class", ["probe", "mae.keras", "--data", "small", "--labels-per-class", "4"],
     "--labels-per-class 4 is more than the 2 training images of class 'cats', the smallest class"),
    ("labels per class above the digits'", ["finetune", "mae.keras", "--labels-per-class", "1000"],
     "--labels-per-class 1000 is more than the 139 training images of class 8, the smallest class"),
    ("k above a low-shot bank", ["knn", "mae.keras", "--labels-per-class", "1", "--k", "20"],
     "--k 20 is more than the 10 training images"),
    ("test fraction without a folder", ["knn", "mae.keras", "--test-fraction", "0.3"],
     "--test-fraction applies to --data FOLDER only"),
    ("test fraction 1", ["probe", "mae.keras", "--data", "small", "--test-fraction", "1"],
     "argument --test-fraction: must be a number in (0, 1), got '1'"),
]

EVAL_CASES = [case[0] for case in API_EVAL_CASES + CLI_EVAL_CASES]
LOADS_THE_MODEL = {"model whose encoder is no encoder"}  # only loading tells what `.encoder` holds


@pytest.mark.parametrize("call, error, message", [c[1:] for c in API_EVAL_CASES], ids=[c[0] for c in API_EVAL_CASES])
def test_api_bad_input(call, error, message, workspace):
    assert_refused(call, error, message, workspace)


@pytest.mark.parametrize("argv, message", [c[1:] for c in CLI_EVAL_CASES], ids=[c[0] for c in CLI_EVAL_CASES])
def test_cli_bad_input(argv, message, workspace, monkeypatch, capsys, request):
    from keras_mim import cli
    from keras_mim.cli import evaluate

    def tripwire(*args, **kwargs):
        raise AssertionError("heavy work began before the bad input was reported")

    monkeypatch.setattr(evaluate, "load_labelled", tripwire)  # decoding images, then training
    if request.node.callspec.id not in LOADS_THE_MODEL:
        monkeypatch.setattr(keras.saving, "load_model", tripwire)
    before = _snapshot(workspace)
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*argv, "--output", "runs/new"])
    assert exit_info.value.code == 2
    assert message in " ".join(capsys.readouterr().err.split())
    assert _snapshot(workspace) == before


def test_catalogue_size():
    assert len(set(EVAL_CASES)) == len(EVAL_CASES) >= 20
