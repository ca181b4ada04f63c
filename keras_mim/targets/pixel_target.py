"""Pixel targets: patchified images, optionally normalised per patch (MAE's norm_pix_loss)."""

import math

import keras
from keras import ops

from keras_mim.layers.patching import patchify
from keras_mim.targets.target import Target
from keras_mim.utils import to_patch_shape


def patch_statistics(patches, unbiased=True, num_channels=None):
    """Per-patch mean and variance over the last axis, in float32.

    Args:
        patches: `(B, N, P)`.
        unbiased: divide by `P - 1` (the official MAE, `torch.var`) instead of `P`.
        num_channels: if given, statistics per channel instead: `patches` is read as
            `(B, N, P / C, C)` and the results are `(B, N, 1, C)` (VideoMAE).

    Returns:
        `(mean, var)`, each `(B, N, 1)` float32 (or `(B, N, 1, C)` per channel).
    """
    x = ops.cast(patches, "float32")
    if num_channels is not None:
        x = ops.reshape(x, (-1, x.shape[1], x.shape[-1] // num_channels, num_channels))
        axis = -2
    else:
        axis = -1
    p = x.shape[axis]
    if unbiased and p < 2:
        raise ValueError(
            f"Per-patch normalisation with the unbiased variance needs at least 2 values "
            f"per patch{' and channel' if num_channels else ''}, got {p}; use a larger "
            "patch or no normalisation (`norm_pix_loss=False`)."
        )
    mean = ops.mean(x, axis=axis, keepdims=True)
    var = ops.sum(ops.square(x - mean), axis=axis, keepdims=True) / (p - 1 if unbiased else p)
    return mean, var


def pixel_target(images, patch_size, normalize=True, eps=1e-6, unbiased=True):
    """What MAE's prediction is scored against: `(B, N, ph * pw * C)` float32.

    With `normalize`, each patch becomes `(t - mean) / sqrt(var + eps)`.
    """
    return PixelTarget(normalize, unbiased=unbiased, eps=eps)(images, patch_size=patch_size)


def denormalize_prediction(pred, images, patch_size, eps=1e-6, unbiased=True):
    """Undo per-patch normalisation of `pred` with each patch's own image statistics,
    as the official MAE visualisation does; returns float32 patches `(B, N, P)`."""
    return PixelTarget(True, unbiased=unbiased, eps=eps).denormalize(pred, images, patch_size)


@keras.saving.register_keras_serializable(package="keras_mim")
class PixelTarget(Target):
    """Patch pixels `(B, N, ph * pw * C)`, raw or normalised per patch; for clips and
    a `(t, ph, pw)` patch size, tubelet pixels `(B, N, t * ph * pw * C)`.

    MAE (`normalize=True`): each patch becomes `(t - mean) / sqrt(var + eps)` with the
    unbiased variance over its `ph * pw * C` values. VideoMAE (`per_channel=True,
    eps_on_std=True`): each channel of each patch separately, `(t - mean) / (std + eps)`.

    Args:
        normalize: normalise each patch by its own mean and variance.
        per_channel: statistics per channel of a patch instead of over all its values.
        unbiased: unbiased (`n - 1`) variance as `torch.var`, else the population one.
        eps: added to the variance (or the std with `eps_on_std`).
        eps_on_std: divide by `std + eps` (VideoMAE) instead of `sqrt(var + eps)` (MAE).
        **kwargs: standard layer arguments.

    Examples:
        >>> import numpy as np
        >>> target = PixelTarget(normalize=True)
        >>> t = target(np.random.rand(2, 8, 8, 3).astype("float32"), patch_size=4)
        >>> tuple(t.shape), target.output_dim(4, 3)
        ((2, 4, 48), 48)
    """

    def __init__(self, normalize=True, per_channel=False, unbiased=True, eps=1e-6,
                 eps_on_std=False, **kwargs):
        super().__init__(**kwargs)
        self.normalize = bool(normalize)
        self.per_channel = bool(per_channel)
        self.unbiased = bool(unbiased)
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps >= 0:
            raise ValueError(f"`eps` must be a float >= 0, got {eps!r}.")
        self.eps = float(eps)
        self.eps_on_std = bool(eps_on_std)

    def output_dim(self, patch_size, num_channels):
        patch = to_patch_shape(patch_size)
        values = math.prod(patch) * (1 if self.per_channel else num_channels)
        if self.normalize and self.unbiased and values < 2:
            raise ValueError(
                f"A normalised pixel target needs at least 2 values per patch"
                f"{' and channel' if self.per_channel else ''}, got {values} with patch size "
                f"{patch} and {num_channels} channels; use `normalize=False` or larger patches."
            )
        return math.prod(patch) * num_channels

    def statistics(self, images, patch_size):
        """Mean and std-like divisor of each patch (or patch channel), float32."""
        patches = patchify(images, to_patch_shape(patch_size))
        c = images.shape[-1] if self.per_channel else None
        mean, var = patch_statistics(patches, self.unbiased, num_channels=c)
        scale = ops.sqrt(var) + self.eps if self.eps_on_std else ops.sqrt(var + self.eps)
        return mean, scale

    def _per_channel_view(self, x, c):
        return ops.reshape(x, (-1, x.shape[1], x.shape[-1] // c, c)) if self.per_channel else x

    def call(self, images, patch_size):
        patch_size = to_patch_shape(patch_size)
        target = ops.cast(patchify(images, patch_size), "float32")  # (B, N, P)
        if not self.normalize:
            return target
        mean, scale = self.statistics(images, patch_size)
        c = images.shape[-1]
        out = (self._per_channel_view(target, c) - mean) / scale
        return ops.reshape(out, (-1, target.shape[1], target.shape[2]))

    def denormalize(self, pred, images, patch_size):
        """Map a normalised prediction back to pixels with each patch's own statistics
        (hidden patches included, as the official MAE figures do): `(B, N, P)`."""
        pred = ops.cast(pred, "float32")
        if not self.normalize:
            return pred
        mean, scale = self.statistics(images, patch_size)
        out = self._per_channel_view(pred, images.shape[-1]) * scale + mean
        return ops.reshape(out, (-1, pred.shape[1], pred.shape[2]))

    def get_config(self):
        config = super().get_config()
        config.update(normalize=self.normalize, per_channel=self.per_channel, unbiased=self.unbiased,
                      eps=self.eps, eps_on_std=self.eps_on_std)
        return config
