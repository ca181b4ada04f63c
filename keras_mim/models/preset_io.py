"""Presets that carry weights: a folder with the model's config, its weights and a model card,
saved by `save_to_preset` and loaded by `from_preset` from a path or an `hf://` / `kaggle://`
handle.

The folder follows keras-hub's preset layout (`config.json` holding the serialized model,
`model.weights.h5`, `metadata.json`) plus a `README.md` model card, so a folder can be
uploaded to the Hugging Face Hub or Kaggle Models as it is. Remote handles are resolved as
keras-hub resolves them (`huggingface_hub` for `hf://owner/name`, `kagglehub` for
`kaggle://owner/model/keras/variant`, both from their local cache first); offline
(`HF_HUB_OFFLINE=1`, `KAGGLEHUB_OFFLINE=1`, or the host does not answer within a second)
a handle that is not cached fails at once, naming what to do instead.
"""

import datetime
import importlib.metadata
import json
import os
import shlex
import socket
import sys

import keras

from keras_mim.models.methods import METHODS

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"
METADATA_FILE = "metadata.json"
CARD_FILE = "README.md"
REMOTE = {"hf://": "huggingface.co", "kaggle://": "www.kaggle.com"}
OFFLINE_ENV = {"hf://": "HF_HUB_OFFLINE", "kaggle://": "KAGGLEHUB_OFFLINE"}
PROBE_TIMEOUT_S = 1.0


def builtin_presets():
    """name -> built-in preset dict (with its `method`), read from the method registry."""
    return {name: dict(preset, method=spec.name) for spec in METHODS.values() for name, preset in spec.presets.items()}


def is_remote_handle(preset):
    """Whether `preset` is an `hf://` or `kaggle://` handle."""
    return isinstance(preset, str) and preset.startswith(tuple(REMOTE))


def is_preset_dir(path):
    """Whether `path` is a folder holding a preset's config.json."""
    return isinstance(path, (str, os.PathLike)) and os.path.isfile(os.path.join(path, CONFIG_FILE))


def _host_answers(host):
    try:
        socket.create_connection((host, 443), timeout=PROBE_TIMEOUT_S).close()
        return True
    except OSError:
        return False


def _download(prefix, handle, local_files_only):
    if prefix == "hf://":
        try:
            import huggingface_hub
        except ImportError as err:
            raise ImportError(f"Loading {prefix}{handle} needs `pip install huggingface_hub`.") from err
        return huggingface_hub.snapshot_download(handle, local_files_only=local_files_only)
    try:
        import kagglehub
    except ImportError as err:
        raise ImportError(f"Loading {prefix}{handle} needs `pip install kagglehub`.") from err
    if local_files_only:
        raise LookupError("kagglehub has no cache-only lookup")
    return kagglehub.model_download(handle)


def resolve_preset(preset):
    """A local preset folder for `preset`: a folder path as it is, a remote handle downloaded
    (or found in the local cache). Raises ValueError for anything else, ConnectionError for a
    remote handle that cannot be fetched."""
    if is_preset_dir(preset):
        return os.fspath(preset)
    if not is_remote_handle(preset):
        if isinstance(preset, (str, os.PathLike)) and os.path.isdir(preset):
            raise ValueError(f"`preset`={os.fspath(preset)!r} is a folder without {CONFIG_FILE}; expected a folder "
                             "written by `save_to_preset`.")
        raise ValueError(
            f"Unknown preset {preset!r}; expected one of {sorted(builtin_presets())} (built-in names), a folder written by "
            "`save_to_preset`, or an `hf://owner/name` or `kaggle://owner/model/keras/variant` handle."
        )
    prefix = next(p for p in REMOTE if preset.startswith(p))
    handle = preset[len(prefix):]
    offline = os.environ.get(OFFLINE_ENV[prefix], "").lower() in ("1", "true", "yes")
    if offline or not _host_answers(REMOTE[prefix]):
        try:
            path = _download(prefix, handle, local_files_only=True)
        except ImportError:
            raise
        except Exception as err:  # the libraries raise their own "not in cache" errors
            why = f"{OFFLINE_ENV[prefix]} is set" if offline else f"{REMOTE[prefix]} does not answer (offline?)"
            raise ConnectionError(
                f"Cannot load `preset`={preset!r}: {why} and it is not in the local cache. Download the preset "
                f"folder where there is a network (e.g. `huggingface-cli download {handle} --local-dir DIR`) "
                "and pass its path."
            ) from err
    else:
        path = _download(prefix, handle, local_files_only=False)
    if not is_preset_dir(path):
        raise ValueError(f"{preset!r} holds no {CONFIG_FILE}; it is not a keras_mim preset.")
    return path


