"""Base class of every mask generator."""

import math

import keras
from keras import ops

from keras_mim.masking.selection import num_visible, select_tokens
from keras_mim.utils import check_mask_ratio


def check_grid_shape(grid_shape):
    """A token grid as a tuple of positive ints: `(gh, gw)` for images, `(T, gh, gw)` for clips."""
    grid = tuple(grid_shape) if isinstance(grid_shape, (tuple, list)) else None
    if not grid or not all(isinstance(g, int) and not isinstance(g, bool) and g > 0 for g in grid):
        raise ValueError(f"`grid_shape` must be a tuple of positive ints, got {grid_shape!r}.")
    return grid


def check_token_values(values, inputs, grid_shape, name):
    """Per-token values `(B, N)` given to a generator (importances, difficulties) as a
    tensor; raise naming `name` unless the shape is (batch of `inputs`, prod(grid_shape))."""
    n = math.prod(check_grid_shape(grid_shape))
    if not hasattr(values, "shape"):
        values = ops.convert_to_tensor(values)
    shape = tuple(values.shape)
    batch = inputs.shape[0] if hasattr(inputs, "shape") else None
    if (
        len(shape) != 2
        or shape[1] != n
        or (isinstance(batch, int) and isinstance(shape[0], int) and shape[0] != batch)
    ):
        raise ValueError(f"`{name}` must have shape ({batch}, {n}) = (batch, N), got {shape}.")
    return values


@keras.saving.register_keras_serializable(package="keras_mim")
class MaskGenerator(keras.layers.Layer):
    """Decides which tokens to hide; never touches the tokens themselves.

    A subclass implements `scores(batch_size, grid_shape)` returning float `(B, N)`
    scores (lower = kept), N = prod(grid_shape) in row-major grid order. `call` turns
    scores into `ids_keep`, `ids_restore` and `mask` through the shared
    `select_tokens`, keeping exactly `num_visible(grid_shape)` tokens in every sample
    (`int(N * (1 - mask_ratio))` unless the strategy says otherwise). Passing `noise`
    fixes the mask (it is used as the scores), as in the reference implementations.

    Args:
        mask_ratio: fraction of tokens to hide, in [0, 1).
        seed: optional int; makes the sequence of masks repeatable.
        **kwargs: standard layer arguments.
    """

    #: Rank of the token grids the strategy works on: 2 for `(gh, gw)`, 3 for video
    #: `(T, gh, gw)`, None for any.
    grid_rank = None
    #: What the first axis of a rank-3 grid is, for figures: time (`"t"`, video strategies) or
    #: `"modality"` (multi-modal ones).
    leading_axis = "t"

    def __init__(self, mask_ratio=0.75, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.mask_ratio = check_mask_ratio(mask_ratio)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.built = True  # no weights, only the seed state

    def num_visible(self, grid_shape):
        """Static number of visible tokens on `grid_shape` (raises if it is 0)."""
        n = math.prod(check_grid_shape(grid_shape))
        check_mask_ratio(self.mask_ratio, n)
        return num_visible(n, self.mask_ratio)

    def scores(self, batch_size, grid_shape):
        raise NotImplementedError(f"{type(self).__name__} must implement `scores`.")

    def call(self, inputs, grid_shape, noise=None):
        """Draw masks for a batch.

        Args:
            inputs: any tensor whose first axis is the batch (images or tokens); only
                its batch size is read.
            grid_shape: static token grid, `(gh, gw)` or `(T, gh, gw)`; N = its product.
            noise: optional float `(B, N)` scores that replace the generated ones.

        Returns:
            dict of `ids_keep` `(B, K)`, `ids_restore` `(B, N)`, `mask` `(B, N)`.
        """
        grid_shape = check_grid_shape(grid_shape)
        if self.grid_rank is not None and len(grid_shape) != self.grid_rank:
            layout = "(gh, gw) image" if self.grid_rank == 2 else "(T, gh, gw) video"
            raise ValueError(
                f"{type(self).__name__} works on {layout} token grids (rank {self.grid_rank}), "
                f"got `grid_shape`={grid_shape}."
            )
        n = math.prod(grid_shape)
        if noise is None:
            noise = self.scores(ops.shape(inputs)[0], grid_shape)
        elif len(noise.shape) != 2 or noise.shape[-1] != n:
            raise ValueError(f"`noise` must have shape (batch, {n}), got {tuple(noise.shape)}.")
        return select_tokens(ops.cast(noise, "float32"), self.num_visible(grid_shape))

    def get_config(self):
        config = super().get_config()
        config.update(mask_ratio=self.mask_ratio, seed=self.seed)
        return config
