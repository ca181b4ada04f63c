"""Packaging: `python -m build` makes a wheel and an sdist; the wheel installed into a fresh
virtual environment (no editable install, run outside the repository) runs `keras-mim
pretrain --epochs 1` on the built-in data. The environment gets keras_mim only from the
wheel; its dependencies come from the test's own environment (PYTHONPATH to its
site-packages, whose .pth files, the editable keras_mim among them, are not read)."""

import glob
import os
import subprocess
import sys
import sysconfig
import zipfile

import pytest

pytestmark = [pytest.mark.backend_independent, pytest.mark.slow]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(args, **kwargs):
    result = subprocess.run(args, capture_output=True, text=True, timeout=600, **kwargs)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def test_wheel_installs_into_a_fresh_venv_and_pretrains(tmp_path):
    dist = tmp_path / "dist"
    # --no-isolation: the build backend (setuptools) of this environment, no download
    run([sys.executable, "-m", "build", "--no-isolation", "--wheel", "--sdist", "--outdir", str(dist), ROOT])
    wheels, sdists = glob.glob(str(dist / "*.whl")), glob.glob(str(dist / "*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1
    names = zipfile.ZipFile(wheels[0]).namelist()
    assert "keras_mim/models/masked_autoencoder.py" in names and not any(n.startswith("tests/") for n in names)

    env = tmp_path / "env"
    run([sys.executable, "-m", "venv", "--without-pip", str(env)])
    python = str(env / "bin" / "python")
    run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", wheels[0]])
    work = tmp_path / "work"
    work.mkdir()
    environ = dict(os.environ, PYTHONPATH=sysconfig.get_paths()["purelib"], KERAS_BACKEND="torch")
    where = run([python, "-c", "import keras_mim, os; print(os.path.realpath(keras_mim.__file__))"],
                cwd=work, env=environ).stdout.strip()
    assert where.startswith(os.path.realpath(env)), where  # the wheel's copy, not the repository
    out = run([str(env / "bin" / "keras-mim"), "pretrain", "--epochs", "1", "--num-images", "64",
               "--output", str(work / "run")], cwd=work, env=environ)
    assert os.path.isfile(work / "run" / "model.keras"), out.stdout[-2000:]
