"""Exponential moving averages of weights: what EMA teachers (data2vec, HPM) share."""

from keras import ops

from keras_mim.models.encoder_model import copy_model


def frozen_copy(model, name=None):
    """A new, non-trainable model with `model`'s config and current weights.

    Args:
        model: a built Keras model whose class rebuilds from `get_config()`.
        name: the copy's name (default: `model.name + "_ema"`).
    """
    copy = copy_model(model, name=name or f"{model.name}_ema")
    copy.trainable = False
    return copy


def check_same_variables(teacher, student):
    """Raise unless the two models hold variables of the same shapes, in the same order."""
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
    BatchNormalization statistics). `momentum` may be a float or a scalar tensor.
    """
    m = ops.cast(momentum, "float32")
    for t, s in zip(teacher.weights, student.weights):
        new = m * ops.cast(t, "float32") + (1.0 - m) * ops.cast(ops.stop_gradient(s), "float32")
        t.assign(ops.cast(new, t.dtype))


def momentum_schedule(step, start, end, steps):
    """data2vec's linear ramp of the EMA momentum from `start` to `end` over `steps`
    optimizer steps, then `end`; a float32 scalar for the (possibly symbolic) `step`."""
    if steps <= 0:
        return ops.convert_to_tensor(end, "float32")
    frac = ops.minimum(ops.cast(step, "float32") / float(steps), 1.0)
    return start + (end - start) * frac


__all__ = ["frozen_copy", "check_same_variables", "ema_update", "momentum_schedule"]
