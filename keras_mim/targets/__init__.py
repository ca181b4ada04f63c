"""Targets: what predictions are scored against (pixels, HOG, spectrum, teacher features)."""

import keras

from keras_mim.targets.pixel_target import (
    PixelTarget,
    denormalize_prediction,
    patch_statistics,
    pixel_target,
)
from keras_mim.targets.target import Target

# Per-token targets by name: what `target="hog"` (a model argument) or
# `keras-mim pretrain --target hog` builds with default arguments.
TARGETS = {
    "pixels": PixelTarget,
}


def get_target(identifier):
    """A `Target` from a name in `TARGETS`, a serialized config dict, or an instance."""
    if isinstance(identifier, Target):
        return identifier
    if isinstance(identifier, dict):
        target = keras.saving.deserialize_keras_object(identifier)
        if isinstance(target, Target):
            return target
    elif isinstance(identifier, str) and identifier in TARGETS:
        return TARGETS[identifier]()
    raise ValueError(
        f"Unknown `target` {identifier!r}; expected one of {sorted(TARGETS)}, a Target "
        "instance or its serialized config."
    )
