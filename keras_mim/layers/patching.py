"""Patchify / unpatchify and the patch-embedding layer.

A patch is flattened in (row, col, channel) order, as the official MAE `patchify`
(`einsum('nchpwq->nhwpqc')`), so official weights and targets need no permutation.
"""

import keras
from keras import ops

from keras_mim.utils import check_image_size, to_2tuple


def patchify(images, patch_size):
    """Cut images into flattened patches.

    Args:
        images: float tensor `(B, H, W, C)`, H and W divisible by `patch_size`.
        patch_size: int or `(ph, pw)`.

    Returns:
        Tensor `(B, N, ph * pw * C)`, patches in row-major grid order, each
        flattened in (row, col, channel) order.

    Example:
    >>> import numpy as np
    >>> tuple(patchify(np.zeros((2, 32, 48, 3), "float32"), 16).shape)
    (2, 6, 768)
    """
    ph, pw = to_2tuple(patch_size, "patch_size")
    _, h, w, c = images.shape
    check_image_size((h, w), (ph, pw))
    gh, gw = h // ph, w // pw
    x = ops.reshape(images, (-1, gh, ph, gw, pw, c))
    x = ops.transpose(x, (0, 1, 3, 2, 4, 5))  # (B, gh, gw, ph, pw, C)
    return ops.reshape(x, (-1, gh * gw, ph * pw * c))


def unpatchify(patches, patch_size, image_shape):
    """Inverse of `patchify`.

    Args:
        patches: tensor `(B, N, ph * pw * C)`.
        patch_size: int or `(ph, pw)`.
        image_shape: `(H, W, C)` of the images to rebuild.

    Returns:
        Tensor `(B, H, W, C)`.

    Example:
    >>> import numpy as np
    >>> tuple(unpatchify(np.zeros((2, 6, 768), "float32"), 16, (32, 48, 3)).shape)
    (2, 32, 48, 3)
    """
    ph, pw = to_2tuple(patch_size, "patch_size")
    h, w, c = image_shape
    check_image_size((h, w), (ph, pw))
    gh, gw = h // ph, w // pw
    if patches.shape[1] is not None and patches.shape[1] != gh * gw:
        raise ValueError(
            f"`patches` has {patches.shape[1]} tokens but `image_shape`={image_shape} "
            f"with patch size {(ph, pw)} needs {gh * gw}."
        )
    x = ops.reshape(patches, (-1, gh, gw, ph, pw, c))
    x = ops.transpose(x, (0, 1, 3, 2, 4, 5))  # (B, gh, ph, gw, pw, C)
    return ops.reshape(x, (-1, h, w, c))


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

    Args:
        patch_size: int or `(ph, pw)`.
        embed_dim: token width D.
        **kwargs: standard layer arguments.

    Example:
    >>> import numpy as np
    >>> tuple(PatchEmbedding(4, 64)(np.zeros((2, 32, 32, 3), "float32")).shape)
    (2, 64, 64)
    """

    def __init__(self, patch_size, embed_dim, **kwargs):
        super().__init__(**kwargs)
        self.patch_size = to_2tuple(patch_size, "patch_size")
        self.embed_dim = int(embed_dim)

    def build(self, input_shape):
        channels = input_shape[-1]
        ph, pw = self.patch_size
        scale = _dense_glorot_scale(ph * pw, channels, self.embed_dim)
        self.proj = keras.layers.Conv2D(
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
        x = self.proj(images)  # (B, gh, gw, D)
        return ops.reshape(x, (-1, x.shape[1] * x.shape[2], self.embed_dim))

    def compute_output_shape(self, input_shape):
        b, h, w, _ = input_shape
        ph, pw = self.patch_size
        return (b, (h // ph) * (w // pw), self.embed_dim)

    def get_config(self):
        config = super().get_config()
        config.update(patch_size=self.patch_size, embed_dim=self.embed_dim)
        return config
