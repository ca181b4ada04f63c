"""Exponential moving averages of weights: what EMA teachers (data2vec, HPM, iBOT) share.

A teacher is a frozen copy of a student model (`frozen_copy`) whose weights follow the
student's, `t <- m * t + (1 - m) * s` after every step (`ema_update`), with the momentum `m`
often ramped up over training (`momentum_schedule`, `cosine_schedule`).
"""

import math

from keras import ops

from keras_mim.utils import copy_model


def frozen_copy(model, name=None):
    """A new, non-trainable model with `model`'s config and current weights.

    Args:
        model: a built Keras model whose class rebuilds from `get_config()`.
        name: the copy's name (default: `model.name + "_ema"`).

    Examples:
        >>> import keras_mim
        >>> encoder = keras_mim.ViTEncoder(image_size=8, patch_size=4, embed_dim=8, depth=1, num_heads=2,
        ...                                name="encoder")
        >>> teacher = frozen_copy(encoder)
        >>> teacher.name, teacher.trainable, len(teacher.weights) == len(encoder.weights)
        ('encoder_ema', False, True)
    """
    copy = copy_model(model, name=name or f"{model.name}_ema")
    copy.trainable = False
    return copy


def check_same_variables(teacher, student):
    """Raise a ValueError unless the two models hold variables of the same shapes, in the
    same order (what `ema_update` pairs up).

    Args:
        teacher: the EMA model.
        student: the trained model it follows.
    """
    a, b = teacher.weights, student.weights
    shapes_a, shapes_b = [tuple(v.shape) for v in a], [tuple(v.shape) for v in b]
    if shapes_a != shapes_b:
        raise ValueError(
            f"The EMA teacher and the student must have the same variables; got "
            f"{len(a)} teacher variables {shapes_a[:4]}... and {len(b)} student variables "
            f"{shapes_b[:4]}..."
        )


def ema_update(teacher, student, momentum):
    """`t <- momentum * t + (1 - momentum) * s` for every variable pair (float32 math).

    Safe inside a traced `compute_loss` on every backend: the teacher's variables are
    non-trainable, so Keras carries their new values out of the step (as it does for
    BatchNormalization statistics).

    Args:
        teacher: the EMA model (its variables are assigned).
        student: the model it follows (read only, gradients stopped).
        momentum: a float or a scalar tensor in [0, 1].

    Examples:
        >>> import keras, numpy as np
        >>> teacher, student = keras.layers.Dense(1), keras.layers.Dense(1)
        >>> teacher.build((None, 1)); student.build((None, 1))
        >>> teacher.set_weights([np.ones((1, 1)), np.zeros(1)])
        >>> student.set_weights([np.full((1, 1), 3.0), np.full(1, 2.0)])
        >>> ema_update(teacher, student, 0.75)
        >>> [float(w.reshape(-1)[0]) for w in teacher.get_weights()]
        [1.5, 0.5]
    """
    m = ops.cast(momentum, "float32")
    for t, s in zip(teacher.weights, student.weights):
        new = m * ops.cast(t, "float32") + (1.0 - m) * ops.cast(ops.stop_gradient(s), "float32")
        t.assign(ops.cast(new, t.dtype))


def momentum_schedule(step, start, end, steps):
    """data2vec's linear ramp of the EMA momentum from `start` to `end` over `steps`
    optimizer steps, then `end`.

    Args:
        step: the optimizer step, an int or a (possibly symbolic) scalar tensor.
        start: the momentum at step 0.
        end: the momentum from step `steps` on.
        steps: the length of the ramp; 0 or less means `end` throughout.

    Returns:
        A float32 scalar tensor.

    Examples:
        >>> [round(float(momentum_schedule(s, 0.9, 1.0, 4)), 3) for s in (0, 2, 4, 9)]
        [0.9, 0.95, 1.0, 1.0]
    """
    if steps <= 0:
        return ops.convert_to_tensor(end, "float32")
    frac = ops.minimum(ops.cast(step, "float32") / float(steps), 1.0)
    return start + (end - start) * frac


def cosine_schedule(step, start, end, steps):
    """DINO / iBOT's cosine ramp of the EMA momentum (their `cosine_scheduler`),
    `end + (start - end) (1 + cos(pi step / steps)) / 2`, then `end` from step `steps` on;
    arguments and result as `momentum_schedule`.

    Examples:
        >>> [round(float(cosine_schedule(s, 0.996, 1.0, 10)), 4) for s in (0, 5, 10, 20)]
        [0.996, 0.998, 1.0, 1.0]
    """
    linear = momentum_schedule(step, 0.0, 1.0, steps)  # the fraction of the ramp done, in [0, 1]
    return end + (start - end) * 0.5 * (1.0 + ops.cos(math.pi * linear))


__all__ = ["frozen_copy", "check_same_variables", "ema_update", "momentum_schedule", "cosine_schedule"]
