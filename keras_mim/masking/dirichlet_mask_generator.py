"""MultiMAE's masking across modalities: a fixed budget of visible tokens split between the
modalities by a per-sample Dirichlet draw (`MultiMAE.generate_random_masks` of
EPFL-VILAB/MultiMAE)."""

import keras
from keras import ops

from keras_mim.masking.mask_generator import MaskGenerator


#: Candidates per draw of `gamma_draws`; each is accepted with probability >= 0.95.
GAMMA_ROUNDS = 8


def gamma_draws(shape, alpha, seed_generator, rounds=GAMMA_ROUNDS):
    """Gamma(`alpha`, 1) samples of `shape` in plain Keras ops (float32).

    `keras.random.gamma` is not usable inside a compiled TensorFlow step (XLA has no
    kernel for TensorFlow's stateless gamma op), so this is Marsaglia and Tsang's method
    (2000) with a static number of candidates: `rounds` normal/uniform pairs per sample,
    the first accepted one kept (each is accepted with probability >= 0.95 for shape
    >= 1, so all 8 fail with probability < 1e-10; then the mode `d` is used). Shapes
    below 1 use `Gamma(a) = Gamma(a + 1) * U^(1/a)`.
    """
    boost = alpha < 1.0
    a = alpha + 1.0 if boost else alpha
    d = a - 1.0 / 3.0
    c = 1.0 / (9.0 * d) ** 0.5
    x = keras.random.normal((rounds,) + tuple(shape), seed=seed_generator)
    u = keras.random.uniform((rounds,) + tuple(shape), seed=seed_generator)
    v = ops.power(1.0 + c * x, 3.0)
    safe_v = ops.maximum(v, 1e-30)
    accept = (v > 0) & (ops.log(ops.maximum(u, 1e-30)) < 0.5 * x * x + d - d * safe_v + d * ops.log(safe_v))
    first = ops.argmax(ops.cast(accept, "int32"), axis=0)  # the first accepted candidate
    value = ops.take_along_axis(d * safe_v, ops.expand_dims(first, 0), axis=0)[0]
    value = ops.where(ops.any(accept, axis=0), value, d)
    if boost:
        value = value * ops.power(keras.random.uniform(tuple(shape), seed=seed_generator), 1.0 / alpha)
    return value


@keras.saving.register_keras_serializable(package="keras_mim")
class DirichletMaskGenerator(MaskGenerator):
    """Splits a static number of visible tokens across modalities, differently per sample.

    The token grid is `(M, gh, gw)`: M modalities (or band groups) of `gh x gw` tokens
    each, modality-major. Per sample, the shares of the M modalities are drawn from a
    symmetric Dirichlet(`alpha`) (as normalised Gamma(`alpha`) draws, `gamma_draws`);
    modality m gets `round(share_m * K)` visible tokens, chosen uniformly inside it, where
    K = `int(M * gh * gw * (1 - mask_ratio))` is the static total. Rounding can make the
    counts sum to K +- 1 or so; as the official code (which sorts the 0/1 mask with an
    unstable sort), the surplus or deficit falls on random tokens, so every sample keeps
    exactly K. Low `alpha` gives lopsided splits (often one modality almost alone), high
    `alpha` even ones; MultiMAE: `alpha=1`, 98 of 3 x 196 tokens visible (`mask_ratio=5/6`).

    Scores are `(1 - chosen) + noise / 2` with uniform `noise`: chosen tokens score below
    0.5, the others above 1, and ties (the rounding surplus) go by the noise.

    Args:
        mask_ratio: fraction of all tokens hidden, in [0, 1).
        alpha: the Dirichlet concentration, a float > 0 (MultiMAE: 1.0).
        seed: optional int for repeatable masks.
        **kwargs: standard layer arguments.

    Examples:
        >>> import numpy as np
        >>> gen = DirichletMaskGenerator(mask_ratio=0.75, alpha=1.0, seed=0)
        >>> out = gen(np.zeros((4, 1), "float32"), grid_shape=(3, 4, 4))  # 3 modalities of 16 tokens
        >>> visible = 1 - keras.ops.convert_to_numpy(out["mask"]).reshape(4, 3, 16)
        >>> visible.sum(axis=(1, 2)).tolist()  # 12 of 48 in every sample, split differently
        [12.0, 12.0, 12.0, 12.0]
    """

    grid_rank = 3
    leading_axis = "modality"

    def __init__(self, mask_ratio=0.75, alpha=1.0, seed=None, **kwargs):
        super().__init__(mask_ratio=mask_ratio, seed=seed, **kwargs)
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
            raise ValueError(f"`alpha` must be a number > 0 (the Dirichlet concentration), got {alpha!r}.")
        self.alpha = float(alpha)

    def modality_shares(self, batch_size, num_modalities):
        """Per-sample Dirichlet(`alpha`) shares `(B, M)` float32, each row summing to 1."""
        gamma = gamma_draws((batch_size, num_modalities), self.alpha, self.seed_generator)
        gamma = ops.maximum(ops.cast(gamma, "float32"), 1e-30)  # tiny alpha can underflow to 0
        return gamma / ops.sum(gamma, axis=1, keepdims=True)

    def scores(self, batch_size, grid_shape):
        m, gh, gw = grid_shape
        per_modality = gh * gw
        total = self.num_visible(grid_shape)
        counts = ops.round(self.modality_shares(batch_size, m) * total)  # (B, M)
        noise = keras.random.uniform((batch_size, m, per_modality), seed=self.seed_generator)
        rank = ops.argsort(ops.argsort(noise, axis=-1), axis=-1)  # each token's rank inside its modality
        chosen = ops.cast(ops.cast(rank, "float32") < ops.expand_dims(counts, -1), "float32")
        return ops.reshape((1.0 - chosen) + 0.5 * noise, (batch_size, m * per_modality))

    def get_config(self):
        config = super().get_config()
        config.update(alpha=self.alpha)
        return config
