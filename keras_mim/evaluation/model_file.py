"""The encoder inside a saved `.keras` file, with one clear error for a file that is
missing, truncated, not a Keras archive, or a model without a keras_mim encoder."""

import json
import os
import zipfile

EXPECTED = ("a keras_mim encoder (ViTEncoder) or a model holding one in `.encoder` (a pretraining model "
            "such as MaskedAutoencoder, an ImageClassifier, a LinearProbe), e.g. the model.keras of "
            "`keras-mim pretrain`")


def _describe(config):
    """'MaskedAutoencoder (keras_mim)' from a serialized object's config."""
    package = (config.get("registered_name") or "").partition(">")[0] or config.get("module") or "?"
    return f"{config.get('class_name')} ({package.split('.')[0]})"


def _holds_encoder(config):
    """Whether a serialized model names an encoder in its config (every keras_mim model built
    around one lists it first: `config["config"]["encoder"]`) or is one (an encoder's config
    gives its `image_size` and `patch_size`); read from the config alone, without Keras."""
    inner = config.get("config")
    if not isinstance(inner, dict):
        return False
    return isinstance(inner.get("encoder"), dict) or {"image_size", "patch_size"} <= inner.keys()


def data_kind(config):
    """What a saved model takes, read from its serialized config (no Keras import):
    "audio" for an `AudioMAE` (waveforms become its spectrograms), "points" for a model
    around a `PointEncoder` (point clouds), else "images".

    Examples:
        >>> data_kind({"class_name": "PointMAE", "config": {"encoder": {"class_name": "PointEncoder"}}})
        'points'
    """
    if config.get("class_name") == "AudioMAE":
        return "audio"
    inner = config.get("config")
    encoder = inner.get("encoder") if isinstance(inner, dict) else None
    names = (config.get("class_name"), encoder.get("class_name") if isinstance(encoder, dict) else None)
    return "points" if "PointEncoder" in names else "images"


def inspect_keras_file(path, name="`path`"):
    """Check a `.keras` file without loading it (nor importing Keras): it exists, is a whole
    zip archive holding a Keras `config.json` and weights, and holds a model with an encoder.

    Args:
        path: the file (str or path-like).
        name: how errors name the argument (the CLI passes "model").

    Returns:
        The model's serialized config (the archive's `config.json`) as a dict.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: anything else, naming `path` and what is wrong.

    Examples:
        >>> import tempfile
        >>> with tempfile.NamedTemporaryFile(suffix=".keras") as f:
        ...     _ = f.write(b"PK\\x03\\x04 cut short")
        ...     f.flush()
        ...     inspect_keras_file(f.name)
        Traceback (most recent call last):
        ...
        ValueError: `path` '...' is truncated or damaged: ...
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a .keras file path, got {type(path).__name__}.")
    path = os.fspath(path)
    where = f"{name} {path!r}"
    if not os.path.exists(path):
        raise FileNotFoundError(f"{where} does not exist.")
    if not os.path.isfile(path) or not path.endswith(".keras"):
        raise ValueError(f"{where} must be a .keras file (a model saved by Keras 3).")
    with open(path, "rb") as f:
        head = f.read(8)
    if not head:
        raise ValueError(f"{where} is empty (0 bytes): an interrupted save or copy?")
    if head.startswith(b"\x89HDF"):
        raise ValueError(f"{where} is an HDF5 file (Keras 2's .h5 format), not a Keras 3 .keras archive.")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            config = json.loads(archive.read("config.json")) if "config.json" in names else None
    except zipfile.BadZipFile as error:
        if head.startswith(b"PK"):
            raise ValueError(f"{where} is truncated or damaged: it starts as a zip archive but does not open "
                             f"({error}); an interrupted save, copy or download?") from error
        raise ValueError(f"{where} is not a Keras .keras archive (not a zip file; it starts with {head!r}).") from error
    except (ValueError, UnicodeDecodeError, OSError) as error:  # config.json unreadable or not JSON
        raise ValueError(f"{where} is damaged: its config.json does not read as JSON ({error}).") from error
    if config is None:
        listed = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "") or "nothing"
        raise ValueError(f"{where} is not a Keras .keras archive: the zip holds no config.json (it holds {listed}).")
    if not isinstance(config, dict) or "class_name" not in config:
        raise ValueError(f"{where} is not a Keras .keras archive: its config.json describes no Keras object.")
    if not any(n.startswith("model.weights") for n in names):
        raise ValueError(f"{where} is truncated or incomplete: the archive holds no model.weights file "
                         f"(it holds {', '.join(names)}).")
    if not _holds_encoder(config):
        raise ValueError(f"{where} holds a {_describe(config)}, not {EXPECTED}.")
    return config


def load_encoder(path, name="`path`"):
    """The encoder of the model saved in a `.keras` file.

    The file is checked first (`inspect_keras_file`), then loaded with
    `keras.saving.load_model`; any failure is one error naming `path` and the problem.

    Args:
        path: a `.keras` file holding a keras_mim encoder or a model with one in
            `.encoder` (a pretraining model, an `ImageClassifier`, a `LinearProbe`).
        name: how errors name the argument.

    Returns:
        The encoder (a `ViTEncoder` or another model keeping its protocol); of a model on
        several modalities (`MultiMAE`), the ViT of its main modality (`encoder.trunk`).

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: `path` is not a whole Keras archive, does not load, or holds a model
            without an encoder.
    """
    import keras

    from keras_mim.data.decoding import error_reason
    from keras_mim.models.image_classifier import get_encoder
    from keras_mim.models.multi_modal_encoder import MultiModalEncoder
    from keras_mim.models.pretraining_model import check_encoder

    config = inspect_keras_file(path, name)
    where = f"{name} {os.fspath(path)!r}"
    try:
        model = keras.saving.load_model(path)
    except Exception as error:  # damaged weights, unknown classes, a config this version cannot build
        raise ValueError(f"{where} holds a {_describe(config)} that does not load: {error_reason(error)}") from error
    try:
        encoder = get_encoder(model)
        if isinstance(encoder, MultiModalEncoder):  # its main modality's ViT (MultiMAE's RGB encoder)
            encoder = encoder.trunk
        return check_encoder(encoder, type(model).__name__)
    except TypeError as error:
        found = type(getattr(model, "encoder", None)).__name__
        raise ValueError(f"{where} holds a {type(model).__name__}"
                         + (f" whose `.encoder` is a {found}" if hasattr(model, "encoder") else "")
                         + f", not {EXPECTED}.") from error
