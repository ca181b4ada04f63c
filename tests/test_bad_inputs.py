"""The bad-input catalogue: each case feeds one bad input through the public API or the CLI.

Every case must raise at once a clear error (the expected type, and a message that names the
argument, the value and what was expected), before any heavy work (the CLI's data loading and
model building are replaced by tripwires), and leave everything the user had in the working
folder exactly as it was (a byte snapshot is compared before and after).
"""

import os

import numpy as np
import pytest

import keras_mim
from keras_mim import data, masking, optimizers

PRESET = "mae_vit_test"  # 16 px, 4 px patches, 3 channels


def _snapshot(folder):
    """{relative path: bytes} of every file under `folder` (folders included, as None)."""
    files = {}
    for root, dirs, names in os.walk(folder):
        for name in dirs:
            files[os.path.relpath(os.path.join(root, name), folder)] = None
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, folder)] = f.read()
    return files


def assert_refused(call, error, message, folder):
    """`call()` raises `error` with a message matching `message`, and every file under
    `folder` is as it was (the catalogue's API cases, in every test_bad_inputs*.py file)."""
    before = _snapshot(folder)
    with pytest.raises(error, match=message):
        call()
    assert _snapshot(folder) == before


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """A working folder with what a user typically has lying around: an earlier run folder,
    a saved model, an exported Hugging Face folder, a plain file."""
    run = tmp_path / "runs" / "earlier"
    run.mkdir(parents=True)
    (run / "config.json").write_text('{"command": "pretrain"}\n')
    (run / "history.csv").write_text("epoch,loss\n0,0.5\n")
    (tmp_path / "model.keras").write_bytes(b"PK\x03\x04 not really a model")
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text("{}\n")
    (tmp_path / "notes.txt").write_text("my notes\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _mae():
    return keras_mim.MaskedAutoencoder.from_preset(PRESET)


def _images(*shape, dtype="float32"):
    return np.zeros(shape, dtype)


def _nan_images():
    images = _images(3, 16, 16, 3)
    images[1, 4, 5, 0] = np.nan
    return images


def _empty_dataset():
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices(_images(0, 16, 16, 3))


# (id, call, expected exception, regex the message must match)
API_CASES = [
    ("unknown preset", lambda: keras_mim.MaskedAutoencoder.from_preset("mae_vit_nope"),
     ValueError, r"Unknown preset 'mae_vit_nope'; expected one of \[.*'mae_vit_test'"),
    ("image size not a multiple of the patch",
     lambda: keras_mim.ViTEncoder(image_size=30, patch_size=16, embed_dim=32, depth=1, num_heads=2),
     ValueError, r"`image_size` \(H, W\)=\(30, 30\) is not divisible by the patch size \(16, 16\)"),
    ("heads do not divide the width",
     lambda: keras_mim.ViTEncoder(image_size=32, patch_size=16, embed_dim=30, depth=1, num_heads=4),
     ValueError, r"`num_heads`=4 must divide `embed_dim`=30"),
    ("mask ratio 1", lambda: keras_mim.MaskedAutoencoder.from_preset(PRESET, mask_ratio=1.0),
     ValueError, r"`mask_ratio` must be in \[0, 1\), got 1.0"),
    ("negative mask ratio", lambda: keras_mim.SimMIM.from_preset("simmim_vit_test", mask_ratio=-0.1),
     ValueError, r"`mask_ratio` must be in \[0, 1\), got -0.1"),
    ("images without a channel axis", lambda: _mae().predict(_images(2, 16, 16), verbose=0),
     ValueError, r"`x` must be a batch of images \(B, H, W, C\), got rank 3 shape \(2, 16, 16\)"),
    ("wrong channel count", lambda: _mae()(_images(2, 16, 16, 5)),
     ValueError, r"`images` has 5 channels but the encoder expects `num_channels`=3"),
    ("integer pixels", lambda: _mae()(_images(2, 16, 16, 3, dtype="uint8")),
     TypeError, r"`images` must be a float tensor \(scaled pixels\), got dtype uint8"),
    ("mask generator ratio", lambda: masking.RandomMaskGenerator(mask_ratio=1.5),
     ValueError, r"`mask_ratio` must be in \[0, 1\), got 1.5"),
    ("block mask minimum", lambda: masking.BlockMaskGenerator(mask_ratio=0.4, min_num_patches=-1),
     ValueError, r"`min_num_patches` must be a positive int, got -1"),
    ("unknown sample dataset", lambda: data.load_sample_images("nope"),
     ValueError, r"Unknown sample dataset `name`='nope'; expected one of \['digits', 'photos'\]"),
    ("sample image size 0", lambda: data.load_sample_images("digits", image_size=0),
     ValueError, r"`image_size` must be a positive int or a pair of positive ints, got \(0, 0\)"),
    ("missing clip folder", lambda: data.ClipFolder("no/such/folder"),
     ValueError, r"`source` must be an existing folder, got 'no/such/folder'"),
    ("clip length 0", lambda: data.clip_dataset(_images(2, 4, 8, 8, 3), num_frames=0),
     ValueError, r"`num_frames` must be a positive int, got 0"),
    ("classifier with no classes",
     lambda: keras_mim.ImageClassifier(keras_mim.models.ViTEncoder(
         image_size=16, patch_size=4, embed_dim=32, depth=1, num_heads=2), num_classes=0),
     ValueError, r"`num_classes` must be a positive int, got 0"),
    ("unknown view method", lambda: data.view_dataset(_images(4, 16, 16, 3), method="nope"),
     ValueError, r"`method` must be one of \('cropmae', 'siammae', 'ibot'\), got 'nope'"),
    ("figure of an array, not a model",
     lambda: keras_mim.viz.plot_reconstructions(_images(2, 16, 16, 3), _images(2, 16, 16, 3)),
     TypeError, r"`model` must have a `reconstruct\(images, noise=None\)` method .* got ndarray"),
    ("Hugging Face export over an existing export",
     lambda: keras_mim.save_hf_pretrained(keras_mim.models.ViTEncoder(
         image_size=16, patch_size=4, embed_dim=32, depth=1, num_heads=2), "hf"),
     FileExistsError, r"`directory` 'hf' already holds config.json; .* overwrite=True"),
    ("Hugging Face export into a file",
     lambda: keras_mim.save_hf_pretrained(keras_mim.models.ViTEncoder(
         image_size=16, patch_size=4, embed_dim=32, depth=1, num_heads=2), "notes.txt"),
     ValueError, r"`directory` 'notes.txt' exists and is not a folder"),
    ("NaN pixels", lambda: data.image_dataset(_nan_images()),
     ValueError, r"`source` array holds NaN or inf pixels \(first in image 1\)"),
    ("infinite pixels", lambda: data.image_dataset(_images(2, 16, 16, 3) - np.inf),
     ValueError, r"`source` array holds NaN or inf pixels \(first in image 0\)"),
    ("empty image array", lambda: data.image_dataset(_images(0, 16, 16, 3)),
     ValueError, r"`source` array must be \(N, H, W\) or \(N, H, W, C\) with N >= 1, got shape \(0, 16, 16, 3\)"),
    ("int64 pixels", lambda: data.image_dataset(_images(2, 16, 16, 3, dtype="int64")),
     TypeError, r"`source` array must be uint8, uint16 or float, got dtype int64"),
    ("empty tf.data dataset", lambda: data.image_dataset(_empty_dataset()),
     ValueError, r"`source` dataset is empty \(it yields no element\)"),
    ("missing image folder", lambda: data.image_dataset("no/such/folder"),
     FileNotFoundError, r"`path` 'no/such/folder' does not exist"),
    ("folder without images", lambda: data.ImageFolder("runs/earlier"),
     ValueError, r"No image file \(.png, .jpg.*\) found under `path` 'runs/earlier'"),
    ("augmentation without an image size", lambda: data.image_dataset(_images(2, 16, 16, 3), augmentation="mae"),
     ValueError, r"`augmentation`='mae' needs `image_size`"),
    ("batch size 0", lambda: data.image_dataset(_images(2, 16, 16, 3), batch_size=0),
     ValueError, r"`batch_size` must be a positive int, got 0"),
    ("layer decay above 1",
     lambda: optimizers.layer_decay_multipliers(keras_mim.models.ViTEncoder(
         image_size=16, patch_size=4, embed_dim=32, depth=1, num_heads=2), layer_decay=1.5),
     ValueError, r"`layer_decay` must be a float in \(0, 1\], got 1.5"),
]


@pytest.mark.parametrize("call, error, message", [c[1:] for c in API_CASES], ids=[c[0] for c in API_CASES])
def test_api_bad_input(call, error, message, workspace):
    assert_refused(call, error, message, workspace)


def test_catalogue_size():
    assert len({c[0] for c in API_CASES}) == len(API_CASES)
    assert len(API_CASES) >= 20


# ----------------------------------------------------------------------------------- CLI
def _corrupt_folder(root):
    (root / "bad").mkdir()
    (root / "bad" / "a.png").write_bytes(b"not a png")
    (root / "bad" / "b.jpg").write_bytes(b"")
    return "bad"


# (id, pretrain arguments, or "masks" and its arguments (`{ws}` is the working folder), message on
# stderr); each exits 2
CLI_CASES = [
    ("epochs 0", ["--epochs", "0"], "argument --epochs: must be a positive int, got '0'"),
    ("CLI unknown preset", ["--preset", "mae_vit_gigantic"], "unknown preset 'mae_vit_gigantic'; available presets"),
    ("CLI mask ratio 1", ["--mask-ratio", "1"], "argument --mask-ratio: must be a number in [0, 1), got '1'"),
    ("missing data folder", ["--data", "no/such/folder"], "--data 'no/such/folder': `path` 'no/such/folder' does not exist"),
    ("empty data folder", ["--data", "runs/empty"], "No image file (.png, .jpg"),
    ("only corrupt images", ["--data", "bad"], "No readable image under `path` 'bad'; skipped 2 file(s)"),
    ("unprepared tfds set", ["--data", "tfds:mnist", "--data-dir", "{ws}/tfds"],
     "is not prepared under `data_dir`"),
    ("unknown tfds set", ["--data", "tfds:no_such_set_xyz", "--data-dir", "{ws}/tfds"],
     "TensorFlow Datasets has no dataset 'no_such_set_xyz'"),
    ("data and dataset", ["--data", "bad", "--dataset", "digits"], "--data and --dataset both choose"),
    ("output is a file", ["--output", "notes.txt"], "--output 'notes.txt' exists and is not a folder"),
    ("output is an earlier run", ["--output", "runs/earlier"], "run folder 'runs/earlier' already exists and is not empty"),
    ("unwritable output", ["--output", "/proc/keras-mim-run"], "--output '/proc/keras-mim-run' is not writable"),
    ("output under a file", ["--output", "notes.txt/run"], "notes.txt/run' cannot be created"),
    ("resume a missing run", ["--resume", "runs/missing"], "--resume 'runs/missing': no such run folder"),
    ("resume a folder that is no run", ["--resume", "hf"], "is not the config.json of a keras-mim pretrain run"),
    ("config not JSON", ["--config", "notes.txt"], "--config 'notes.txt' is not valid JSON"),
    ("missing teacher", ["--method", "mrmae", "--teacher", "missing.keras"],
     "--teacher 'missing.keras' must be an existing .keras file"),
    ("video method on images", ["--method", "videomae", "--dataset", "digits"], "--method videomae pretrains on clips"),
    ("float16 precision", ["--precision", "float16"], "argument --precision: invalid choice: 'float16'"),
    ("accumulation beyond the run",
     ["--gradient-accumulation", "1000", "--epochs", "1", "--num-images", "32", "--batch-size", "16"],
     "--gradient-accumulation 1000 exceeds the 2 training steps"),
    ("unknown backend", ["--backend", "numpy"], "argument --backend: invalid choice: 'numpy'"),
    ("unknown masking strategy", ["--masking", "chessboard"],  # listing all 14: tests/test_cli_startup.py
     "argument --masking: invalid choice: 'chessboard'"),
    ("monitor without labelled images", ["--monitor-every", "2"],
     "--monitor-every 2 needs labelled images: --monitor-data FOLDER of class subfolders"),
    ("monitor data not a folder", ["--monitor-every", "1", "--monitor-data", "notes.txt"],
     "--monitor-data 'notes.txt' is not a folder"),
    ("masks image file missing", ["masks", "--image", "photos/cat.png"],
     "--image 'photos/cat.png': no such file, and not a scikit-image sample photo"),
    ("masks output exists", ["masks", "--output", "notes.txt"],
     "--output 'notes.txt' already exists; choose another file or pass --overwrite"),
    ("masks output is a folder", ["masks", "--output", "hf", "--overwrite"],
     "--output 'hf' is a folder; give the PNG file to write"),
]


@pytest.mark.parametrize("argv, message", [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_cli_bad_input(argv, message, workspace, monkeypatch, capsys):
    from keras_mim import cli
    from keras_mim.cli import pretrain_run

    def tripwire(*args, **kwargs):
        raise AssertionError("heavy work began before the bad input was reported")

    monkeypatch.setattr(pretrain_run, "load_data", tripwire)
    monkeypatch.setattr(pretrain_run, "build_model", tripwire)
    (workspace / "runs" / "empty").mkdir()
    _corrupt_folder(workspace)
    before = _snapshot(workspace)
    argv = [a.format(ws=workspace) for a in argv]
    if argv[0] != "masks" and "--output" not in argv and "--resume" not in argv:
        argv += ["--output", "runs/new"]
    if argv[0] == "masks":
        monkeypatch.setattr(cli, "run_masks", tripwire)
    elif "--preset" not in argv and "--resume" not in argv and "--config" not in argv and "--method" not in argv:
        argv = ["pretrain", "--preset", PRESET, *argv]
    else:
        argv = ["pretrain", *argv]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert _snapshot(workspace) == before


def test_catalogue_has_thirty_distinct_cases():
    assert len({c[0] for c in API_CASES + CLI_CASES}) == len(API_CASES) + len(CLI_CASES) >= 30


@pytest.mark.backend_independent
def test_catalogue_holds_sixty_distinct_cases():
    """The whole catalogue: this file, the data, evaluation and run-folder files, the Hugging Face export."""
    from tests.checkpoints.test_hf import HF_CASES
    from tests.test_bad_inputs_data import DATA_CASES
    from tests.test_bad_inputs_eval import EVAL_CASES
    from tests.test_bad_inputs_run import RUN_CASES

    ids = [c[0] for c in API_CASES + CLI_CASES] + DATA_CASES + EVAL_CASES + RUN_CASES + HF_CASES
    assert len(set(ids)) == len(ids) >= 60, (len(set(ids)), len(ids))
