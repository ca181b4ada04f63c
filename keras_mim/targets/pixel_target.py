"""Pixel targets: patchified images, optionally normalised per patch (MAE's norm_pix_loss)."""

from keras import ops

from keras_mim.layers.patching import patchify


def patch_statistics(patches, unbiased=True):
    """Per-patch mean and variance over the last axis, in float32.

    Args:
        patches: `(B, N, P)`.
        unbiased: divide by `P - 1` (the official MAE, `torch.var`) instead of `P`.

    Returns:
        `(mean, var)`, each `(B, N, 1)` float32.
    """
    x = ops.cast(patches, "float32")
    p = x.shape[-1]
    if unbiased and p < 2:
        raise ValueError(
            f"Per-patch normalisation with the unbiased variance needs at least 2 values "
            f"per patch, got {p}; use a larger patch or `norm_pix_loss=False`."
        )
    mean = ops.mean(x, axis=-1, keepdims=True)
    var = ops.sum(ops.square(x - mean), axis=-1, keepdims=True) / (p - 1 if unbiased else p)
    return mean, var


def pixel_target(images, patch_size, normalize=True, eps=1e-6, unbiased=True):
    """What MAE's prediction is scored against: `(B, N, ph * pw * C)` float32.

    With `normalize`, each patch becomes `(t - mean) / sqrt(var + eps)`.
    """
    target = ops.cast(patchify(images, patch_size), "float32")
    if not normalize:
        return target
    mean, var = patch_statistics(target, unbiased)
    return (target - mean) / ops.sqrt(var + eps)


def denormalize_prediction(pred, images, patch_size, eps=1e-6, unbiased=True):
    """Undo per-patch normalisation of `pred` with each patch's own image statistics,
    as the official MAE visualisation does; returns float32 patches `(B, N, P)`."""
    mean, var = patch_statistics(patchify(images, patch_size), unbiased)
    return ops.cast(pred, "float32") * ops.sqrt(var + eps) + mean
