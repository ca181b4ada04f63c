"""Base class of every mask generator."""

import keras
from keras import ops

from keras_mim.masking.selection import num_visible, select_tokens
from keras_mim.utils import check_mask_ratio, to_2tuple


@keras.saving.register_keras_serializable(package="keras_mim")
class MaskGenerator(keras.layers.Layer):
    """Decides which tokens to hide; never touches the tokens themselves.

    A subclass implements `scores(batch_size, grid_shape)` returning float `(B, N)`
    scores (lower = kept). `call` turns scores into `ids_keep`, `ids_restore` and
    `mask` through the shared `select_tokens`, hiding exactly
    `N - int(N * (1 - mask_ratio))` tokens in every sample. Passing `noise` fixes the
    mask (it is used as the scores), as in the reference implementations.

    Args:
        mask_ratio: fraction of tokens to hide, in [0, 1).
        seed: optional int; makes the sequence of masks repeatable.
        **kwargs: standard layer arguments.
    """

    def __init__(self, mask_ratio=0.75, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.mask_ratio = check_mask_ratio(mask_ratio)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.built = True  # no weights, only the seed state

    def num_visible(self, num_tokens):
        """Static number of visible tokens for a sequence of `num_tokens`."""
        check_mask_ratio(self.mask_ratio, num_tokens)
        return num_visible(num_tokens, self.mask_ratio)

    def scores(self, batch_size, grid_shape):
        raise NotImplementedError(f"{type(self).__name__} must implement `scores`.")

    def call(self, inputs, grid_shape, noise=None):
        """Draw masks for a batch.

        Args:
            inputs: any tensor whose first axis is the batch (images or tokens); only
                its batch size is read.
            grid_shape: static `(gh, gw)` token grid; N = gh * gw.
            noise: optional float `(B, N)` scores that replace the random ones.

        Returns:
            dict of `ids_keep` `(B, K)`, `ids_restore` `(B, N)`, `mask` `(B, N)`.
        """
        grid_shape = to_2tuple(tuple(grid_shape), "grid_shape")
        n = grid_shape[0] * grid_shape[1]
        if noise is None:
            noise = self.scores(ops.shape(inputs)[0], grid_shape)
        elif noise.shape[-1] != n or len(noise.shape) != 2:
            raise ValueError(f"`noise` must have shape (batch, {n}), got {tuple(noise.shape)}.")
        return select_tokens(ops.cast(noise, "float32"), self.num_visible(n))

    def get_config(self):
        config = super().get_config()
        config.update(mask_ratio=self.mask_ratio, seed=self.seed)
        return config
