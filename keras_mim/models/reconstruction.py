"""What the pixel-predicting models share: their target from `norm_pix_loss`-style
arguments, and per-patch pixel predictions back to images for figures."""

import math

from keras import ops

from keras_mim.layers.patching import unpatchify
from keras_mim.targets import PixelTarget, get_target


def make_target(target=None, norm_pix_loss=None, norm_pix_eps=None, encoder=None, **pixel_options):
    """A model's `Target`: `target` when given, else pixels normalised per `norm_pix_loss`.

    Args:
        target: None, a `keras_mim.targets.Target`, a name from `TARGETS` or a config.
        norm_pix_loss: with the default pixel target, normalise each patch (default True).
        norm_pix_eps: epsilon of that normalisation (default 1e-6, as MAE).
        encoder: the student encoder, if the target is to be checked against it
            (`check_target`).
        **pixel_options: other `PixelTarget` arguments of the default target (VideoMAE:
            `per_channel=True, eps_on_std=True`).

    Examples:
        >>> make_target(norm_pix_loss=False).normalize
        False
    """
    if target is None:
        target = PixelTarget(
            normalize=True if norm_pix_loss is None else bool(norm_pix_loss),
            eps=1e-6 if norm_pix_eps is None else norm_pix_eps,
            **pixel_options,
        )
    elif norm_pix_loss is not None or norm_pix_eps is not None:
        raise ValueError(
            "`norm_pix_loss`/`norm_pix_eps` configure the default pixel target; with "
            f"`target`={target!r} leave them unset (use `PixelTarget(normalize=...)`)."
        )
    else:
        target = get_target(target)
    return target if encoder is None else check_target(target, encoder)


def check_target(target, encoder):
    """Raise before any training unless `target` can score the student `encoder`: a
    teacher target must wrap another model and cut the image into the same token grid
    (`Target.check_compatible`); returns `target`."""
    if getattr(target, "model", None) is encoder:
        raise ValueError("The teacher of a `target` must be a different model from the student `encoder`.")
    target.check_compatible(tuple(encoder.input_size) + (encoder.num_channels,), encoder.num_patches)
    return target


def pixel_reconstruction(target, images, pred, mask, patch_size):
    """Images rebuilt from a pixel prediction, and the hidden-pixel mask.

    A normalised prediction is mapped back with each patch's own statistics
    (`PixelTarget.denormalize`, hidden patches included, as the official MAE figures).

    Args:
        target: the model's `PixelTarget` (any other target raises a ValueError).
        images: the images the prediction is for, `(B, H, W, C)` (clips `(B, T, H, W, C)`).
        pred: `(B, N, P)` predictions, N tokens in row-major grid order.
        mask: `(B, N)`, 1 = hidden.
        patch_size: `(ph, pw)` (or `(t, ph, pw)` tubelets).

    Returns:
        `(reconstruction, pixel_mask)`: float32 `(B, H, W, C)` and `(B, H, W, 1)`.

    Examples:
        >>> import numpy as np
        >>> images = np.random.rand(2, 8, 8, 3).astype("float32")
        >>> rec, pixel_mask = pixel_reconstruction(
        ...     PixelTarget(normalize=False), images, np.zeros((2, 4, 48), "float32"),
        ...     np.array([[1, 0, 0, 1]] * 2, "float32"), (4, 4))
        >>> tuple(rec.shape), tuple(pixel_mask.shape)
        ((2, 8, 8, 3), (2, 8, 8, 1))
    """
    if not isinstance(target, PixelTarget):
        raise ValueError(
            f"Reconstructing images needs a pixel target; this model predicts "
            f"{type(target).__name__} values."
        )
    shape = tuple(images.shape[1:])  # (H, W, C) or (T, H, W, C)
    pred = target.denormalize(pred, images, patch_size)  # (B, N, P) float32
    mask_patches = ops.repeat(ops.expand_dims(ops.cast(mask, "float32"), -1), math.prod(patch_size), axis=-1)
    pixel_mask = unpatchify(mask_patches, patch_size, shape[:-1] + (1,))
    return unpatchify(pred, patch_size, shape), pixel_mask
