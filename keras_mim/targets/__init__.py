"""Targets: what predictions are scored against (pixels, HOG, spectrum by name; `get_target`),
and a frozen teacher's features (`TeacherFeatures`: a `Target` of one teacher layer, which EVA
and MILAN regress, and the layers MaskAlign and MR-MAE align with, as `teacher=`)."""

import keras

from keras_mim.targets.fourier_target import FourierTarget, centered_spectrum, frequency_radius
from keras_mim.targets.hog_target import HOGTarget
from keras_mim.targets.pixel_target import (
    PixelTarget,
    denormalize_prediction,
    patch_statistics,
    pixel_target,
)
from keras_mim.targets.target import Target
from keras_mim.targets.teacher_features import TeacherFeatures, get_teacher, teacher_guided_masking

# Per-token targets by name: what `target="hog"` (a model argument) or
# `keras-mim pretrain --target hog` builds with default arguments.
TARGETS = {
    "pixels": PixelTarget,
    "hog": HOGTarget,
    "fourier": FourierTarget,
}


def get_target(identifier):
    """A `Target` from a name in `TARGETS`, a serialized config dict, or an instance (e.g. a
    `TeacherFeatures`, which needs a model and so has no name)."""
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
        "instance (such as TeacherFeatures(model)) or its serialized config."
    )
