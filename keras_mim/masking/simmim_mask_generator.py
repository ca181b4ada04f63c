"""SimMIM's random masking over coarse cells of `mask_patch_size` pixels."""

import math

import keras
from keras import ops

from keras_mim.masking.mask_generator import MaskGenerator, check_grid_shape
from keras_mim.utils import check_positive_int


def _random_ranks(shape, seed):
    """A random permutation of `0..n-1` along the last axis, as float32 (distinct scores, no ties)."""
    noise = keras.random.uniform(shape, seed=seed)
    return ops.cast(ops.argsort(ops.argsort(noise, axis=-1), axis=-1), "float32")


@keras.saving.register_keras_serializable(package="keras_mim")
class SimMIMMaskGenerator(MaskGenerator):
    """Hides random coarse cells, each `mask_patch_size` pixels wide (SimMIM).

    The token grid is split into cells of `scale x scale` tokens, with
    `scale = mask_patch_size // model_patch_size`. `ceil(num_cells * mask_ratio)` cells
    are drawn uniformly at random and every token of a drawn cell is hidden, so
    `num_visible = N - ceil(num_cells * mask_ratio) * scale**2` (official SimMIM: 32 px
    cells, ratio 0.6; a 192 px image with patch 4 has a 48 x 48 grid of 6 x 6 cells).
    Each cell gets one distinct score, repeated over its tokens, so a cell is never split.

    Args:
        mask_ratio: fraction of cells to hide, in [0, 1) (rounded up to whole cells).
        mask_patch_size: side of a masking cell in pixels.
        model_patch_size: side of a model patch (token) in pixels; must divide
            `mask_patch_size`.
        seed: optional int for repeatable masks.
        **kwargs: standard layer arguments.

    Examples:
        >>> import numpy as np
        >>> gen = SimMIMMaskGenerator(0.5, mask_patch_size=8, model_patch_size=4, seed=0)
        >>> out = gen(np.zeros((2, 16, 8), "float32"), grid_shape=(4, 4))  # 2 x 2 cells of 2 x 2 tokens
        >>> gen.num_visible((4, 4)), float(keras.ops.sum(out["mask"]))
        (8, 16.0)
        >>> m = keras.ops.convert_to_numpy(out["mask"]).reshape(2, 2, 2, 2, 2)  # (B, ch, s, cw, s)
        >>> bool((m.min(axis=(2, 4)) == m.max(axis=(2, 4))).all())  # whole cells hidden or kept
        True
    """

    grid_rank = 2

    def __init__(self, mask_ratio=0.6, mask_patch_size=32, model_patch_size=4, seed=None, **kwargs):
        super().__init__(mask_ratio=mask_ratio, seed=seed, **kwargs)
        self.mask_patch_size = check_positive_int(mask_patch_size, "mask_patch_size")
        self.model_patch_size = check_positive_int(model_patch_size, "model_patch_size")
        if mask_patch_size % model_patch_size:
            raise ValueError(
                f"`mask_patch_size`={mask_patch_size} must be a multiple of "
                f"`model_patch_size`={model_patch_size}, so that a masking cell covers whole tokens."
            )
        self.scale = mask_patch_size // model_patch_size

    def _cell_grid(self, grid_shape):
        grid = check_grid_shape(grid_shape)
        if len(grid) != 2:
            raise ValueError(f"SimMIMMaskGenerator needs a 2D grid `(gh, gw)`, got grid_shape={grid}.")
        gh, gw = grid
        s = self.scale
        if gh % s or gw % s:
            raise ValueError(
                f"The token grid {grid} is not divisible by the cell scale {s} "
                f"(mask_patch_size {self.mask_patch_size} // model_patch_size {self.model_patch_size}); "
                f"use an image size that is a multiple of mask_patch_size={self.mask_patch_size}."
            )
        return gh // s, gw // s

    def num_hidden_cells(self, grid_shape):
        """Static number of hidden cells, `ceil(num_cells * mask_ratio)`."""
        ch, cw = self._cell_grid(grid_shape)
        return int(math.ceil(ch * cw * self.mask_ratio))

    def num_visible(self, grid_shape):
        ch, cw = self._cell_grid(grid_shape)
        hidden = self.num_hidden_cells(grid_shape)
        if hidden >= ch * cw:
            raise ValueError(
                f"`mask_ratio`={self.mask_ratio!r} hides all {ch * cw} cells of the grid "
                f"{tuple(grid_shape)}; use a lower ratio or smaller cells."
            )
        return math.prod(grid_shape) - hidden * self.scale**2

    def scores(self, batch_size, grid_shape):
        ch, cw = self._cell_grid(grid_shape)
        s = self.scale
        cells = _random_ranks((batch_size, ch * cw), self.seed_generator)  # distinct per cell
        cells = ops.reshape(cells, (-1, ch, cw))
        tokens = ops.repeat(ops.repeat(cells, s, axis=1), s, axis=2)  # (B, gh, gw)
        return ops.reshape(tokens, (-1, ch * s * cw * s))

    def get_config(self):
        config = super().get_config()
        config.update(mask_patch_size=self.mask_patch_size, model_patch_size=self.model_patch_size)
        return config
