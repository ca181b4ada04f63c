"""keras_mim: masked image modeling in Keras 3, on TensorFlow, JAX and PyTorch.

Every public name is imported on first use (PEP 562 `__getattr__`), so `import keras_mim`
imports neither Keras nor a backend, and the `keras-mim` command (which starts with it)
answers `--help` and argument errors at once.

Keras finds keras_mim's model classes when it loads a `.keras` file only once they are
registered, which importing `keras_mim.models` does (every method module registers its
class). So `keras_mim.models` is imported as soon as Keras is there: by `import keras_mim`
when Keras is already imported, else right after Keras' own first import (not when a
keras_mim module's own import is what imports Keras: `keras_mim.models` imports that
module), and with the first public name used. A program that only imports submodules
(`from keras_mim.data import ...`) and then loads a keras_mim model file imports
`keras_mim.models` itself.
"""

import importlib
import importlib.abc
import importlib.util
import inspect
import sys

from keras_mim.registry_snapshot import METHOD_MODELS as _METHOD_MODELS

__version__ = "0.1.0"

#: The subpackages and modules `keras_mim.NAME` gives (any other submodule works too).
_SUBMODULES = ("callbacks", "checkpoints", "data", "distribute", "evaluation", "layers", "losses", "masking",
               "models", "optimizers", "targets", "viz")

#: Public name -> the submodule it comes from; every registered method's model class
#: (MaskedAutoencoder, SimMIM, HPM, ...) comes from keras_mim.models.
_NAMES = {
    **dict.fromkeys(("export_state_dict", "load_mae_checkpoint", "save_hf_pretrained"), "checkpoints"),
    **dict.fromkeys(("DirichletMaskGenerator", "MaskGenerator", "RandomMaskGenerator"), "masking"),
    **dict.fromkeys(("AttentiveProbe", "ConvNeXtEncoder", "GroupChannelEncoder", "HieraEncoder", "ImageClassifier",
                     "LinearProbe", "MAEDecoder", "MultiModalEncoder", "PointClassifier", "PointEncoder", "SparseCNN",
                     "ViTEncoder",
                     "build_method", "get_method_spec", "list_methods", "list_presets", "to_keras_hub"), "models"),
    **dict.fromkeys(_METHOD_MODELS.values(), "models"),
}

__all__ = sorted({*_SUBMODULES, *_NAMES})


def __getattr__(name):
    if name in _NAMES:
        value = getattr(importlib.import_module(f"{__name__}.{_NAMES[name]}"), name)
        globals()[name] = value
    elif not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    _register_models()
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))


def _register_models():
    """Import keras_mim.models (registering every model class with Keras) if Keras is imported."""
    if "keras" in sys.modules and "keras_mim.models" not in sys.modules:
        importlib.import_module(f"{__name__}.models")


def _keras_mim_module_importing():
    """Whether the top level of a keras_mim module is running (it is being imported)."""
    frame = inspect.currentframe()
    while frame is not None:
        if frame.f_code.co_name == "<module>" and frame.f_globals.get("__name__", "").startswith(f"{__name__}."):
            return True
        frame = frame.f_back
    return False


class _RegisterModelsAfterKeras(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Meta path entry that imports keras_mim.models right after Keras' first import (once):
    it loads Keras with Keras' own loader, then `_register_models()`."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "keras":
            return None
        sys.meta_path.remove(self)  # once; and Keras' own spec is found without this entry
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            self.loader, spec.loader = spec.loader, self
        return spec

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        module.__loader__ = module.__spec__.loader = self.loader  # Keras keeps its own loader
        self.loader.exec_module(module)
        if not _keras_mim_module_importing():  # else the import under way may be one keras_mim.models needs
            _register_models()


if "keras" in sys.modules:
    _register_models()
elif not any(type(entry).__name__ == "_RegisterModelsAfterKeras" for entry in sys.meta_path):  # once, reloads too
    sys.meta_path.insert(0, _RegisterModelsAfterKeras())
