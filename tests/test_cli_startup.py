"""The `keras-mim` command starts at once and quietly: its parsers, every `--help` and argument
errors import no Keras and no backend, `import keras_mim` imports Keras only when it is needed
(and still registers the model classes Keras loads), and the registry snapshot the parsers
read is the registries' own.

Three tests start their own Python process (import time cannot be seen in this one, where
Keras is loaded); they print their wall time.
"""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import time

import pytest

import keras_mim
from keras_mim import cli, registry_snapshot
from keras_mim.cli import common

pytestmark = pytest.mark.backend_independent

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
BACKEND_MODULES = {"keras", "tensorflow", "jax", "jaxlib", "torch"}
COMMANDS = ("pretrain", "probe", "knn", "finetune", "masks")


def _python(*args, env=None):
    """Run `python *args` in the repository; returns (result, wall seconds), the time printed."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO_ROOT, timeout=300,
                            env=dict(os.environ, COLUMNS="100", **(env or {})))
    seconds = time.perf_counter() - start
    print(f"python {' '.join(args)[:80]}: {seconds:.2f} s")
    return result, seconds


# ------------------------------------------------------------------- fresh processes
def test_argument_error_is_two_lines_and_imports_no_backend():
    result, _ = _python("-X", "importtime", "-m", "keras_mim.cli", "pretrain", "--epochs", "0")
    lines = result.stderr.splitlines()
    imported = {line.rsplit("|", 1)[-1].strip() for line in lines if line.startswith("import time:")}
    assert "keras_mim.cli" in imported
    assert not {name.split(".")[0] for name in imported} & BACKEND_MODULES
    assert result.returncode == 2
    assert [line for line in lines if not line.startswith("import time:")] == [
        "keras-mim pretrain: error: argument --epochs: must be a positive int, got '0'",
        "run 'keras-mim pretrain --help' for the options",
    ]


HELP_SCRIPT = """
import contextlib, io, json, sys, time
start = time.perf_counter()
from keras_mim import cli
texts, codes = {}, []
for argv in (["--help"], *([command, "--help"] for command in %r)):
    with contextlib.redirect_stdout(io.StringIO()) as out:
        try:
            cli.main(argv)
        except SystemExit as stop:
            codes.append(stop.code)
    texts[" ".join(argv)] = out.getvalue()
loaded = sorted(name for name in sys.modules if name.split(".")[0] in %r)
print(json.dumps({"codes": codes, "loaded": loaded, "texts": texts, "seconds": time.perf_counter() - start}))
"""


def test_every_help_imports_no_backend():
    result, _ = _python("-c", HELP_SCRIPT % (COMMANDS, sorted(BACKEND_MODULES)))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    print(f"keras-mim --help and {len(COMMANDS)} subcommands' --help: {report['seconds']:.2f} s in-process")
    assert report["codes"] == [0] * (1 + len(COMMANDS))
    assert report["loaded"] == []
    assert result.stderr == ""
    help_text = report["texts"]["pretrain --help"]
    for name, description in registry_snapshot.METHODS.items():  # one entry a line, in the registry's order
        assert f"\n  {name}:" in help_text and description[:20] in help_text
    for name in registry_snapshot.MASK_STRATEGIES:
        assert f"\n  {name}:" in help_text
    assert "--verbose" in help_text and "--verbose" in report["texts"]["masks --help"]


def test_plain_import_keras_mim_still_registers_the_models_keras_loads(tmp_path):
    path = tmp_path / "mae.keras"
    keras_mim.MaskedAutoencoder.from_preset("mae_vit_test").save(path)
    script = (
        "import sys\n"
        "import keras_mim\n"
        "assert 'keras' not in sys.modules and 'keras_mim.models' not in sys.modules, 'imported at once'\n"
        "import keras\n"  # after keras_mim: keras_mim.models is imported right after Keras
        f"model = keras.saving.load_model({str(path)!r})\n"
        "print(type(model).__name__, keras.backend.backend())\n"
    )
    result, _ = _python("-c", script, env={"KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["MaskedAutoencoder", "jax"]


# ------------------------------------------------------------------- in this process
def _tool():
    spec = importlib.util.spec_from_file_location("registry_snapshot_tool", REPO_ROOT / "tools" / "registry_snapshot.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_registry_snapshot_is_current():
    tool = _tool()
    assert tool.render() == tool.PATH.read_text(), "keras_mim/registry_snapshot.py is out of date: run " \
                                                   "python tools/registry_snapshot.py"


def test_every_public_name_resolves_lazily():
    from keras_mim.models import METHODS

    assert {spec.model.__name__ for spec in METHODS.values()} <= set(keras_mim.__all__)
    for name in keras_mim.__all__:
        assert getattr(keras_mim, name) is not None, name
    assert set(keras_mim.__all__) <= set(dir(keras_mim))
    assert keras_mim.MaskedAutoencoder is keras_mim.models.MaskedAutoencoder
    assert keras_mim.utils.to_2tuple(3, "x") == (3, 3)  # any submodule, as before
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        keras_mim.no_such_name  # noqa: B018


def test_argument_errors_print_two_lines(capsys):
    for argv, message in [
        (["pretrain", "--bogus"], "keras-mim pretrain: error: unrecognized arguments: --bogus"),
        (["masks", "--samples", "0"], "keras-mim masks: error: argument --samples: must be a positive int"),
        ([], "keras-mim: error: the following arguments are required: COMMAND"),
    ]:
        with pytest.raises(SystemExit) as stop:
            cli.main(argv)
        lines = capsys.readouterr().err.splitlines()
        prog = message.split(": error")[0]
        assert stop.value.code == 2 and lines[0].startswith(message)
        assert lines[1:] == [f"run '{prog} --help' for the options"]


def test_masking_choices_are_every_strategy(capsys):
    with pytest.raises(SystemExit):
        cli.main(["pretrain", "--masking", "chessboard"])
    err = capsys.readouterr().err
    assert "argument --masking: invalid choice: 'chessboard'" in err
    from keras_mim.masking import MASK_GENERATORS

    assert len(MASK_GENERATORS) == 16 and all(f"{name}" in err for name in MASK_GENERATORS)


def test_backend_logs_are_quiet_unless_verbose_or_set(monkeypatch):
    monkeypatch.setattr(common, "BACKEND_MODULES", ("no_backend_module_here",))
    for name in common.QUIET_LOGS:
        monkeypatch.delenv(name, raising=False)
    common.quiet_backend_logs(verbose=True)
    assert not set(common.QUIET_LOGS) & set(os.environ)
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")  # the user's own choice stays
    common.quiet_backend_logs(verbose=False)
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL")
    common.quiet_backend_logs(verbose=False)
    assert all(os.environ[name] == value for name, value in common.QUIET_LOGS.items())
