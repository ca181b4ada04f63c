import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_mim import cli
from keras_mim.cli.common import QUIET_LOGS

pytestmark = pytest.mark.one_backend  # end to end: one pass of a CI run runs each test (tests/conftest.py);
# the per-backend parts (each method's fit, saving, the data pipelines) are tested on every backend

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = ["--epochs", "1", "--num-images", "32", "--batch-size", "16", "--preset", "mae_vit_test"]
RUN_FILES = {"model.keras", "config.json", "history.json", "history.csv", "reconstructions.png", "figures",
             "checkpoints"}  # and logs/ where TensorBoard is installed


def _pretrain(output, *extra):
    return cli.main(["pretrain", *TINY, "--output", str(output), *extra])


def _snapshot(folder):
    """{relative path: bytes} of every file under `folder`."""
    files = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, folder)] = f.read()
    return files


def _check_run_folder(run, backend):
    assert RUN_FILES <= set(os.listdir(run))
    assert os.listdir(run / "figures") == ["reconstruction_epoch0001.png"]
    with open(run / "reconstructions.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    history = json.loads((run / "history.json").read_text())
    assert history["backend"] == backend
    assert len(history["loss"]) == 1 and np.isfinite(history["loss"][0])
    assert history["final_loss"] == history["loss"][-1]
    assert np.isfinite(history["heldout_pixel_mse"])
    assert history["wall_time_s"] > 0 and len(history["epoch_time_s"]) == 1
    assert history["args"]["preset"] == "mae_vit_test"
    config = json.loads((run / "config.json").read_text())
    assert config["args"]["epochs"] == 1 and config["args"]["dataset"] == "digits"
    assert config["resolved"]["backend"] == backend
    assert config["resolved"]["num_train_images"] == 32
    # the fast path by default: both steps of an epoch in one call of the compiled step (JAX, TensorFlow)
    assert config["resolved"]["steps_per_execution"] == (1 if backend == "torch" else 2)
    assert config["versions"]["keras"] == keras.__version__
    csv_lines = (run / "history.csv").read_text().strip().splitlines()
    assert csv_lines[0].startswith("epoch") and len(csv_lines) == 2
    return history, config


def test_pretrain_tiny_run(tmp_path, capsys):  # JAX, TensorFlow: the CLI runs in tests/test_distribute.py too
    run = tmp_path / "run"
    backend = keras.backend.backend()
    assert _pretrain(run, "--backend", backend, "--seed", "3") == 0  # same backend: no restart
    out = capsys.readouterr().out
    assert f"backend {backend}" in out and "switching backend" not in out
    _, config = _check_run_folder(run, backend)
    assert config["args"]["seed"] == 3 and config["resolved"]["num_channels"] == 1
    model = keras.saving.load_model(run / "model.keras")
    out = model.predict(np.zeros((2, 16, 16, 1), "float32"), verbose=0)
    assert out["pred"].shape == (2, 16, 4 * 4 * 1)


def test_existing_non_empty_run_folder_is_refused_untouched(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    (run / "figures").mkdir(parents=True)
    (run / "notes.txt").write_text("mine")
    (run / "model.keras").write_bytes(b"old model")
    (run / "figures" / "reconstruction_epoch0001.png").write_bytes(b"old figure")
    before = _snapshot(run)
    monkeypatch.setattr(cli, "run_pretrain", lambda args: pytest.fail("training started"))
    with pytest.raises(SystemExit) as error:
        _pretrain(run)
    assert error.value.code == 2
    err = capsys.readouterr().err
    assert "already exists and is not empty" in err and "--overwrite" in err
    assert _snapshot(run) == before


def test_overwrite_replaces_only_this_commands_files(tmp_path):
    run = tmp_path / "run"
    (run / "figures").mkdir(parents=True)
    (run / "notes.txt").write_text("mine")
    (run / "model.keras").write_bytes(b"old model")
    (run / "figures" / "reconstruction_epoch0005.png").write_bytes(b"stale figure")
    (run / "figures" / "sketch.png").write_bytes(b"user figure")
    (run / "checkpoints" / "backup").mkdir(parents=True)  # an old run's state is never restored
    (run / "checkpoints" / "backup" / "training_metadata.json").write_text('{"epoch": 5, "batch": 0}')
    assert _pretrain(run, "--overwrite") == 0
    assert set(os.listdir(run)) - {"logs"} == RUN_FILES | {"notes.txt"}
    assert len(json.loads((run / "history.json").read_text())["loss"]) == 1
    assert (run / "notes.txt").read_text() == "mine"
    assert sorted(os.listdir(run / "figures")) == ["reconstruction_epoch0001.png", "sketch.png"]
    assert (run / "model.keras").read_bytes() != b"old model"
    keras.saving.load_model(run / "model.keras")


def test_empty_existing_folder_is_accepted(tmp_path, monkeypatch):
    run = tmp_path / "empty"
    run.mkdir()
    seen = []
    monkeypatch.setattr(cli, "run_pretrain", seen.append)
    assert _pretrain(run) == 0
    assert seen and seen[0].output == str(run)


def test_defaults_are_resolved(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(cli, "run_pretrain", seen.append)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["pretrain"]) == 0
    args = seen[0]
    assert args.dataset == cli.DEFAULT_DATASET
    assert args.preset == cli.DEFAULT_PRESETS[args.dataset]
    assert args.epochs == cli.DEFAULT_EPOCHS[args.dataset]
    assert args.batch_size == cli.DEFAULT_BATCH_SIZE
    assert args.learning_rate == cli.DEFAULT_LEARNING_RATE
    assert args.num_images == 1438  # the train split of load_labelled_digits
    assert os.path.dirname(args.output) == "runs" and os.path.basename(args.output).startswith("pretrain-")
    assert not os.path.exists(tmp_path / "runs")  # nothing written before training
    seen.clear()
    assert cli.main(["pretrain", "--dataset", "photos"]) == 0
    assert seen[0].preset == cli.DEFAULT_PRESETS["photos"] and seen[0].image_size == 32


def test_architecture_options_change_one_part_of_the_preset(tmp_path, monkeypatch):
    from keras_mim.cli import pretrain_run

    seen = []
    monkeypatch.setattr(cli, "run_pretrain", seen.append)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["pretrain", "--preset", "mae_vit_test", "--patch-size", "8", "--decoder-dim", "16",
                     "--decoder-depth", "2"]) == 0
    args = seen[0]
    assert args.num_tokens == 4  # 16 px / 8 px patches, squared
    assert "--patch-size 8 --decoder-dim 16 --decoder-depth 2" in args._resolved_command_line
    model = pretrain_run.build_model(args, 1)
    assert tuple(model.encoder.get_config()["patch_size"]) == (8, 8)
    decoder = model.decoder.get_config()
    assert (decoder["decoder_dim"], decoder["depth"], decoder["num_heads"]) == (16, 2, 2)  # the preset's heads
    assert decoder["output_dim"] == 8 * 8  # one grey 8 x 8 patch per token


@pytest.mark.parametrize("extra, warmup", [([], 5), (["--warmup-fraction", "0.1"], 10), (["--warmup-fraction", "0"], 0)])
def test_warmup_fraction_sets_the_warmup_steps(extra, warmup, tmp_path, monkeypatch):
    from keras_mim.cli import pretrain_run

    seen = []
    monkeypatch.setattr(cli, "run_pretrain", seen.append)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["pretrain", *TINY, *extra]) == 0
    optimizer, warmup_steps = pretrain_run._optimizer(seen[0], 100)  # 5% of 100 updates by default, as MAE
    assert warmup_steps == warmup
    rate = float(keras.ops.convert_to_numpy(optimizer.learning_rate))  # at step 0
    assert rate == (0.0 if warmup else pytest.approx(cli.DEFAULT_LEARNING_RATE))


