"""DirichletMaskGenerator (MultiMAE): a static visible total split across modalities, whose
per-sample split has the distribution of the official algorithm (numpy, KS test)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from keras_mim.masking import DirichletMaskGenerator
from tests.conftest import expected_visible, to_numpy


def visible_counts(gen, grid, batch):
    mask = to_numpy(gen(np.zeros((batch, 1), "float32"), grid_shape=grid)["mask"])
    return (1 - mask).reshape(batch, grid[0], -1).sum(-1)  # (B, M)


def official_counts(rng, batch, num_modalities, per_modality, total, alpha):
    """The official `generate_random_masks` in numpy: Dirichlet shares, rounded counts, a
    random subset of that size per modality, then the first `total` tokens of a sort of the
    0/1 mask whose ties are broken at random."""
    shares = rng.dirichlet([alpha] * num_modalities, size=batch)
    counts = np.round(shares * total).astype(int)
    out = np.zeros((batch, num_modalities), int)
    for b in range(batch):
        chosen = np.concatenate([rng.permutation(per_modality) < counts[b, m] for m in range(num_modalities)])
        order = np.lexsort((rng.random(chosen.size), ~chosen))  # chosen first, ties at random
        kept = np.zeros(chosen.size, bool)
        kept[order[:total]] = True
        out[b] = kept.reshape(num_modalities, per_modality).sum(1)
    return out


def test_split_matches_the_official_algorithm_and_the_dirichlet_marginal():
    """MultiMAE's setting: 98 of 3 x 196 tokens visible, alpha 1."""
    batch, grid = 3000, (3, 14, 14)
    ours = visible_counts(DirichletMaskGenerator(mask_ratio=5 / 6, alpha=1.0, seed=0), grid, batch)
    assert (ours.sum(1) == 98).all()
    reference = official_counts(np.random.default_rng(1), batch, 3, 196, 98, 1.0)
    for m in range(3):
        assert stats.ks_2samp(ours[:, m], reference[:, m]).pvalue > 1e-3
    # the marginal share of one modality under a symmetric Dirichlet(1) of 3 is Beta(1, 2)
    assert stats.kstest(ours[:, 0] / 98 + np.random.default_rng(2).uniform(-0.5, 0.5, batch) / 98,
                        stats.beta(1, 2).cdf).pvalue > 1e-3


@pytest.mark.one_backend
def test_alpha_sets_how_lopsided_the_splits_are():
    grid = (3, 8, 8)
    share = {a: visible_counts(DirichletMaskGenerator(0.75, alpha=a, seed=0), grid, 400).max(1).mean() / 48
             for a in (0.2, 10.0)}
    assert share[0.2] > 0.75 and share[10.0] < 0.5  # one modality almost alone vs an even split (1/3)


@settings(max_examples=15, deadline=None)
@given(m=st.integers(1, 4), gh=st.integers(1, 4), gw=st.integers(1, 4), ratio=st.floats(0.1, 0.9),
       alpha=st.sampled_from([0.3, 1.0, 5.0]))
@pytest.mark.one_backend
def test_property_every_sample_keeps_exactly_the_static_total(m, gh, gw, ratio, alpha):
    n = m * gh * gw
    if expected_visible(n, ratio) < 1:
        return
    gen = DirichletMaskGenerator(ratio, alpha=alpha, seed=0)
    counts = visible_counts(gen, (m, gh, gw), 6)
    assert (counts.sum(1) == expected_visible(n, ratio)).all() and (counts <= gh * gw).all()


@pytest.mark.one_backend
def test_bad_arguments():
    with pytest.raises(ValueError, match="alpha"):
        DirichletMaskGenerator(alpha=0.0)
    with pytest.raises(ValueError, match="rank 3"):
        DirichletMaskGenerator()(np.zeros((2, 1)), grid_shape=(4, 4))


@pytest.mark.parametrize("alpha", [0.3, 1.0, 4.0])
def test_gamma_draws_follow_scipys_gamma(alpha):
    import keras

    from keras_mim.masking.dirichlet_mask_generator import gamma_draws

    draws = to_numpy(gamma_draws((4000,), alpha, keras.random.SeedGenerator(0)))
    assert stats.kstest(draws, stats.gamma(alpha).cdf).pvalue > 1e-3