def _method_name(model):
    return next((spec.name for spec in METHODS.values() if type(model) is spec.model), None)


def _card(model, metadata):
    lines = [f"# {metadata['name']}", "", "A keras_mim preset: `from_preset` on this folder (or its `hf://` / "
             "`kaggle://` handle) builds the model with these weights.", ""]
    rows = [("class", f"`{metadata['class_name']}`"), ("method", metadata.get("method") or "-"),
            ("parameters", f"{metadata['parameter_count']:,}"), ("data", metadata.get("data") or "not recorded"),
            ("epochs", metadata.get("epochs") if metadata.get("epochs") is not None else "not recorded"),
            ("backend it was saved on", metadata["backend"]), ("keras / keras_mim", f"{metadata['keras_version']} / "
                                                                 f"{metadata['keras_mim_version']}"),
            ("saved", metadata["date_saved"])]
    lines += ["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    lines += ["", "## The command that made it", "", "```", metadata.get("command") or "not recorded", "```", ""]
    if metadata.get("notes"):
        lines += ["## Notes", "", metadata["notes"], ""]
    lines += ["## Loading", "", "```python", "import keras_mim", "",
              f"model = keras_mim.models.{metadata['class_name']}.from_preset(\"PATH_OR_HANDLE\")"]
    if hasattr(model, "encoder"):
        lines.append("encoder = model.encoder  # what to probe, fine-tune or export")
    return "\n".join(lines + ["```", ""])


def _version():
    try:
        return importlib.metadata.version("keras-mim")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree
        return "unknown"


def save_to_preset(model, preset_dir, data=None, epochs=None, command=None, notes=None, overwrite=False):
    """Write `model` as a preset folder: config, weights, metadata and a model card.

    Args:
        model: a keras_mim model (pretraining model, encoder, classifier).
        preset_dir: the folder to write; it must not exist or be empty unless `overwrite`.
        data: what it was trained on (a folder, a dataset name), for the card.
        epochs: epochs trained; default: the epochs of its last `fit` (`model.history`).
        command: the command that made it; default: this process's command line.
        notes: free text for the card.
        overwrite: replace the preset files of an existing preset folder.

    Returns:
        `preset_dir`.
    """
    preset_dir = os.fspath(preset_dir)
    if os.path.exists(preset_dir) and not os.path.isdir(preset_dir):
        raise ValueError(f"`preset_dir`={preset_dir!r} is a file; expected a folder.")
    if os.path.isdir(preset_dir) and os.listdir(preset_dir) and not overwrite:
        raise FileExistsError(f"`preset_dir`={preset_dir!r} exists and is not empty; pass `overwrite=True` to "
                              "replace its preset files, or choose a new folder.")
    if not model.built:
        model.build()
    os.makedirs(preset_dir, exist_ok=True)
    if epochs is None:
        history = getattr(model, "history", None)
        epochs = len(history.epoch) if getattr(history, "epoch", None) else None
    metadata = dict(
        name=model.name, class_name=type(model).__name__, method=_method_name(model),
        parameter_count=int(model.count_params()), data=None if data is None else str(data), epochs=epochs,
        command=command if command is not None else shlex.join([os.path.basename(sys.argv[0])] + sys.argv[1:]),
        notes=notes, backend=keras.backend.backend(), keras_version=keras.__version__,
        keras_mim_version=_version(), date_saved=datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
    )
    with open(os.path.join(preset_dir, CONFIG_FILE), "w") as f:
        json.dump(keras.saving.serialize_keras_object(model), f, indent=2)
    model.save_weights(os.path.join(preset_dir, WEIGHTS_FILE), overwrite=True)
    with open(os.path.join(preset_dir, METADATA_FILE), "w") as f:
        json.dump(metadata, f, indent=2)
    with open(os.path.join(preset_dir, CARD_FILE), "w") as f:
        f.write(_card(model, metadata))
    return preset_dir


def load_preset(preset, cls=keras.Model, load_weights=True, **overrides):
    """The model of a preset folder or remote handle, as an instance of `cls`.

    Asking an encoder class for a preset of a model built around one (e.g.
    `ViTEncoder.from_preset(dir_of_a_pretrained_mae)`) returns that model's encoder.
    `overrides` replace top-level entries of the saved config (`mask_ratio`, `seed`, ...), and
    the same entries of its sub-objects (`mask_ratio` reaches the mask generator too).
    """
    directory = resolve_preset(preset)  # (importing keras_mim.models registered every class with Keras)
    with open(os.path.join(directory, CONFIG_FILE)) as f:
        config = json.load(f)
    unknown = sorted(set(overrides) - set(config.get("config", {})))
    if unknown:
        raise TypeError(f"Unknown overrides {unknown} for the preset at {directory!r}; expected entries of its "
                        f"config: {sorted(config.get('config', {}))}.")
    config["config"].update(overrides)
    for value in config["config"].values():  # e.g. `mask_ratio` also reaches the mask generator
        inner = value.get("config") if isinstance(value, dict) else None
        if isinstance(inner, dict):
            inner.update({key: v for key, v in overrides.items() if key in inner})
    model = keras.saving.deserialize_keras_object(config)
    if not model.built:
        model.build()
    if load_weights:
        model.load_weights(os.path.join(directory, WEIGHTS_FILE))
    if isinstance(model, cls):
        return model
    encoder = getattr(model, "encoder", None)
    if isinstance(encoder, cls):
        return encoder
    raise TypeError(f"The preset at {directory!r} holds a {type(model).__name__}, not a {cls.__name__}"
                    f"{'' if encoder is None else ' (nor is its encoder one)'}; load it with "
                    f"`{type(model).__name__}.from_preset`.")


class PresetMixin:
    """`from_preset` (a built-in name, a preset folder, an `hf://` / `kaggle://` handle) and
    `save_to_preset` for a Keras model class. A class with built-in presets defines
    `from_builtin_preset(name, **kwargs)`."""

    @classmethod
    def from_builtin_preset(cls, preset, **kwargs):
        raise ValueError(f"{cls.__name__} has no built-in preset {preset!r}; pass a preset folder or handle.")

    @classmethod
    def from_preset(cls, preset, load_weights=True, **kwargs):
        """A model from a preset.

        Args:
            preset: a built-in name (`keras_mim.list_presets()`: the architecture, freshly
                initialised), a folder written by `save_to_preset`, or an `hf://owner/name` /
                `kaggle://owner/model/keras/variant` handle (downloaded, or read from the local
                cache; offline, a handle that is not cached fails at once).
            load_weights: False builds the architecture of a folder or handle without its weights.
            **kwargs: overrides: for a built-in name, encoder / decoder / model arguments (see
                `build_preset`); for a folder, top-level entries of its saved config.
        """
        if isinstance(preset, str) and preset in builtin_presets():
            return cls.from_builtin_preset(preset, **kwargs)
        return load_preset(preset, cls, load_weights=load_weights, **kwargs)

    def save_to_preset(self, preset_dir, data=None, epochs=None, command=None, notes=None, overwrite=False):
        """Write this model as a preset folder (config, weights, metadata, a model card with
        `data`, `epochs`, the `command` that made it and `notes`); see
        `keras_mim.models.preset_io.save_to_preset`."""
        return save_to_preset(self, preset_dir, data=data, epochs=epochs, command=command, notes=notes,
                              overwrite=overwrite)



class EncoderPresetMixin(PresetMixin):
    """`PresetMixin` for encoder classes: a built-in name gives the preset's encoder (freshly
    initialised), if the preset's encoder is of this class (presets name a non-ViT encoder's
    class as `encoder_class`; `ViTEncoder` takes the others)."""

    @classmethod
    def from_builtin_preset(cls, preset, **kwargs):
        spec = builtin_presets()[preset]
        encoder_class = spec.get("encoder_class", None)
        if encoder_class is None and getattr(cls, "takes_vit_presets", False):
            encoder_class = cls
        if encoder_class is None or not issubclass(encoder_class, cls):
            name = "ViTEncoder" if encoder_class is None else encoder_class.__name__
            raise ValueError(f"Preset {preset!r} has a {name}, not a {cls.__name__}.")
        return encoder_class(**{**spec["encoder"], **kwargs})
