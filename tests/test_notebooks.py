"""The tutorial notebooks in examples/ are well formed and run end to end.

Each notebook is executed with nbclient in a fresh IPython kernel with
KERAS_MIM_EXAMPLE_EPOCHS=1 (CI mode), in a temporary working directory, under the
backend `RUN_ON` gives it (KERAS_BACKEND is passed to the kernel): the kernel is its own
process, so these tests are backend-independent for pytest and run once per CI run, each
notebook on one backend and every backend running one (04 itself saves under all three). The kernel is
a kernelspec written by the fixture that starts this very interpreter
(`sys.executable -m ipykernel_launcher`), so the notebooks see the same environment as
the tests, whatever kernels are registered on the machine. Needs the dev extras
nbclient, nbformat and ipykernel.
"""

import importlib.util
import json
import os
import pathlib
import re
import sys
import time

import pytest

pytestmark = pytest.mark.backend_independent

ROOT = pathlib.Path(__file__).resolve().parents[1]
CELL_TIMEOUT = 600
KERNEL = "keras-mim-tests"


def load_checker():
    spec = importlib.util.spec_from_file_location("check_notebooks", ROOT / "tools" / "check_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


checker = load_checker()
NOTEBOOKS = [p.name for p in checker.notebooks()]
EXPECTED = ["01_mae_quickstart.ipynb", "02_masking_strategies.ipynb", "03_your_own_folder.ipynb",
            "04_switching_backends.ipynb"]
#: The backend each notebook's kernel runs: every backend runs one, each notebook on its
#: cheapest (seconds, one run each on a busy 2-core machine: 01 TensorFlow 32 / torch 46 / JAX 58;
#: 02 torch 24 / JAX 35 / TensorFlow 41, JAX compiling every mask generator's and model's eager
#: ops; 03 torch 39 / TensorFlow 61; 04 JAX 76 / torch 83 / TensorFlow 101, and 04 trains and
#: loads under all three whichever its kernel runs).
RUN_ON = {"01_mae_quickstart.ipynb": "tensorflow", "02_masking_strategies.ipynb": "torch",
          "03_your_own_folder.ipynb": "torch", "04_switching_backends.ipynb": "jax"}


@pytest.fixture(scope="session")
def nbclient_modules():
    try:
        import nbclient
        import nbformat
    except ImportError as error:
        pytest.fail(f"the notebook tests need the dev extras nbclient, nbformat and ipykernel: {error}")
    return nbclient, nbformat


@pytest.fixture(scope="session")
def kernel_dir(tmp_path_factory, nbclient_modules):
    """A JUPYTER_PATH with a kernelspec that runs this interpreter's ipykernel."""
    try:
        import ipykernel  # noqa: F401
    except ImportError as error:
        pytest.fail(f"the notebook tests need the dev extra ipykernel: {error}")
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "keras-mim tests", "language": "python",
    }))
    return root


def execute(name, backend, kernel_dir, workdir, nbclient_modules):
    """Run examples/`name` in `workdir` under `backend`; the executed notebook and its wall time (s)."""
    nbclient, nbformat = nbclient_modules
    nb = nbformat.read(ROOT / "examples" / name, as_version=4)
    env = dict(os.environ, KERAS_BACKEND=backend, KERAS_MIM_EXAMPLE_EPOCHS="1", TF_CPP_MIN_LOG_LEVEL="3",
               JUPYTER_PATH=os.pathsep.join([str(kernel_dir), os.environ.get("JUPYTER_PATH", "")]).rstrip(os.pathsep))
    env.pop("MPLBACKEND", None)  # the kernel picks its inline backend
    old = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = env["JUPYTER_PATH"]  # the kernelspec lookup happens in this process
    try:
        client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name=KERNEL,
                                         resources={"metadata": {"path": str(workdir)}})
        start = time.perf_counter()
        client.execute(env=env)
        seconds = time.perf_counter() - start
    finally:
        if old is None:
            os.environ.pop("JUPYTER_PATH", None)
        else:
            os.environ["JUPYTER_PATH"] = old
    return nb, seconds


