"""`.keras` files saved under each backend load under the current one with the same outputs.

The test suite runs once per backend; in each pass the current backend is the loader
and the three backends are the savers, so the three passes cover all 9 (saver, loader)
pairs, with no skips. A saver (tests/cross_backend_worker.py, one per backend, all its
models in one process: a child process, or the test's own for its own backend) writes each
model's `.keras` file and its reference outputs on fixed inputs and fixed masking noise
(`.npz`). The files are
made once per CI run (`tools/test.sh` shares them between its passes) or once per test
session, and shared by the pytest-xdist workers (a lock per saver).

Tolerance: outputs agree to rtol 1e-5 with an absolute floor of 1e-5 x the largest
reference value (float32 kernels differ between backends: oneDNN, XLA:CPU, ATen sum in
other orders). Masks and `ids_restore` must be identical; the optimizer's variables too
(they are only stored and read back, never recomputed). Measured on this machine: see
`MAX_DIFFS` in the report of the change that added this file (largest ~1e-6).
"""

import fcntl
import json
import os
import pathlib
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest

from tests import cross_backend_worker
from tests.cross_backend_worker import MODELS, optimizer_state

BACKEND = keras.backend.backend()
SAVERS = ("tensorflow", "jax", "torch")
WORKER = pathlib.Path(__file__).with_name("cross_backend_worker.py")
REPO_ROOT = WORKER.parents[1]
RTOL = 1e-5


def make_files(saver, folder):
    """Run the worker under `saver` into `folder` once; a marker file records success. The
    saver of this process's own backend runs here (`cross_backend_worker.main`): a child
    would only add its start-up (~10-15 s of imports) to the same work."""
    done = folder / "done.json"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f"{saver}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another xdist worker may be writing it now
        if not done.exists() and saver == BACKEND:
            done.write_text(json.dumps(cross_backend_worker.main(folder)))
        elif not done.exists():
            env = dict(os.environ, KERAS_BACKEND=saver, TF_CPP_MIN_LOG_LEVEL="3")
            proc = subprocess.run([sys.executable, str(WORKER), str(folder)], env=env, cwd=REPO_ROOT,
                                  capture_output=True, text=True, timeout=600)
            assert proc.returncode == 0, f"saver {saver} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
            (line,) = [s for s in proc.stdout.splitlines() if s.startswith("RESULT ")]
            done.write_text(line[len("RESULT "):])
    return folder


@pytest.fixture(scope="session")
def saved(tmp_path_factory):
    """`saved(backend)` -> folder with the `.keras` / `.npz` files that backend wrote.

    `tools/test.sh` sets `KERAS_MIM_TEST_SHARED` to one folder for all its passes, so each
    saver runs once per CI run (3 processes, not 3 per pass); otherwise once per session."""
    shared = os.environ.get("KERAS_MIM_TEST_SHARED")
    if shared:
        root = pathlib.Path(shared) / "cross_backend"
    else:
        base = tmp_path_factory.getbasetemp()
        root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "cross_backend"
    return lambda saver: make_files(saver, root / saver)


def without_ids(config):
    """A serialized config without Keras' per-process `shared_object_id` entries."""
    if isinstance(config, dict):
        return {k: without_ids(v) for k, v in config.items() if k != "shared_object_id"}
    if isinstance(config, list):
        return [without_ids(v) for v in config]
    return config


def stored_config(path):
    """The model config written in a `.keras` archive."""
    with zipfile.ZipFile(path) as archive:
        return without_ids(json.loads(archive.read("config.json"))["config"])


def assert_close(name, actual, expected):
    """Integers equal, floats within RTOL (floor: RTOL x the largest |expected|); the max abs diff."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != saved {expected.shape}"
    if not np.issubdtype(expected.dtype, np.floating):
        np.testing.assert_array_equal(actual, expected, err_msg=name)
        return 0.0
    atol = RTOL * float(np.max(np.abs(expected)))
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=atol, err_msg=name)
    return float(np.max(np.abs(actual.astype("float64") - expected)))


@pytest.mark.parametrize("model_name", list(MODELS))
@pytest.mark.parametrize("saver", SAVERS, ids=lambda s: f"{s}-to-{BACKEND}")
def test_keras_file_loads_with_the_same_outputs(saved, saver, model_name):
    folder = saved(saver)
    assert json.loads((folder / "done.json").read_text())["backend"] == saver
    path = folder / f"{model_name}.keras"
    reference = np.load(folder / f"{model_name}.npz")
    inputs = {k[len("in_"):]: reference[k] for k in reference.files if k.startswith("in_")}
    expected = {k[len("out_"):]: reference[k] for k in reference.files if k.startswith("out_")}
    optimizer = {k[len("opt_"):]: reference[k] for k in reference.files if k.startswith("opt_")}

    model = keras.saving.load_model(path)
    serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(model)))
    assert without_ids(serialized["config"]) == stored_config(path)
    outputs = MODELS[model_name][1](model, inputs)
    assert sorted(outputs) == sorted(expected)
    diffs = {key: assert_close(f"{saver} -> {BACKEND} {model_name} {key}", outputs[key], expected[key])
             for key in expected}
    print(f"max abs diff {saver} -> {BACKEND} {model_name}: " + json.dumps(diffs))

    state = optimizer_state(model)
    assert sorted(state) == sorted(optimizer) and len(optimizer) > 2
    for key, value in optimizer.items():
        np.testing.assert_array_equal(state[key], value, err_msg=f"optimizer variable {key}")
    assert int(model.optimizer.iterations) == 1  # the saver's one update
