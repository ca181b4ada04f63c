"""Position embeddings of image `(gh, gw)` and clip `(T, gh, gw)` token grids: fixed sin-cos
tables (MAE 2D, 3D, VideoMAE's flat 1D table) or a learned table."""

import math

import keras
import numpy as np
from keras import ops



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


def sincos_3d(dim, grid_shape):
    """A 3D table `(T * gh * gw, dim)` for a clip grid `(T, gh, gw)`, row-major.

    The first `dim / 4` channels encode the time index (1D sin-cos), the other
    `3 dim / 4` the spatial position (the MAE 2D table), so every time slice shares
    MAE's spatial layout; `dim` must be divisible by 16.
    """
    if dim % 16:
        raise ValueError(f"The 3D sin-cos embedding needs a width divisible by 16, got {dim}.")
    t, gh, gw = grid_shape
    time = np.repeat(sincos_1d(dim // 4, np.arange(t)), gh * gw, axis=0)
    space = np.tile(sincos_2d(dim - dim // 4, (gh, gw)), (t, 1))
    return np.concatenate([time, space], axis=1)


def sincos_flat(dim, num_positions):
    """VideoMAE's 1D table over the flattened grid `(N, dim)`: channel `j` of position
    `p` is `sin` (even `j`) or `cos` (odd `j`) of `p / 10000^(2 * (j // 2) / dim)`."""
    j = np.arange(dim)
    angles = np.arange(num_positions, dtype=np.float64)[:, None] / 10000 ** (2 * (j // 2) / dim)
    return np.where(j % 2 == 0, np.sin(angles), np.cos(angles))


def sincos_table(dim, grid_shape, mode="sincos"):
    """The fixed table `(prod(grid_shape), dim)` of `mode` (`"sincos"`: 2D for image
    grids, 3D for clip grids; `"sincos_1d"`: VideoMAE's flat table)."""
    if mode == "sincos_1d":
        return sincos_flat(dim, math.prod(grid_shape))
    return sincos_3d(dim, grid_shape) if len(grid_shape) == 3 else sincos_2d(dim, grid_shape)


def check_grid(grid_shape, name="grid_shape"):
    """A token grid `(gh, gw)` or `(T, gh, gw)` as a tuple of positive ints."""
    if not (
        isinstance(grid_shape, (tuple, list))
        and len(grid_shape) in (2, 3)
        and all(isinstance(g, int) and not isinstance(g, bool) and g > 0 for g in grid_shape)
    ):
        raise ValueError(f"`{name}` must be (gh, gw) or (T, gh, gw) positive ints, got {grid_shape!r}.")
    return tuple(grid_shape)


POSITION_MODES = ("sincos", "sincos_1d", "learned")


@keras.saving.register_keras_serializable(package="keras_mim")
class PositionEmbedding(keras.layers.Layer):
    """Adds a position embedding to tokens `(B, N, D)` of a `(gh, gw)` or `(T, gh, gw)` grid.

    `mode="sincos"` is the fixed MAE 2D table for images and a 3D table (time in the
    first `D / 4` channels, MAE's 2D table in the rest) for clips; `"sincos_1d"` is
    VideoMAE's fixed 1D table over the flattened grid; `"learned"` is a trainable table
    initialised with a truncated normal (std 0.02). With `cls_token=True` the layer also
    holds the row for a cls token (all zeros for fixed tables), see `cls_embedding()`.

    Tokens from a different grid (another image size) are accepted: a fixed table is
    recomputed for that grid and a learned one is resized bicubically per time slice
    (as `interpolate_pos_encoding` in HF ViTMAE).

    Args:
        grid_shape: `(gh, gw)` or `(T, gh, gw)` token grid the table is built for.
        mode: `"sincos"`, `"sincos_1d"` or `"learned"`.
        cls_token: whether to hold an extra row for a cls token.
        **kwargs: standard layer arguments.

    Examples:
        >>> import numpy as np
        >>> layer = PositionEmbedding((2, 3))
        >>> tuple(layer(np.zeros((1, 6, 8), "float32")).shape)
        (1, 6, 8)
        >>> tuple(PositionEmbedding((2, 2, 3))(np.zeros((1, 12, 16), "float32")).shape)
        (1, 12, 16)
    """

    def __init__(self, grid_shape, mode="sincos", cls_token=True, **kwargs):
        super().__init__(**kwargs)
        if mode not in POSITION_MODES:
            raise ValueError(f"`mode` must be one of {POSITION_MODES}, got {mode!r}.")
        self.grid_shape = check_grid(grid_shape)
        self.mode = mode
        self.cls_token = bool(cls_token)

    def build(self, input_shape):
        dim = input_shape[-1]
        num = math.prod(self.grid_shape) + int(self.cls_token)
        if self.mode == "learned":
            init = keras.initializers.TruncatedNormal(stddev=0.02)
        else:
            table = sincos_table(dim, self.grid_shape, self.mode)
            if self.cls_token:
                table = np.concatenate([np.zeros((1, dim)), table], axis=0)
            init = keras.initializers.Constant(table.astype("float32"))
        self.pos_embed = self.add_weight(
            shape=(1, num, dim),
            initializer=init,
            trainable=self.mode == "learned",
            name="pos_embed",
        )

    def cls_embedding(self):
        """The cls row `(1, 1, D)` (zeros for fixed tables)."""
        return self.pos_embed[:, :1]

    def patch_embedding(self, grid_shape=None):
        """The table `(1, N, D)` for `grid_shape` (default: the built grid)."""
        grid_shape = self.grid_shape if grid_shape is None else check_grid(grid_shape)
        table = self.pos_embed[:, int(self.cls_token):]
        if grid_shape == self.grid_shape:
            return table
        dim = table.shape[-1]
        if self.mode != "learned":
            return ops.convert_to_tensor(sincos_table(dim, grid_shape, self.mode)[None], dtype=table.dtype)
        if len(grid_shape) != len(self.grid_shape) or grid_shape[:-2] != self.grid_shape[:-2]:
            raise ValueError(
                f"A learned table for grid {self.grid_shape} can only be resized spatially, "
                f"got grid_shape={grid_shape}."
            )
        frames = math.prod(self.grid_shape[:-2])
        grid = ops.reshape(table, (frames,) + self.grid_shape[-2:] + (dim,))
        grid = ops.image.resize(grid, grid_shape[-2:], interpolation="bicubic")
        return ops.reshape(grid, (1, math.prod(grid_shape), dim))

    def call(self, tokens, grid_shape=None):
        if grid_shape is None:
            n = tokens.shape[1]
            if n != math.prod(self.grid_shape):
                raise ValueError(
                    f"Got {n} tokens but the position embedding grid is {self.grid_shape}; "
                    "pass `grid_shape` for another grid."
                )
        return tokens + ops.cast(self.patch_embedding(grid_shape), tokens.dtype)

    def get_config(self):
        config = super().get_config()
        config.update(grid_shape=self.grid_shape, mode=self.mode, cls_token=self.cls_token)
        return config
