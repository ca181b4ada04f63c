"""Masked reductions; every loss is computed in float32."""

from keras import ops


def masked_mean(per_token_loss, mask):
    """Mean of `per_token_loss` `(B, N)` over tokens where `mask` `(B, N)` is 1.

    Example:
    >>> import numpy as np
    >>> float(masked_mean(np.array([[1.0, 3.0]]), np.array([[0.0, 1.0]])))
    3.0
    """
    loss = ops.cast(per_token_loss, "float32")
    mask = ops.cast(mask, "float32")
    return ops.sum(loss * mask) / ops.sum(mask)


def mse_per_token(pred, target):
    """Mean squared error over the last axis, float32: `(B, N, P) -> (B, N)`."""
    diff = ops.cast(pred, "float32") - ops.cast(target, "float32")
    return ops.mean(ops.square(diff), axis=-1)
