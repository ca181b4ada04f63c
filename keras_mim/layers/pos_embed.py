"""2D position embeddings: the fixed sin-cos table of MAE, or a learned table."""

import keras
import numpy as np
from keras import ops

from keras_mim.utils import to_2tuple


def sincos_1d(dim, positions):
    """`(M, dim)` table: `[sin(pos * w), cos(pos * w)]`, `w_i = 1 / 10000^(i / (dim / 2))`."""
    if dim % 2:
        raise ValueError(f"The 1D sin-cos width must be even, got dim={dim}.")
    omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
    angles = np.reshape(positions, (-1,)).astype(np.float64)[:, None] * omega[None, :]
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)


def sincos_2d(dim, grid_shape):
    """The official MAE 2D table `(gh * gw, dim)`, rows in row-major grid order.

    The first `dim / 2` channels encode the column index, the rest the row index
    (the official grid is `meshgrid(w, h)`).
    """
    if dim % 4:
        raise ValueError(f"The 2D sin-cos embedding needs a width divisible by 4, got {dim}.")
    gh, gw = grid_shape
    cols, rows = np.meshgrid(np.arange(gw), np.arange(gh))  # each (gh, gw)
    return np.concatenate([sincos_1d(dim // 2, cols), sincos_1d(dim // 2, rows)], axis=1)


@keras.saving.register_keras_serializable(package="keras_mim")
class PositionEmbedding2D(keras.layers.Layer):
    """Adds a 2D position embedding to patch tokens `(B, N, D)`, N = gh * gw.

    `mode="sincos"` is the fixed MAE table (not trained); `mode="learned"` is a
    trainable table initialised with a truncated normal (std 0.02). With
    `cls_token=True` the layer also holds the row for a cls token (all zeros for
    sin-cos), returned by `cls_embedding()`.

    Tokens from a different grid (another image size) are accepted: the sin-cos table
    is recomputed for that grid and a learned table is resized bicubically, as
    `interpolate_pos_encoding` in HF ViTMAE.

    Args:
        grid_shape: `(gh, gw)` patch grid the table is built for.
        mode: `"sincos"` or `"learned"`.
        cls_token: whether to hold an extra row for a cls token.
        **kwargs: standard layer arguments.

    Example:
    >>> import numpy as np
    >>> layer = PositionEmbedding2D((2, 3))
    >>> tuple(layer(np.zeros((1, 6, 8), "float32")).shape)
    (1, 6, 8)
    """

    def __init__(self, grid_shape, mode="sincos", cls_token=True, **kwargs):
        super().__init__(**kwargs)
        if mode not in ("sincos", "learned"):
            raise ValueError(f"`mode` must be 'sincos' or 'learned', got {mode!r}.")
        self.grid_shape = to_2tuple(grid_shape, "grid_shape")
        self.mode = mode
        self.cls_token = bool(cls_token)

    def build(self, input_shape):
        dim = input_shape[-1]
        num = self.grid_shape[0] * self.grid_shape[1] + int(self.cls_token)
        if self.mode == "sincos":
            table = sincos_2d(dim, self.grid_shape)
            if self.cls_token:
                table = np.concatenate([np.zeros((1, dim)), table], axis=0)
            init = keras.initializers.Constant(table.astype("float32"))
        else:
            init = keras.initializers.TruncatedNormal(stddev=0.02)
        self.pos_embed = self.add_weight(
            shape=(1, num, dim),
            initializer=init,
            trainable=self.mode == "learned",
            name="pos_embed",
        )

    def cls_embedding(self):
        """The cls row `(1, 1, D)` (zeros for sin-cos)."""
        return self.pos_embed[:, :1]

    def patch_embedding(self, grid_shape=None):
        """The table `(1, gh * gw, D)` for `grid_shape` (default: the built grid)."""
        grid_shape = self.grid_shape if grid_shape is None else tuple(grid_shape)
        table = self.pos_embed[:, int(self.cls_token):]
        if grid_shape == self.grid_shape:
            return table
        dim = table.shape[-1]
        if self.mode == "sincos":
            return ops.convert_to_tensor(sincos_2d(dim, grid_shape)[None], dtype=table.dtype)
        gh, gw = self.grid_shape
        grid = ops.reshape(table, (1, gh, gw, dim))
        grid = ops.image.resize(grid, grid_shape, interpolation="bicubic")
        return ops.reshape(grid, (1, grid_shape[0] * grid_shape[1], dim))

    def call(self, tokens, grid_shape=None):
        if grid_shape is None:
            n = tokens.shape[1]
            if n != self.grid_shape[0] * self.grid_shape[1]:
                raise ValueError(
                    f"Got {n} tokens but the position embedding grid is {self.grid_shape}; "
                    "pass `grid_shape` for another grid."
                )
        return tokens + ops.cast(self.patch_embedding(grid_shape), tokens.dtype)

    def get_config(self):
        config = super().get_config()
        config.update(grid_shape=self.grid_shape, mode=self.mode, cls_token=self.cls_token)
        return config