def text_output(nb):
    """All stdout / stream and text/plain output of the executed notebook, joined."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                parts.append(out.text)
            elif "data" in out and "text/plain" in out.data:
                parts.append(out.data["text/plain"])
    return "\n".join(parts)


def png_outputs(nb):
    return sum("image/png" in out.get("data", {}) for cell in nb.cells for out in cell.get("outputs", []))


def number_after(label, text):
    match = re.search(re.escape(label) + r"\s*([-+0-9.e]+)", text)
    assert match, f"{label!r} not printed; output:\n{text[-3000:]}"
    return float(match.group(1))


def check_quickstart(nb, text, workdir, backend):
    assert "encoder features (8, 65, 64)" in text
    assert (workdir / "reconstructions.png").is_file() and (workdir / "mae_digits.keras").is_file()
    assert number_after("max |difference| after the round trip:", text) < 1e-5
    assert png_outputs(nb) >= 1


def check_masking(nb, text, workdir, backend):
    from keras_mim.masking import MASK_GENERATORS

    assert (workdir / "mask_gallery.png").is_file() and png_outputs(nb) >= 1
    for name in MASK_GENERATORS:  # every strategy was drawn and counted
        assert re.search(rf"^{name}\s+hides", text, re.M), f"no line for strategy {name!r}"
    assert "custom centre mask hides 4 of 16 tokens" in text


def check_folder(nb, text, workdir, backend):
    assert (workdir / "my_images").is_dir() and (workdir / "pretrained.keras").is_file()
    for label in ("linear probe top-1", "fine-tuned top-1"):
        assert 0.0 <= number_after(label, text) <= 1.0
    assert png_outputs(nb) >= 1


def check_backends(nb, text, workdir, backend):
    for saver in ("tensorflow", "jax", "torch"):
        assert (workdir / f"mae_{saver}.keras").is_file()
    diffs = re.findall(r"saved under (\w+), loaded under (\w+): max \|diff\| ([-+0-9.e]+)", text)
    assert {(a, b) for a, b, _ in diffs} >= {(s, backend) for s in ("tensorflow", "jax", "torch")}, text[-3000:]
    assert all(float(d) < 1e-4 for _, _, d in diffs), diffs


CHECKS = {"01_mae_quickstart.ipynb": check_quickstart, "02_masking_strategies.ipynb": check_masking,
          "03_your_own_folder.ipynb": check_folder, "04_switching_backends.ipynb": check_backends}


def test_the_four_notebooks_exist():
    assert NOTEBOOKS == EXPECTED and set(RUN_ON) == set(NOTEBOOKS)
    assert set(RUN_ON.values()) == {"tensorflow", "jax", "torch"}


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_structure(name, nbclient_modules):
    """Colab badge with its own file name, install cell, backend cell, no stored outputs."""
    assert checker.problems(ROOT / "examples" / name) == []


def test_checker_reports_outputs_and_a_wrong_badge(tmp_path, nbclient_modules):
    _, nbformat = nbclient_modules
    nb = nbformat.read(ROOT / "examples" / EXPECTED[0], as_version=4)
    nb.cells[4].outputs = [nbformat.v4.new_output("stream", text="hi")]
    nb.cells[4].execution_count = 1
    path = tmp_path / "05_other.ipynb"  # the badge still names 01_mae_quickstart.ipynb
    nbformat.write(nb, path)
    found = checker.problems(path)
    assert len(found) == 2 and "05_other.ipynb" in found[0] and "cell 5 stores outputs" in found[1]
    assert checker.strip(path) and checker.problems(path) == found[:1]


@pytest.mark.slow
@pytest.mark.backend_independent(backend="torch")  # each kernel picks its backend (RUN_ON); the torch pass is shortest
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs(name, kernel_dir, tmp_path, nbclient_modules):
    backend = RUN_ON[name]
    nb, seconds = execute(name, backend, kernel_dir, tmp_path, nbclient_modules)
    print(f"{name} ran in {seconds:.1f} s on {backend}")
    text = text_output(nb)
    assert f"backend {backend}" in text  # the notebook kept the backend CI chose
    CHECKS[name](nb, text, tmp_path, backend)
