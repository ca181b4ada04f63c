"""Patchify / unpatchify and the patch-embedding layer.

A patch is flattened in (row, col, channel) order, as the official MAE `patchify`
(`einsum('nchpwq->nhwpqc')`), so official weights and targets need no permutation.
"""

import math

import keras
from keras import ops

from keras_mim.utils import check_clip_size, check_image_size, to_patch_shape


def _grid(shape, patch_shape, what):
    """Token grid of an image `(H, W)` or clip `(T, H, W)` shape for `patch_shape`."""
    if len(shape) != len(patch_shape):
        kind = "images (B, H, W, C)" if len(patch_shape) == 2 else "clips (B, T, H, W, C)"
        raise ValueError(
            f"A patch shape {patch_shape} needs {kind}, got {what} of spatial shape {tuple(shape)}."
        )
    if len(patch_shape) == 3:
        return check_clip_size(tuple(shape), patch_shape)
    return check_image_size(tuple(shape), patch_shape)


def patchify(images, patch_size):
    """Cut images (or clips) into flattened patches (or tubelets).

    Args:
        images: float tensor `(B, H, W, C)`, or clips `(B, T, H, W, C)`; every side
            divisible by its patch side.
        patch_size: int or `(ph, pw)` for images; `(t, ph, pw)` tubelets for clips.

    Returns:
        Tensor `(B, N, P)`, tokens in row-major grid order (`(T/t, H/ph, W/pw)` for
        clips), each flattened in (row, col, channel) order, `(frame, row, col, channel)`
        for tubelets (VideoMAE's `(p0 p1 p2) c`); `P = prod(patch_size) * C`.

    Examples:
        >>> import numpy as np
        >>> tuple(patchify(np.zeros((2, 32, 48, 3), "float32"), 16).shape)
        (2, 6, 768)
        >>> tuple(patchify(np.zeros((2, 4, 32, 32, 3), "float32"), (2, 16, 16)).shape)
        (2, 8, 1536)
    """
    patch = to_patch_shape(patch_size)
    c = images.shape[-1]
    grid = _grid(images.shape[1:-1], patch, "images")
    r = len(patch)
    # (B, g0, p0, g1, p1, ..., C) -> (B, g0, g1, ..., p0, p1, ..., C)
    x = ops.reshape(images, (-1,) + sum(((g, q) for g, q in zip(grid, patch)), ()) + (c,))
    order = (0,) + tuple(1 + 2 * i for i in range(r)) + tuple(2 + 2 * i for i in range(r)) + (2 * r + 1,)
    x = ops.transpose(x, order)
    return ops.reshape(x, (-1, math.prod(grid), math.prod(patch) * c))


def unpatchify(patches, patch_size, image_shape):
    """Inverse of `patchify`.

    Args:
        patches: tensor `(B, N, P)`.
        patch_size: int or `(ph, pw)`; `(t, ph, pw)` for clips.
        image_shape: `(H, W, C)` of the images to rebuild, `(T, H, W, C)` for clips.

    Returns:
        Tensor `(B, H, W, C)`, or `(B, T, H, W, C)` for clips.

    Examples:
        >>> import numpy as np
        >>> tuple(unpatchify(np.zeros((2, 6, 768), "float32"), 16, (32, 48, 3)).shape)
        (2, 32, 48, 3)
    """
    patch = to_patch_shape(patch_size)
    shape, c = tuple(image_shape[:-1]), image_shape[-1]
    grid = _grid(shape, patch, "`image_shape`")
    if patches.shape[1] is not None and patches.shape[1] != math.prod(grid):
        raise ValueError(
            f"`patches` has {patches.shape[1]} tokens but `image_shape`={tuple(image_shape)} "
            f"with patch size {patch} needs {math.prod(grid)}."
        )
    r = len(patch)
    x = ops.reshape(patches, (-1,) + grid + patch + (c,))  # (B, g0, g1, .., p0, p1, .., C)
    order = (0,) + sum(((1 + i, 1 + r + i) for i in range(r)), ()) + (2 * r + 1,)
    x = ops.transpose(x, order)  # (B, g0, p0, g1, p1, ..., C)
    return ops.reshape(x, (-1,) + shape + (c,))


def _dense_glorot_scale(patch_area, channels, dim):
    # Conv2D's Glorot fans are (p*p*C, p*p*D); the official MAE initialises the patch
    # projection as a Dense on the flattened patch, fans (p*p*C, D). This scale makes a
    # VarianceScaling(fan_avg, uniform) on the conv kernel draw from that Dense range.
    return (patch_area * channels + patch_area * dim) / (patch_area * channels + dim)


@keras.saving.register_keras_serializable(package="keras_mim")
class PatchEmbedding(keras.layers.Layer):
    """Linear patch embedding: a conv with kernel = stride = patch size.

    The kernel `(ph, pw, C, D)` flattened row-major is exactly a Dense kernel
    `(ph * pw * C, D)` applied to `patchify(images)`, and it is initialised as
    that Dense (xavier-uniform over fans `ph*pw*C` and `D`), as the official MAE.
    With a `(t, ph, pw)` patch size it is VideoMAE's tubelet embedding: a Conv3D
    over clips `(B, T, H, W, C)` giving `(T/t) * (H/ph) * (W/pw)` tokens.

    Args:
        patch_size: int or `(ph, pw)` for images; `(t, ph, pw)` for clips.
        embed_dim: token width D.
        **kwargs: standard layer arguments.

    Examples:
        >>> import numpy as np
        >>> tuple(PatchEmbedding(4, 64)(np.zeros((2, 32, 32, 3), "float32")).shape)
        (2, 64, 64)
        >>> tuple(PatchEmbedding((2, 8, 8), 64)(np.zeros((2, 4, 32, 32, 3), "float32")).shape)
        (2, 32, 64)
    """

    def __init__(self, patch_size, embed_dim, **kwargs):
        super().__init__(**kwargs)
        self.patch_size = to_patch_shape(patch_size)
        self.embed_dim = int(embed_dim)

    def build(self, input_shape):
        channels = input_shape[-1]
        scale = _dense_glorot_scale(math.prod(self.patch_size), channels, self.embed_dim)
        conv = keras.layers.Conv3D if len(self.patch_size) == 3 else keras.layers.Conv2D
        self.proj = conv(
            self.embed_dim,
            self.patch_size,
            strides=self.patch_size,
            padding="valid",
            kernel_initializer=keras.initializers.VarianceScaling(
                scale=scale, mode="fan_avg", distribution="uniform"
            ),
            dtype=self.dtype_policy,
            name="proj",
        )
        self.proj.build(input_shape)

    def call(self, images):
        x = self.proj(images)  # (B, [T/t,] gh, gw, D)
        return ops.reshape(x, (-1, math.prod(x.shape[1:-1]), self.embed_dim))

    def compute_output_shape(self, input_shape):
        grid = [s // p for s, p in zip(input_shape[1:-1], self.patch_size)]
        return (input_shape[0], math.prod(grid), self.embed_dim)

    def get_config(self):
        config = super().get_config()
        config.update(patch_size=self.patch_size, embed_dim=self.embed_dim)
        return config
