"""Keep one token per `stride x stride` cell: a shifted regular grid, or UM-MAE uniform sampling."""

import math

import keras
import numpy as np
from keras import ops

from keras_mim.masking.mask_generator import MaskGenerator, check_grid_shape


@keras.saving.register_keras_serializable(package="keras_mim")
class GridMaskGenerator(MaskGenerator):
    """Keeps exactly one token in every `stride x stride` cell of the grid.

    With `random_per_cell=False` every cell of a sample keeps the token at the same
    random offset `(dy, dx)`: a regular grid of visible tokens shifted at random per
    sample. With `random_per_cell=True` each cell keeps an independent uniformly random
    token (UM-MAE's uniform sampling). The mask ratio follows from the stride,
    `1 - 1 / stride**2` (0.75 for stride 2), and `num_visible = N // stride**2`.

    Args:
        stride: side of a cell in tokens, an int >= 2; must divide both grid sides.
        random_per_cell: draw the kept position independently in each cell.
        seed: optional int for repeatable masks.
        **kwargs: standard layer arguments. A `mask_ratio` key (as written by
            `get_config`) is accepted only if it equals `1 - 1 / stride**2`.

    Examples:
        >>> import numpy as np
        >>> gen = GridMaskGenerator(stride=2, seed=0)
        >>> out = gen(np.zeros((2, 16, 8), "float32"), grid_shape=(4, 4))
        >>> gen.mask_ratio, gen.num_visible((4, 4)), float(keras.ops.sum(out["mask"]))
        (0.75, 4, 24.0)
        >>> m = keras.ops.convert_to_numpy(out["mask"]).reshape(2, 2, 2, 2, 2)  # (B, ch, s, cw, s)
        >>> m.sum(axis=(2, 4)).tolist()  # 3 of the 4 tokens of every cell are hidden
        [[[3.0, 3.0], [3.0, 3.0]], [[3.0, 3.0], [3.0, 3.0]]]
    """

    grid_rank = 2

    def __init__(self, stride=2, random_per_cell=False, seed=None, **kwargs):
        if isinstance(stride, bool) or not isinstance(stride, int) or stride < 2:
            raise ValueError(f"`stride` must be an int >= 2, got {stride!r}.")
        if not isinstance(random_per_cell, bool):
            raise TypeError(f"`random_per_cell` must be a bool, got {random_per_cell!r}.")
        mask_ratio = 1.0 - 1.0 / stride**2
        given = kwargs.pop("mask_ratio", None)
        valid = isinstance(given, (int, float)) and not isinstance(given, bool)
        if given is not None and not (valid and math.isclose(given, mask_ratio)):
            raise ValueError(
                f"GridMaskGenerator derives `mask_ratio` from `stride` (1 - 1/stride**2 = {mask_ratio} "
                f"for stride={stride}); got mask_ratio={given!r}. Pass `stride` only."
            )
        super().__init__(mask_ratio=mask_ratio, seed=seed, **kwargs)
        self.stride = stride
        self.random_per_cell = random_per_cell

    def _cell_grid(self, grid_shape):
        grid = check_grid_shape(grid_shape)
        if len(grid) != 2:
            raise ValueError(f"GridMaskGenerator needs a 2D grid `(gh, gw)`, got grid_shape={grid}.")
        gh, gw = grid
        if gh % self.stride or gw % self.stride:
            raise ValueError(
                f"The token grid {grid} is not divisible by `stride`={self.stride}; "
                "use a grid whose sides are multiples of the stride."
            )
        return gh // self.stride, gw // self.stride

    def num_visible(self, grid_shape):
        ch, cw = self._cell_grid(grid_shape)
        return ch * cw

    def scores(self, batch_size, grid_shape):
        ch, cw = self._cell_grid(grid_shape)
        s = self.stride
        # Static position of every token inside its cell, 0..s*s-1, row-major in the cell.
        local = np.arange(s)[:, None] * s + np.arange(s)[None, :]
        local = np.tile(local, (ch, cw)).reshape(1, ch * s * cw * s).astype("float32")
        cells = ch * cw if self.random_per_cell else 1
        # The kept position of each cell (or of the whole sample): an int in [0, s*s).
        u = keras.random.uniform((batch_size, cells), seed=self.seed_generator)
        pick = ops.minimum(ops.floor(u * (s * s)), float(s * s - 1))
        if self.random_per_cell:
            pick = ops.reshape(pick, (-1, ch, cw))
            pick = ops.reshape(ops.repeat(ops.repeat(pick, s, axis=1), s, axis=2), (-1, ch * s * cw * s))
        # 0 for the kept token of each cell, 1 for the others: exactly ch * cw zeros.
        return ops.cast(ops.not_equal(ops.convert_to_tensor(local), pick), "float32")

    def get_config(self):
        config = super().get_config()
        config.update(stride=self.stride, random_per_cell=self.random_per_cell)
        return config
