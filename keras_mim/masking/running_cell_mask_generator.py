"""VideoMAE V2's running-cell mask (the decoder mask of dual masking)."""

import keras
import numpy as np
from keras import ops

from keras_mim.masking.mask_generator import MaskGenerator, check_grid_shape


@keras.saving.register_keras_serializable(package="keras_mim")
class RunningCellMaskGenerator(MaskGenerator):
    """Running-cell masking over `(T, gh, gw)` grids (VideoMAE V2 decoder mask).

    A queue of 4 entries holds `m = int(4 * mask_ratio)` ones (hidden) followed by
    zeros. Time slice `t` hides the 2 x 2 pattern
    `queue[(arange(4) + ptr + t + 1) % 4].reshape(2, 2)`, tiled over the
    `(gh / 2, gw / 2)` cells, so the pattern shifts by one position every slice. The
    start `ptr` in {0, 1, 2, 3} is drawn per sample, as the official code picks one of
    its 4 precomputed maps. The pattern is exact: every 2 x 2 cell of every slice hides
    `m` tokens, `num_visible = N - T * gh * gw * m / 4`.

    Args:
        mask_ratio: fraction of hidden tokens; `int(4 * mask_ratio)` must be 1, 2 or 3
            (VideoMAE V2: 0.5).
        seed: optional int for repeatable masks.
        **kwargs: standard layer arguments.

    Examples:
        >>> import numpy as np
        >>> gen = RunningCellMaskGenerator(0.5, seed=0)
        >>> out = gen(np.zeros((2, 16, 8), "float32"), grid_shape=(4, 2, 2))  # (T, gh, gw)
        >>> gen.num_visible((4, 2, 2)), float(keras.ops.sum(out["mask"]))
        (8, 16.0)
        >>> m = keras.ops.convert_to_numpy(out["mask"]).reshape(2, 4, 4)
        >>> m.sum(axis=2).tolist()  # 2 of the 4 tokens of the cell hidden in every slice
        [[2.0, 2.0, 2.0, 2.0], [2.0, 2.0, 2.0, 2.0]]
    """

    grid_rank = 3

    def __init__(self, mask_ratio=0.5, seed=None, **kwargs):
        super().__init__(mask_ratio=mask_ratio, seed=seed, **kwargs)
        if not 1 <= int(4 * self.mask_ratio) <= 3:
            raise ValueError(
                f"`mask_ratio` must give int(4 * mask_ratio) in {{1, 2, 3}} hidden tokens per "
                f"2 x 2 cell (a ratio in [0.25, 1)), got {mask_ratio!r}."
            )
        self.num_masks_per_cell = int(4 * self.mask_ratio)

    @staticmethod
    def _video_grid(grid_shape):
        grid = check_grid_shape(grid_shape)
        if len(grid) != 3:
            raise ValueError(
                f"RunningCellMaskGenerator needs a video token grid `(T, gh, gw)`, got grid_shape={grid}."
            )
        _, gh, gw = grid
        if gh % 2 or gw % 2:
            raise ValueError(
                f"RunningCellMaskGenerator needs even spatial grid sides (2 x 2 cells), "
                f"got (gh, gw)={(gh, gw)} in grid_shape={grid}."
            )
        return grid

    def num_visible(self, grid_shape):
        t, gh, gw = self._video_grid(grid_shape)
        return t * gh * gw - t * (gh * gw // 4) * self.num_masks_per_cell

    def scores(self, batch_size, grid_shape):
        t, gh, gw = self._video_grid(grid_shape)
        # Static queue index of every token before the random start: j + t + 1, with j
        # the token's position in its 2 x 2 cell (row-major).
        cell = np.array([[0, 1], [2, 3]])
        j = np.tile(cell, (gh // 2, gw // 2)).reshape(1, gh * gw)
        base = (j + np.arange(t).reshape(t, 1) + 1).reshape(1, t * gh * gw).astype("int32")
        u = keras.random.uniform((batch_size, 1), seed=self.seed_generator)
        ptr = ops.cast(ops.minimum(ops.floor(u * 4.0), 3.0), "int32")
        queue_pos = ops.mod(ops.convert_to_tensor(base) + ptr, 4)
        # queue = [1] * m + [0] * (4 - m): position q holds a hidden entry iff q < m.
        return ops.cast(ops.less(queue_pos, self.num_masks_per_cell), "float32")
