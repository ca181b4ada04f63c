"""HPM's easy-to-hard masking: the patches predicted hardest are always hidden, the rest at random."""

import math

import keras
from keras import ops

from keras_mim.masking.mask_generator import MaskGenerator, check_grid_shape, check_token_values

HARD_OFFSET = 2.0  # added to the scores of forced-hidden tokens: above every uniform score in [0, 1)
COUNT_SLACK = 1e-3  # floor(alpha * hidden) in float32, robust to rounding just below an integer


def check_alpha(alpha, name="alpha"):
    """Raise unless `alpha` is a number in [0, 1]; returns it as a float."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
        raise TypeError(f"`{name}` must be a float in [0, 1], got {alpha!r}.")
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"`{name}` must be in [0, 1], got {alpha!r}.")
    return float(alpha)


@keras.saving.register_keras_serializable(package="keras_mim")
class EasyToHardMaskGenerator(MaskGenerator):
    """Hides the patches with the highest predicted difficulty, the rest at random (HPM).

    Given a per-token `difficulty` `(B, N)` (HPM: the reconstruction loss an EMA teacher
    predicts for each patch) and a fraction `alpha`, the `floor(alpha * N_hidden)`
    tokens of highest difficulty in each sample are always hidden, and the remaining
    `N_hidden - floor(alpha * N_hidden)` hidden tokens are a uniformly random subset of
    the others, `N_hidden = N - int(N * (1 - mask_ratio))`: the official
    `generate_mask` of Haochen-Wang409/HPM (`models_mae_learn_loss.py`). As scores
    (lower = kept) that is uniform noise in [0, 1), plus 2 on the forced tokens, through
    the shared `select_tokens`. Without `difficulty` the masks are plain random (MAE).

    Args:
        mask_ratio: fraction of tokens to hide, in [0, 1) (HPM: 0.75).
        alpha: fraction of the hidden tokens chosen by difficulty when a call gives no
            `alpha`, in [0, 1] (HPM's final value: 0.5). HPM passes its scheduled value
            at every call.
        seed: optional int for repeatable masks.
        **kwargs: standard layer arguments.

    Examples:
        >>> import numpy as np
        >>> gen = EasyToHardMaskGenerator(0.5, alpha=1.0, seed=0)
        >>> difficulty = np.array([[0.1, 0.9, 0.2, 0.8]], "float32")
        >>> out = gen(np.zeros((1, 4, 8), "float32"), grid_shape=(2, 2), difficulty=difficulty)
        >>> keras.ops.convert_to_numpy(out["mask"]).tolist()
        [[0.0, 1.0, 0.0, 1.0]]
    """

    def __init__(self, mask_ratio=0.75, alpha=0.5, seed=None, **kwargs):
        super().__init__(mask_ratio=mask_ratio, seed=seed, **kwargs)
        self.alpha = check_alpha(alpha)

    def scores(self, batch_size, grid_shape):
        return keras.random.uniform((batch_size, math.prod(grid_shape)), seed=self.seed_generator)

    def num_hard(self, alpha, num_hidden):
        """`floor(alpha * num_hidden)` as a float32 scalar; `alpha` may be a tensor."""
        return ops.floor(ops.cast(alpha, "float32") * float(num_hidden) + COUNT_SLACK)

    def difficulty_scores(self, difficulty, alpha, grid_shape):
        """Scores `(B, N)`: uniform in [0, 1), plus 2 on the `num_hard` hardest tokens."""
        difficulty = ops.cast(difficulty, "float32")
        num_hidden = math.prod(grid_shape) - self.num_visible(grid_shape)
        order = ops.argsort(-difficulty, axis=1)  # hardest first
        rank = ops.cast(ops.argsort(order, axis=1), "float32")  # (B, N): 0 = hardest
        hard = ops.cast(rank < self.num_hard(alpha, num_hidden), "float32")
        return self.scores(ops.shape(difficulty)[0], grid_shape) + HARD_OFFSET * hard

    def call(self, inputs, grid_shape, noise=None, difficulty=None, alpha=None):
        """Draw masks, the hardest tokens first when `difficulty` is given.

        Args:
            inputs: any tensor whose first axis is the batch; only its batch size is read.
            grid_shape: static token grid; N = its product.
            noise: optional float `(B, N)` scores that fix the mask (exclusive with
                `difficulty`).
            difficulty: optional float `(B, N)`, higher = harder.
            alpha: fraction of hidden tokens taken by difficulty (a float in [0, 1] or
                a scalar tensor); None: the generator's `alpha`.

        Returns:
            dict of `ids_keep` `(B, K)`, `ids_restore` `(B, N)`, `mask` `(B, N)`.
        """
        if difficulty is not None:
            if noise is not None:
                raise ValueError("Pass either `noise` or `difficulty` to EasyToHardMaskGenerator, not both.")
            grid_shape = check_grid_shape(grid_shape)
            difficulty = check_token_values(difficulty, inputs, grid_shape, "difficulty")
            if alpha is None or isinstance(alpha, (bool, int, float)):
                alpha = self.alpha if alpha is None else check_alpha(alpha)
            noise = self.difficulty_scores(difficulty, alpha, grid_shape)
        return super().call(inputs, grid_shape, noise=noise)

    def get_config(self):
        config = super().get_config()
        config.update(alpha=self.alpha)
        return config
