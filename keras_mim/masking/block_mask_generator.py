"""BEiT's block-wise masking, vectorised: random rectangles hidden one after another."""

import math

import keras
import numpy as np
from keras import ops

from keras_mim.masking.mask_generator import MaskGenerator, check_grid_shape

# Upper bound on the rectangles drawn per sample; memory grows as B * R * N.
MAX_RECTANGLES = 128
# Extra rectangles beyond `ceil(hidden / min_num_patches)`, since rectangles overlap.
RECTANGLE_MARGIN = 4


def _positive_number(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"`{name}` must be a positive number, got {value!r}.")
    return value


@keras.saving.register_keras_serializable(package="keras_mim")
class BlockMaskGenerator(MaskGenerator):
    """Hides random rectangles of tokens, BEiT's block-wise masking, with an exact count.

    Each sample draws a fixed number R of rectangles: area uniform in
    `[min_num_patches, max_num_patches]` tokens, aspect ratio log-uniform in
    `[min_aspect, max_aspect]`, sides `round(sqrt(area * aspect))` x
    `round(sqrt(area / aspect))` clipped to the grid, position uniform inside the grid.
    A token's score is `R - k` (plus a jitter in [0, 0.5)) where k is the first rectangle
    covering it, and the jitter alone (below 1) if no rectangle covers it. Selection therefore
    hides whole rectangles in order, then part of the next one, then (only if the
    rectangles did not cover enough) random uncovered tokens, so exactly
    `int(N * (1 - mask_ratio))` tokens stay visible in every sample. Unlike BEiT's
    loop, the count is exact and rectangles are not rejected for overlapping.
    `R = min(ceil(hidden / min_num_patches) + 4, 128)`. 2D grids only.

    Args:
        mask_ratio: fraction of tokens to hide, in [0, 1) (BEiT: 0.4, 75 of 196).
        min_num_patches: smallest rectangle area in tokens (BEiT: 4).
        max_num_patches: largest rectangle area in tokens; None = the number of
            hidden tokens, as BEiT.
        min_aspect: smallest aspect ratio (height / width) (BEiT: 0.3).
        max_aspect: largest aspect ratio; None = `1 / min_aspect`.
        seed: optional int for repeatable masks.
        **kwargs: standard layer arguments.

    Examples:
        >>> import numpy as np
        >>> gen = BlockMaskGenerator(0.25, min_num_patches=16, min_aspect=1.0, seed=0)
        >>> out = gen(np.zeros((2, 64, 8), "float32"), grid_shape=(8, 8))
        >>> gen.num_visible((8, 8)), float(keras.ops.sum(out["mask"]))
        (48, 32.0)
        >>> m = keras.ops.convert_to_numpy(out["mask"]).reshape(2, 8, 8)
        >>> [sorted(set(m[i].sum(0).tolist() + m[i].sum(1).tolist())) for i in range(2)]  # a 4 x 4 square
        [[0.0, 4.0], [0.0, 4.0]]
    """

    grid_rank = 2

    def __init__(
        self,
        mask_ratio=0.4,
        min_num_patches=4,
        max_num_patches=None,
        min_aspect=0.3,
        max_aspect=None,
        seed=None,
        **kwargs,
    ):
        super().__init__(mask_ratio=mask_ratio, seed=seed, **kwargs)
        if isinstance(min_num_patches, bool) or not isinstance(min_num_patches, int) or min_num_patches < 1:
            raise ValueError(f"`min_num_patches` must be a positive int, got {min_num_patches!r}.")
        if max_num_patches is not None and (
            isinstance(max_num_patches, bool)
            or not isinstance(max_num_patches, int)
            or max_num_patches < min_num_patches
        ):
            raise ValueError(
                f"`max_num_patches` must be None or an int >= min_num_patches={min_num_patches}, "
                f"got {max_num_patches!r}."
            )
        _positive_number(min_aspect, "min_aspect")
        if max_aspect is not None:
            _positive_number(max_aspect, "max_aspect")
            if max_aspect < min_aspect:
                raise ValueError(
                    f"`max_aspect` must be >= min_aspect={min_aspect!r}, got {max_aspect!r}."
                )
        self.min_num_patches = min_num_patches
        self.max_num_patches = max_num_patches
        self.min_aspect = min_aspect
        self.max_aspect = max_aspect

    @staticmethod
    def _image_grid(grid_shape):
        grid = check_grid_shape(grid_shape)
        if len(grid) != 2:
            raise ValueError(f"BlockMaskGenerator needs a 2D grid `(gh, gw)`, got grid_shape={grid}.")
        return grid

    def num_visible(self, grid_shape):
        return super().num_visible(self._image_grid(grid_shape))

    def num_rectangles(self, grid_shape):
        """Static number R of rectangles drawn per sample on `grid_shape`."""
        n = math.prod(self._image_grid(grid_shape))
        hidden = n - self.num_visible(grid_shape)
        return max(1, min(math.ceil(hidden / self.min_num_patches) + RECTANGLE_MARGIN, MAX_RECTANGLES))

    def scores(self, batch_size, grid_shape):
        gh, gw = self._image_grid(grid_shape)
        n = gh * gw
        hidden = n - self.num_visible(grid_shape)
        r = self.num_rectangles(grid_shape)
        min_area = float(self.min_num_patches)
        max_area = float(max(self.min_num_patches, self.max_num_patches or hidden))
        max_aspect = self.max_aspect if self.max_aspect is not None else 1.0 / self.min_aspect
        log_lo, log_hi = math.log(self.min_aspect), math.log(max_aspect)

        # The two grid axes are stacked on one axis of size 2: (height, width), (top, left).
        limits = ops.convert_to_tensor(np.array([gh, gw], dtype="float32"))
        # One draw for everything (random ops are the costly ones to compile): 4 numbers
        # per rectangle (area, aspect, top, left), then one jitter per token.
        noise = keras.random.uniform((batch_size, 4 * r + n), seed=self.seed_generator)
        u = ops.reshape(noise[:, : 4 * r], (-1, r, 4))
        area = min_area + u[..., :1] * (max_area - min_area)  # (B, R, 1)
        log_aspect = log_lo + u[..., 1:2] * (log_hi - log_lo)
        # height = sqrt(area * aspect), width = sqrt(area / aspect), clipped to the grid.
        signs = ops.convert_to_tensor(np.array([1.0, -1.0], dtype="float32"))
        sides = ops.round(ops.sqrt(area * ops.exp(log_aspect * signs)))  # (B, R, 2)
        sides = ops.minimum(ops.maximum(sides, 1.0), limits)
        start = ops.minimum(ops.floor(u[..., 2:] * (limits - sides + 1.0)), limits - sides)

        coords = ops.convert_to_tensor(np.arange(max(gh, gw), dtype="float32"))
        inside = ops.cast(
            ops.logical_and(coords >= start[..., None], coords < (start + sides)[..., None]), "float32"
        )  # (B, R, 2, max(gh, gw))
        covered = inside[:, :, 0, :gh, None] * inside[:, :, 1, None, :gw]  # (B, R, gh, gw)
        # R - k for rectangle k: the first (earliest) rectangle covering a token wins.
        order = ops.convert_to_tensor(np.arange(r, 0, -1, dtype="float32").reshape(1, r, 1))
        first = ops.max(ops.reshape(covered, (-1, r, n)) * order, axis=1)  # (B, N), 0 = uncovered
        # Jitter in [0, 0.5) orders tokens inside a rectangle (and the uncovered ones, all
        # below 1) at random without ever reaching the next rectangle's integer level.
        return first + 0.5 * noise[:, 4 * r :]

    def get_config(self):
        config = super().get_config()
        config.update(
            min_num_patches=self.min_num_patches,
            max_num_patches=self.max_num_patches,
            min_aspect=self.min_aspect,
            max_aspect=self.max_aspect,
        )
        return config
