"""VideoMAE tube masking: one random spatial mask shared by every time slice."""

import math

import keras
from keras import ops

from keras_mim.masking.mask_generator import MaskGenerator, check_grid_shape


@keras.saving.register_keras_serializable(package="keras_mim")
class TubeMaskGenerator(MaskGenerator):
    """Hides the same random spatial positions in every time slice of a clip (VideoMAE).

    For a `(T, gh, gw)` token grid, `int(mask_ratio * gh * gw)` spatial positions are
    drawn per sample and hidden in all T slices, so hidden tokens form tubes through
    time and `num_visible = T * (gh * gw - int(mask_ratio * gh * gw))`, as the official
    `TubeMaskingGenerator` (VideoMAE: ratio 0.9 on an 8 x 14 x 14 grid keeps 8 x 20).
    Each spatial position gets one distinct score, repeated over time, so a tube is
    never split.

    Args:
        mask_ratio: fraction of spatial positions to hide, in [0, 1).
        seed: optional int for repeatable masks.
        **kwargs: standard layer arguments.

    Examples:
        >>> import numpy as np
        >>> gen = TubeMaskGenerator(0.75, seed=0)
        >>> out = gen(np.zeros((2, 32, 8), "float32"), grid_shape=(2, 4, 4))  # (T, gh, gw)
        >>> gen.num_visible((2, 4, 4)), float(keras.ops.sum(out["mask"]))
        (8, 48.0)
        >>> m = keras.ops.convert_to_numpy(out["mask"]).reshape(2, 2, 16)
        >>> bool((m[:, 0] == m[:, 1]).all())  # the same mask in every time slice
        True
    """

    grid_rank = 3

    def __init__(self, mask_ratio=0.9, seed=None, **kwargs):
        super().__init__(mask_ratio=mask_ratio, seed=seed, **kwargs)

    @staticmethod
    def _video_grid(grid_shape):
        grid = check_grid_shape(grid_shape)
        if len(grid) != 3:
            raise ValueError(
                f"TubeMaskGenerator needs a video token grid `(T, gh, gw)`, got grid_shape={grid}; "
                "use a (T, gh, gw) grid (tubelet patching), or RandomMaskGenerator for images."
            )
        return grid

    def num_visible(self, grid_shape):
        t, gh, gw = self._video_grid(grid_shape)
        per_frame = gh * gw - int(self.mask_ratio * gh * gw)
        if per_frame < 1:
            raise ValueError(
                f"`mask_ratio`={self.mask_ratio!r} leaves no visible position out of the "
                f"{gh * gw} per time slice of grid {tuple(grid_shape)}; use a lower ratio."
            )
        return t * per_frame

    def scores(self, batch_size, grid_shape):
        t, gh, gw = self._video_grid(grid_shape)
        noise = keras.random.uniform((batch_size, gh * gw), seed=self.seed_generator)
        # Distinct ranks: a tie straddling the keep boundary can never split a tube.
        ranks = ops.cast(ops.argsort(ops.argsort(noise, axis=-1), axis=-1), "float32")
        tubes = ops.tile(ops.expand_dims(ranks, 1), (1, t, 1))  # (B, T, gh * gw)
        return ops.reshape(tubes, (-1, math.prod((t, gh, gw))))
