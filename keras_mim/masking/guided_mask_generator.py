"""Importance-guided masking: tokens sampled without replacement by importance (Gumbel top-k)."""

import math

import keras
from keras import ops

from keras_mim.masking.mask_generator import MaskGenerator, check_token_values

SAMPLE_MODES = ("hidden", "visible")
EPSILON = 1e-12  # added to importances before the log, so zeros stay finite


@keras.saving.register_keras_serializable(package="keras_mim")
class GuidedMaskGenerator(MaskGenerator):
    """Samples tokens without replacement in proportion to per-token importances.

    Importances (e.g. a teacher's [CLS] attention to each patch) come with each call as
    `importance` `(B, N)`. With the Gumbel top-k trick, `keys = log(importance + eps) /
    temperature + Gumbel noise`; the tokens with the largest keys are exactly a draw
    without replacement with probabilities proportional to `importance ** (1 / temperature)`
    (successive sampling, as `torch.multinomial(..., replacement=False)`). With
    `sample="hidden"` (default) the `N - K` largest keys are HIDDEN, so important tokens
    tend to be hidden; with `sample="visible"` the `K` largest keys stay VISIBLE, which is
    what MaskAlign's official attention masking does (it keeps the first `K` tokens of a
    `torch.multinomial` draw over the teacher's [CLS] attention). Without `importance`,
    all tokens weigh the same: plain random masking. The selection itself is the shared
    `select_tokens` (K = `int(N * (1 - mask_ratio))`).

    Args:
        mask_ratio: fraction of tokens to hide, in [0, 1) (MaskAlign: 0.7).
        temperature: positive float; above 1 flattens the importances towards uniform,
            below 1 sharpens them towards a deterministic top-k.
        seed: optional int for repeatable masks.
        sample: `"hidden"` (importance drives which tokens are hidden) or `"visible"`
            (importance drives which tokens stay visible).
        **kwargs: standard layer arguments.

    Examples:
        >>> import numpy as np
        >>> gen = GuidedMaskGenerator(0.5, seed=0)
        >>> importance = np.array([[0.0, 0.0, 1.0, 1.0]], "float32")
        >>> out = gen(np.zeros((1, 4, 8), "float32"), grid_shape=(2, 2), importance=importance)
        >>> keras.ops.convert_to_numpy(out["mask"]).tolist()
        [[0.0, 0.0, 1.0, 1.0]]
    """

    def __init__(self, mask_ratio=0.75, temperature=1.0, seed=None, sample="hidden", **kwargs):
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
            raise TypeError(f"`temperature` must be a positive float, got {temperature!r}.")
        if not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"`temperature` must be a positive finite float, got {temperature!r}.")
        if sample not in SAMPLE_MODES:
            raise ValueError(f"`sample` must be one of {list(SAMPLE_MODES)}, got {sample!r}.")
        super().__init__(mask_ratio=mask_ratio, seed=seed, **kwargs)
        self.temperature = float(temperature)
        self.sample = sample

    def gumbel(self, shape):
        """Standard Gumbel noise of `shape`, float32, from the layer's seed generator."""
        tiny = 1e-7
        u = keras.random.uniform(shape, minval=tiny, maxval=1.0 - tiny, dtype="float32", seed=self.seed_generator)
        return -ops.log(-ops.log(u))

    def scores(self, batch_size, grid_shape):
        # Uniform importances: the log term is constant, so only the Gumbel noise ranks.
        return self.gumbel((batch_size, math.prod(grid_shape)))

    def importance_scores(self, importance, grid_shape):
        """Scores (lower = kept) from importances `(B, N)` via Gumbel top-k keys."""
        importance = ops.cast(importance, "float32")
        keys = ops.log(ops.maximum(importance, 0.0) + EPSILON) / self.temperature
        keys = keys + self.gumbel(ops.shape(importance))
        return keys if self.sample == "hidden" else -keys

    def call(self, inputs, grid_shape, noise=None, importance=None):
        """Draw masks, guided by `importance` when given.

        Args:
            inputs: any tensor whose first axis is the batch; only its batch size is read.
            grid_shape: static token grid; N = its product.
            noise: optional float `(B, N)` scores that fix the mask (exclusive with
                `importance`).
            importance: optional non-negative float `(B, N)` per-token importances.

        Returns:
            dict of `ids_keep` `(B, K)`, `ids_restore` `(B, N)`, `mask` `(B, N)`.
        """
        if importance is not None:
            if noise is not None:
                raise ValueError("Pass either `noise` or `importance` to GuidedMaskGenerator, not both.")
            importance = check_token_values(importance, inputs, grid_shape, "importance")
            noise = self.importance_scores(importance, grid_shape)
        return super().call(inputs, grid_shape, noise=noise)

    def get_config(self):
        config = super().get_config()
        config.update(temperature=self.temperature, sample=self.sample)
        return config