@pytest.mark.every_backend
def test_jit_compile_auto_is_xla_on_jax_and_tensorflow():
    from keras_mim.cli.common import jit_compile_setting

    backend = keras.backend.backend()
    # Keras' own "auto" keeps a CPU-only TensorFlow in graph mode; XLA measured faster there.
    assert jit_compile_setting("auto") == (True if backend in ("jax", "tensorflow") else "auto")
    assert jit_compile_setting("auto", distributed=True) == (True if backend == "jax" else "auto")
    assert jit_compile_setting("true") is True and jit_compile_setting("false") is False


@pytest.mark.every_backend
def test_jit_compile_auto_weighs_the_expected_steps():
    from keras_mim.cli.common import AUTO_XLA_MIN_STEPS, jit_compile_setting

    backend = keras.backend.backend()
    short, long = AUTO_XLA_MIN_STEPS - 1, AUTO_XLA_MIN_STEPS
    # TensorFlow: graph mode for a short run (starts sooner), XLA for a long one.
    assert jit_compile_setting("auto", expected_steps=short) == {"tensorflow": False, "jax": True}.get(backend, "auto")
    assert jit_compile_setting("auto", expected_steps=long) == (True if backend in ("jax", "tensorflow") else "auto")
    # A distributed TensorFlow run keeps Keras' choice; an explicit choice is never changed.
    assert jit_compile_setting("auto", distributed=True, expected_steps=short) == (True if backend == "jax" else "auto")
    assert jit_compile_setting("true", expected_steps=1) is True


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--epochs", "0"], "argument --epochs: must be a positive int, got '0'"),
        (["--epochs", "-2"], "argument --epochs: must be a positive int"),
        (["--epochs", "1.5"], "argument --epochs: must be a positive int"),
        (["--batch-size", "0"], "argument --batch-size: must be a positive int"),
        (["--num-images", "0"], "argument --num-images: must be a positive int"),
        (["--mask-ratio", "1"], "argument --mask-ratio: must be a number in [0, 1), got '1'"),
        (["--mask-ratio", "-0.1"], "argument --mask-ratio: must be a number in [0, 1)"),
        (["--mask-ratio", "0.97", "--preset", "mae_vit_test"], "leaves no visible token out of 16"),
        (["--learning-rate", "0"], "argument --learning-rate: must be a positive number"),
        (["--preset", "mae_vit_gigantic"], "unknown preset 'mae_vit_gigantic'; available presets"),
        (["--dataset", "mnist"], "argument --dataset: invalid choice: 'mnist'"),
        (["--backend", "numpy"], "argument --backend: invalid choice: 'numpy'"),
        (["--jit-compile", "yes"], "argument --jit-compile: invalid choice"),
        (["--image-size", "18", "--preset", "mae_vit_test"], "--image-size 18"),
        (["--patch-size", "3"], "--image-size 16 is not divisible by the patch size (3, 3) of --patch-size"),
        (["--patch-size", "0"], "argument --patch-size: must be a positive int"),
        (["--decoder-dim", "30"], "--decoder-dim 30 is not a multiple of the 4 decoder heads of preset"),
        (["--method", "simmim", "--decoder-depth", "2"], "--decoder-depth applies to methods with a decoder of that setting; SimMIM"),
        (["--num-images", "5000"], "more than the 1438 digits of the train split"),
        (["--seed", "-1"], "argument --seed: must be a non-negative int"),
        (["--steps-per-execution", "0"], "argument --steps-per-execution: must be a positive int"),
        (["--warmup-fraction", "1"], "argument --warmup-fraction: must be a number in [0, 1)"),
        (["--weight-decay", "-1"], "--weight-decay must be a non-negative number"),
        (["--masking", "chessboard"], "argument --masking: invalid choice: 'chessboard' (choose from"),
        (["--masking", "tube"], "--masking tube cannot mask the 8x8 token grid"),
        (["--masking", "simmim", "--preset", "mae_vit_test"], "--masking simmim cannot mask the 4x4 token grid"),
        (["--masking", "grid", "--mask-ratio", "0.5"], "not `mask_ratio`=0.5".replace("`", "")),
        (["--method", "beit"], "argument --method: invalid choice: 'beit'"),
        (["--method", "mfm", "--masking", "block"], "--method mfm does not hide tokens (MFM takes no mask ratio)"),
        (["--method", "simmim", "--norm-pix-loss", "true"], "--norm-pix-loss applies to the methods mae"),
        (["--method", "maskalign"], "--method maskalign learns from a frozen teacher: pass --teacher"),
        (["--method", "mrmae", "--teacher", "missing.keras"], "--teacher 'missing.keras' must be an existing .keras file"),
        (["--teacher", "missing.keras"], "--teacher is only used by the methods milan, eva, maskalign, mrmae"),
        (["--target", "hog", "--method", "data2vec"], "--target applies to the methods mae, hpm, simmim, cae, mrmae"),
        (["--target", "sift"], "unknown --target 'sift'; expected one of fourier, hog, pixels"),
        (["--target", "hog", "--norm-pix-loss", "true"], "drop it with --target"),
        (["--method", "cropmae", "--preset", "cropmae_vit_test", "--num-images", "8", "--batch-size", "16"],
         "--num-images 8 is fewer than one batch of --batch-size 16 view pairs"),
        (["--gradient-accumulation", "5", "--epochs", "2", "--num-images", "32", "--batch-size", "16"],
         "--gradient-accumulation 5 exceeds the 4 training steps (2 epoch(s) x 2)"),
        (["--method", "spark", "--encoder", "vgg16"], "--encoder 'vgg16' is not an encoder of --method spark; "
                                                     "expected one of ['convnext_tiny', 'convnextv2_atto_64'"),
        (["--method", "mae", "--encoder", "resnet50"], "--encoder applies to the methods with encoder presets (fcmae, "
                                                       "hiera_mae, multimae, pointmae, satmae, spark)"),
        (["--method", "fcmae", "--encoder", "convnextv2_atto", "--preset", "fcmae_convnextv2_atto"],
         "give --encoder or --preset, not both"),
        (["--method", "fcmae", "--image-size", "48"], "--image-size 48 is not divisible by the patch size (32, 32)"),
        (["--method", "hiera_mae", "--image-size", "40"], "--image-size 40 is not divisible by the patch size (16, 16)"),
    ],
)
def test_bad_arguments_exit_2_before_training(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "run_pretrain", lambda args: pytest.fail("training started"))
    run = tmp_path / "run"
    with pytest.raises(SystemExit) as error:
        cli.main(["pretrain", *argv, "--output", str(run)])
    assert error.value.code == 2
    err = capsys.readouterr().err
    assert "keras-mim pretrain: error:" in err
    assert message in err
    assert not run.exists()


