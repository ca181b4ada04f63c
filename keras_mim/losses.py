"""Masked reductions; every loss is computed in float32."""

from keras import ops


def masked_mean(per_token_loss, mask):
    """Mean of `per_token_loss` `(B, N)` over tokens where `mask` `(B, N)` is 1.

    Examples:
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


def cosine_per_token(pred, target, eps=1e-8):
    """Negative cosine similarity plus one over the last axis, float32: `(B, N, D) -> (B, N)`,
    `1 - p.t / max(|p| |t|, eps)` (the `torch.nn.CosineSimilarity` formula), 0 when aligned.

    Examples:
        >>> import numpy as np
        >>> loss = cosine_per_token(np.array([[[1.0, 0.0], [0.0, 2.0]]]), np.array([[[3.0, 0.0], [1.0, 0.0]]]))
        >>> ops.convert_to_numpy(loss).tolist()
        [[0.0, 1.0]]
    """
    pred, target = ops.cast(pred, "float32"), ops.cast(target, "float32")
    dot = ops.sum(pred * target, axis=-1)
    norms = ops.sum(ops.square(pred), axis=-1) * ops.sum(ops.square(target), axis=-1)
    return 1.0 - dot / ops.sqrt(ops.maximum(norms, eps * eps))
