"""The shipped examples run end to end (one epoch). Each runs in its own process under
the backend given here, so the tests are backend-independent for pytest: once per CI run.
Both run on PyTorch, where they ran cheapest (measured back to back, one epoch: quickstart
torch 24-25 s vs TensorFlow 28-31 s, pretrain_then_evaluate torch 30 s vs TensorFlow 43 s
and JAX 62 s: eager steps, no graph tracing or XLA compile per model); TensorFlow and JAX
run user-facing code in the notebooks (tests/test_notebooks.py, `RUN_ON`)."""

import os
import pathlib
import subprocess
import sys

import pytest

pytestmark = pytest.mark.backend_independent

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_quickstart_example_runs(tmp_path):
    env = dict(os.environ, KERAS_BACKEND="torch", KERAS_MIM_EXAMPLE_EPOCHS="1", TF_CPP_MIN_LOG_LEVEL="3")
    out = tmp_path / "rec.png"
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py"), str(out)],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert out.exists() and "encoder features (8, 65, 64)" in result.stdout


def test_pretrain_then_evaluate_example_runs(tmp_path):
    env = dict(os.environ, KERAS_BACKEND="torch", KERAS_MIM_EXAMPLE_EPOCHS="1", TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "pretrain_then_evaluate.py")],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if "linear probe" in line]
    assert len(lines) == 2 and lines[0].startswith("MAE") and lines[1].startswith("random init")