def test_too_few_images_names_what_the_user_gave(tmp_path, capsys, monkeypatch):
    """--data with 10 images (8 held out) and --batch-size 4: the folder's count, not --num-images."""
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(10):
        Image.fromarray(np.full((16, 16, 3), 20 * i, "uint8")).save(folder / f"{i}.png")
    monkeypatch.setattr(cli, "run_pretrain", lambda args: pytest.fail("training started"))
    with pytest.raises(SystemExit) as error:
        cli.main(["pretrain", "--data", str(folder), "--batch-size", "4", "--preset", "mae_vit_test",
                  "--output", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert error.value.code == 2 and "--num-images" not in err
    assert (f"the 2 training images of --data '{folder}' (8 more are held out for the figures) are fewer "
            "than one batch of --batch-size 4 (a partial last batch is dropped); use --batch-size 2 or less") in err


@pytest.mark.backend_independent
@pytest.mark.parametrize("extra, expected", [
    ([], (200, 32)),  # 40 images of 8 x 8 patches: far under the 15-minute budget, capped at 200 epochs
    (["--epochs", "3"], (3, 32)),  # what the user gives wins
    (["--preset", "mae_vit_test"], (20, 32)),  # another preset: the plain defaults
])
def test_data_runs_take_the_value_study_recipe(tmp_path, capsys, monkeypatch, extra, expected):
    from PIL import Image

    from keras_mim.cli.pretrain_options import data_recipe

    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(48):
        Image.fromarray(np.full((16, 16, 3), 5 * i, "uint8")).save(folder / f"{i}.png")
    seen = {}
    monkeypatch.setattr(cli, "run_pretrain", lambda args: seen.update(vars(args)))
    cli.main(["pretrain", "--data", str(folder), "--output", str(tmp_path / "run"), *extra])
    assert (seen["epochs"], seen["batch_size"]) == expected
    assert data_recipe(40, 64) == (200, 32) and data_recipe(20000, 49) == (12, 128) and data_recipe(5991, 49) == (36, 128)
    assert ("about 15 minutes of MAE training" in capsys.readouterr().out) == (not extra)


def test_encoder_picks_the_methods_preset(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(cli, "run_pretrain", lambda args: seen.update(vars(args)))
    cli.main(["pretrain", "--method", "spark", "--encoder", "resnet50", "--image-size", "64",
              "--output", str(tmp_path / "run")])
    assert seen["preset"] == "spark_resnet50" and seen["image_size"] == 64 and seen["num_tokens"] == 4
    cli.main(["pretrain", "--method", "hiera_mae", "--encoder", "hiera_tiny", "--image-size", "64",
              "--decoder-dim", "64", "--output", str(tmp_path / "run2")])
    assert seen["preset"] == "hiera_mae_hiera_tiny" and seen["num_tokens"] == 4  # 2 x 2 mask units of 32 px
    assert seen["decoder_dim"] == 64  # a decoder setting of the model itself (FCMAE, HieraMAE)


def test_unknown_preset_lists_presets(capsys):
    with pytest.raises(SystemExit):
        cli.main(["pretrain", "--preset", "nope"])
    err = capsys.readouterr().err
    for name in ("mae_vit_test", "mae_vit_nano_patch2_16", "mae_vit_base_patch16"):
        assert name in err


def test_output_that_is_a_file_is_refused(tmp_path, capsys):
    path = tmp_path / "file.txt"
    path.write_text("x")
    with pytest.raises(SystemExit) as error:
        cli.main(["pretrain", *TINY, "--output", str(path)])
    assert error.value.code == 2
    assert "is not a folder" in capsys.readouterr().err
    assert path.read_text() == "x"


def test_command_is_required_and_help_works(capsys):
    with pytest.raises(SystemExit) as error:
        cli.main([])
    assert error.value.code == 2
    with pytest.raises(SystemExit) as error:
        cli.main(["pretrain", "--help"])
    assert error.value.code == 0
    out = capsys.readouterr().out
    for option in ("--backend", "--preset", "--dataset", "--epochs", "--batch-size", "--mask-ratio",
                   "--learning-rate", "--output", "--overwrite", "--seed", "--jit-compile", "--num-images",
                   "--resume", "--config", "--verbose"):
        assert option in out


def _other_backend():
    return {"tensorflow": "jax", "jax": "torch", "torch": "jax"}[keras.backend.backend()]


def test_backend_switch_from_python_runs_a_child(tmp_path, monkeypatch):
    calls = []

    def fake_call(command, env):
        calls.append((command, env))
        return 0

    monkeypatch.setattr(cli.subprocess, "call", fake_call)
    monkeypatch.setattr(cli, "run_pretrain", lambda args: pytest.fail("trained in this process"))
    other = _other_backend()
    argv = ["pretrain", *TINY, "--output", str(tmp_path / "run"), "--backend", other]
    assert cli.main(argv) == 0
    (command, env), = calls
    assert command == [sys.executable, "-m", "keras_mim.cli", *argv]
    assert env["KERAS_BACKEND"] == other
    assert not (tmp_path / "run").exists()


def test_backend_flag_in_a_fresh_process_needs_no_restart_and_is_quiet(tmp_path):
    """`python -m keras_mim.cli pretrain --backend X` sets KERAS_BACKEND=X before Keras is
    imported: it runs on X without restarting, and hides the backends' C++ log lines. Its
    compiled step is kept in the compile cache (JAX, TensorFlow)."""
    current, other = keras.backend.backend(), _other_backend()
    run, cache = tmp_path / "run", tmp_path / "cache"
    env = {name: value for name, value in os.environ.items() if name not in QUIET_LOGS}  # the defaults apply
    env.update(KERAS_BACKEND=current, KERAS_MIM_COMPILE_CACHE=str(cache),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")  # JAX keeps programs that took 1 s+ by default
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    result = subprocess.run(
        [sys.executable, "-m", "keras_mim.cli", "pretrain", *TINY, "--output", str(run), "--backend", other],
        env=env, capture_output=True, text=True, timeout=600, cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "switching backend" not in result.stdout and f"backend {other}" in result.stdout
    # TensorFlow 2.21 logs its oneDNN notice whatever TF_CPP_MIN_LOG_LEVEL says on CPUs where it turns
    # oneDNN on by itself (AMX / AVX-512 VNNI, e.g. this CI machine's): that notice and absl's line
    # before it are the only C++ lines allowed through.
    lines = result.stderr.splitlines()
    notice = [i for i, line in enumerate(lines) if "oneDNN custom operations are on" in line]
    kept = [line for i, line in enumerate(lines) if i not in notice and i + 1 not in notice]
    for noise in ("cpu_feature_guard", "XLA service", "absl::InitializeLog"):  # TensorBoard imports TensorFlow
        assert not any(noise in line for line in kept), result.stderr
    history, _ = _check_run_folder(run, other)
    assert history["args"]["backend"] == other
    if other in ("jax", "tensorflow"):
        assert any(name.startswith(("jit_train_step", "xla_compile_cache")) for name in os.listdir(cache / other))


def test_pretrain_with_a_masking_strategy(tmp_path):
    assert _pretrain(tmp_path / "run", "--masking", "green") == 0
    model = keras.saving.load_model(tmp_path / "run" / "model.keras")
    assert type(model.mask_generator).__name__ == "ColorNoiseMaskGenerator"
    assert model.mask_generator.color == "green"


def test_pretrain_bfloat16_with_gradient_accumulation(tmp_path):
    run = tmp_path / "run"
    assert _pretrain(run, "--precision", "mixed_bfloat16", "--gradient-accumulation", "2", "--epochs", "2") == 0
    assert keras.mixed_precision.global_policy().name == "float32"  # restored after the run
    history = json.loads((run / "history.json").read_text())
    assert np.all(np.isfinite(history["loss"]))
    model = keras.saving.load_model(run / "model.keras")
    assert model.dtype_policy.name == "mixed_bfloat16"
    assert model.optimizer.gradient_accumulation_steps == 2
    assert int(model.optimizer.iterations) == 2  # updates: 2 epochs x 2 batches of 16 / 2
    assert json.loads((run / "config.json").read_text())["resolved"]["optimizer_updates"] == 2


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory):
    """A small frozen-teacher candidate: the test ViT encoder (16 px, 4 px patches, 1 channel)."""
    from keras_mim import ViTEncoder

    path = tmp_path_factory.mktemp("teacher") / "teacher.keras"
    encoder = ViTEncoder(image_size=16, patch_size=4, num_channels=1, embed_dim=32, depth=2, num_heads=2)
    encoder.save(path)
    return str(path)


def method_runs():
    """Every registered method but MAE (which the tests above run): its CLI run trains the
    method's test preset (clip methods on generated moving-shapes clips, CropMAE on view
    pairs of digits, SiamMAE on frame pairs of clips, MultiMAE on generated paired scenes, SatMAE on
    generated multispectral tiles)."""
    from keras_mim.models.methods import METHODS

    return sorted(name for name in METHODS if name != "mae")


@pytest.mark.backend_independent  # the CLI's wiring of each method; `fit` of each method on every
# backend is tests/models/test_method_suite.py's, the CLI's own per-backend path test_pretrain_tiny_run's
@pytest.mark.parametrize("method", method_runs())
def test_pretrain_each_method(method, tmp_path, teacher_file):
    from keras_mim.cli.pretrain_options import writes_figures
    from keras_mim.models.methods import get_method_spec

    spec = get_method_spec(method)
    preset, class_name, pixels = spec.test_preset, spec.model.__name__, writes_figures(spec)
    run = tmp_path / "run"
    extra = ["--teacher", teacher_file] if spec.teacher else []
    argv = ["pretrain", "--method", method, "--preset", preset, "--epochs", "1", "--num-images", "32",
            "--batch-size", "16", "--output", str(run), *extra]
    assert cli.main(argv) == 0
    history = json.loads((run / "history.json").read_text())
    config = json.loads((run / "config.json").read_text())
    assert config["args"]["preset"] == preset and config["resolved"]["model_class"] == class_name
    assert np.isfinite(history["loss"][0]) and np.isfinite(history["heldout_loss"])
    assert (run / "reconstructions.png").exists() == (pixels or spec.data == "points")  # points: 3D scatter plots
    assert (history["heldout_pixel_mse"] is not None) == pixels
    model = keras.saving.load_model(run / "model.keras")
    assert type(model).__name__ == class_name


@pytest.mark.parametrize("argv,match", [
    (["--method", "videomae", "--dataset", "digits"], "pretrains on clips; use --dataset shapes"),
    (["--method", "mae", "--dataset", "shapes"], "--dataset shapes holds clips"),
    (["--method", "siammae", "--dataset", "photos"], "pretrains on clips; use --dataset shapes"),
    (["--method", "videomae", "--preset", "mae_vit_test"], "needs a video preset"),
    (["--method", "mae", "--preset", "videomae_vit_test"], "is a video model"),
    (["--method", "videomae", "--masking", "grid"], "masks image token grids"),
    (["--method", "mae", "--masking", "dirichlet"], "dirichlet"),
])
def test_images_and_clips_do_not_mix(argv, match, tmp_path, capsys):
    with pytest.raises(SystemExit) as error:
        cli.main(["pretrain", *argv, "--output", str(tmp_path / "run")])
    assert error.value.code == 2 and match in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_method_with_another_methods_preset_keeps_its_own_settings(tmp_path):
    # MaskFeat's preset carries a HOG target; SimMIM on that architecture predicts pixels
    run = tmp_path / "run"
    argv = ["pretrain", "--method", "simmim", "--preset", "maskfeat_vit_test", "--epochs", "1",
            "--num-images", "16", "--batch-size", "16", "--output", str(run), "--figure-every", "0"]
    assert cli.main(argv) == 0
    model = keras.saving.load_model(run / "model.keras")
    assert getattr(model, "target", None) is None or type(model.target).__name__ != "HOGTarget"


def test_model_that_cannot_be_built_exits_before_writing(tmp_path, capsys):
    # HOG's 8 px cells do not fit 4 px patches: the library's message, nothing written
    run = tmp_path / "run"
    with pytest.raises(SystemExit) as error:
        cli.main(["pretrain", *TINY, "--target", "hog", "--output", str(run)])
    assert error.value.code == 2
    err = capsys.readouterr().err
    assert "keras-mim pretrain: error: --method mae with preset 'mae_vit_test'" in err and "cell" in err
    assert not run.exists()
