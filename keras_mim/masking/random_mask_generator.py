"""MAE's per-sample uniform random masking."""

import math

import keras

from keras_mim.masking.mask_generator import MaskGenerator


@keras.saving.register_keras_serializable(package="keras_mim")
class RandomMaskGenerator(MaskGenerator):
    """Hides a uniformly random subset of tokens in each sample (MAE).

    Scores are i.i.d. uniform noise; the lowest `int(N * (1 - mask_ratio))` stay visible.

    Args:
        mask_ratio: fraction of tokens to hide, in [0, 1) (MAE: 0.75).
        seed: optional int for repeatable masks.
        **kwargs: standard layer arguments.

    Examples:
        >>> import numpy as np
        >>> gen = RandomMaskGenerator(0.75, seed=0)
        >>> out = gen(np.zeros((2, 16, 8), "float32"), grid_shape=(4, 4))
        >>> tuple(out["ids_keep"].shape), float(keras.ops.sum(out["mask"]))
        ((2, 4), 24.0)
    """

    def scores(self, batch_size, grid_shape):
        n = math.prod(grid_shape)
        return keras.random.uniform((batch_size, n), seed=self.seed_generator)
