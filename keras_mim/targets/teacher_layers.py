"""`TeacherFeatures`'s helpers: reading a teacher model's layers without running it (which
layers a functional model gives, the shapes of its features from a shape-only trace), and
masks guided by a teacher's attention."""

import keras

from keras_mim.masking import GuidedMaskGenerator


def is_block_encoder(model):
    """Whether `model` keeps keras_mim's encoder protocol with readable blocks (a
    `ViTEncoder`): `forward_features`, `layer_indices`, `depth`, `num_prefix_tokens`.
    Duck-typed, so that targets need not import the models package.

    Examples:
        >>> is_block_encoder(keras.Sequential([keras.layers.Dense(2)]))
        False
    """
    return all(hasattr(model, a) for a in ("forward_features", "layer_indices", "depth", "num_prefix_tokens"))


class _Trace(keras.layers.Layer):
    """Runs a function under Keras' shape-only tracing (`compute_output_spec`)."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def call(self, x):
        return self.fn(x)


class Untracked:
    """Holds the layer-extraction view of a functional teacher out of Keras tracking:
    it shares the teacher's layers, which are tracked (and saved) once, via the teacher."""

    def __init__(self, model):
        self.model = model


def functional_extractor(model, layers):
    """`(layers, extractor)` of a teacher that is not a `ViTEncoder`.

    Args:
        model: the teacher, a Keras model.
        layers: None (the model's own outputs), a layer name or a list of them (a
            functional model only).

    Returns:
        the chosen layer names (None for the model's outputs) and an `Untracked` holding
        the model that gives them.
    """
    if layers is None:
        return None, Untracked(model)
    if isinstance(layers, str):
        layers = [layers]
    if not getattr(model, "inputs", None):  # not functional: no graph to read layers from
        raise TypeError(
            f"Choosing teacher `layers`={layers!r} needs a ViTEncoder or a functional "
            f"keras.Model; {type(model).__name__} is neither (pass `layers=None` to use its outputs)."
        )
    names = [layer.name for layer in model.layers]
    outputs = []
    for name in layers:
        if not isinstance(name, str):
            raise TypeError(f"A functional teacher's `layers` are layer names, got {name!r} in {layers!r}.")
        if name not in names:
            raise ValueError(f"Unknown teacher layer {name!r} in `layers`; the teacher has layers {names}.")
        try:
            outputs.append(model.get_layer(name).output)
        except (AttributeError, ValueError) as e:
            raise ValueError(f"Cannot read the output of teacher layer {name!r}: {e}") from None
    return list(layers), Untracked(keras.Model(model.inputs, outputs, name=f"{model.name}_features"))


def trace_features(fn, model, image_shape, check_inputs=True):
    """Output specs of `fn(images)` for images `(1,) + image_shape`, from one shape-only
    trace (no weight is read, nothing runs); raises a `ValueError` if the teacher `model`
    cannot take such images (its declared input shape, when `check_inputs`, or its own
    error)."""
    image_shape = tuple(image_shape)
    inputs = getattr(model, "inputs", None) if check_inputs else None
    if inputs:
        expected = tuple(inputs[0].shape[1:])
        if len(expected) != len(image_shape) or any(e is not None and e != s for e, s in zip(expected, image_shape)):
            raise ValueError(
                f"The teacher takes inputs of shape {expected} (None = any) but the student's images are "
                f"{image_shape}."
            )
    try:
        return _Trace(fn).compute_output_spec(keras.KerasTensor((1,) + image_shape))
    except Exception as e:  # the teacher's own error, without Keras' tracing preamble
        reason = str(e).split("Error encountered:")[-1].strip()
        raise ValueError(f"The teacher cannot take images of shape {image_shape}: {reason}") from None


def teacher_guided_masking(mask_generator, teacher, images, grid_shape, noise=None):
    """Masks for `images` (dict of `ids_keep`, `ids_restore`, `mask`).

    A `GuidedMaskGenerator` is fed the teacher's [CLS] attention as `importance`
    (MaskAlign's attention-guided masks); with a teacher that has no attention it draws
    plain random masks. `noise` fixes the mask whatever the generator.
    """
    if noise is None and isinstance(mask_generator, GuidedMaskGenerator) and teacher.has_attention:
        return mask_generator(images, grid_shape=grid_shape, importance=teacher.attention(images))
    return mask_generator(images, grid_shape=grid_shape, noise=noise)
