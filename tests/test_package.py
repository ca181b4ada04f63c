"""Package-wide rules: no backend imports outside the data module; docstring examples run."""

import ast
import doctest
import importlib
import pathlib
import pkgutil

import pytest

import keras_mim

ROOT = pathlib.Path(keras_mim.__file__).parent
BACKENDS = {"tensorflow", "jax", "jaxlib", "torch", "tensorflow_datasets"}


ALLOWED_BACKEND_IMPORTS = {"distribute.py"}  # multi-device training: tf.distribute, imported lazily


def library_files():
    return [p for p in ROOT.rglob("*.py") if "data" not in p.relative_to(ROOT).parts[:1]
            and str(p.relative_to(ROOT)) not in ALLOWED_BACKEND_IMPORTS]


@pytest.mark.backend_independent
@pytest.mark.parametrize("path", library_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_library_code_imports_no_backend(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        for name in names:
            assert name.split(".")[0] not in BACKENDS, f"{path}: imports {name}"


@pytest.mark.backend_independent
def test_no_model_overrides_train_step():
    for path in ROOT.rglob("*.py"):
        assert "def train_step" not in path.read_text(), path


def modules():
    return sorted(
        m.name for m in pkgutil.walk_packages([str(ROOT)], prefix="keras_mim.") if not m.name.endswith("__main__")
    )


@pytest.mark.one_backend  # each module's examples in one pass of a CI run; the unit tests cover every backend
@pytest.mark.parametrize("name", modules())
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, name, globs=dict(vars(module))):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"


@pytest.mark.backend_independent
def test_public_api():
    for name in ("MaskedAutoencoder", "ViTEncoder", "MAEDecoder", "RandomMaskGenerator", "list_presets"):
        assert hasattr(keras_mim, name)
    assert keras_mim.__version__
