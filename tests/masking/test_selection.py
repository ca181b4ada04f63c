import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_mim.masking import RandomMaskGenerator, num_visible, select_tokens
from tests.conftest import expected_visible, to_numpy


@pytest.mark.one_backend  # property test, many shapes: one CI pass; fixed cases run on every backend
@settings(max_examples=25, deadline=None)
@given(
    batch=st.integers(1, 4),
    num_tokens=st.integers(2, 40),
    ratio=st.floats(0.0, 0.95),
    seed=st.integers(0, 2**16),
)
def test_selection_properties(batch, num_tokens, ratio, seed):
    keep = int(num_tokens * (1 - ratio))
    if keep < 1:
        return
    scores = np.random.default_rng(seed).random((batch, num_tokens)).astype("float32")
    out = {k: to_numpy(v) for k, v in select_tokens(scores, keep).items()}
    ids_keep, ids_restore, mask = out["ids_keep"], out["ids_restore"], out["mask"]
    # exact hidden count in every sample
    np.testing.assert_array_equal(mask.sum(1), num_tokens - keep)
    ids_shuffle = np.argsort(scores, axis=1, kind="stable")
    for b in range(batch):
        # ids_restore inverts the shuffle
        np.testing.assert_array_equal(ids_shuffle[b][ids_restore[b]], np.arange(num_tokens))
        # the kept tokens are the lowest scores, and none of them is hidden
        assert set(ids_keep[b]) == set(ids_shuffle[b, :keep])
        assert mask[b, ids_keep[b]].sum() == 0
        hidden = set(np.flatnonzero(mask[b]))
        assert hidden.isdisjoint(ids_keep[b]) and len(hidden | set(ids_keep[b])) == num_tokens


@pytest.mark.one_backend  # property test, many shapes: one CI pass; fixed cases run on every backend
@settings(max_examples=10, deadline=None)
@given(gh=st.integers(1, 6), gw=st.integers(2, 6), ratio=st.sampled_from([0.0, 0.5, 0.75, 0.9]))
def test_random_generator_counts_and_dtypes(gh, gw, ratio):
    n = gh * gw
    if expected_visible(n, ratio) < 1:
        with pytest.raises(ValueError, match="leaves no visible token"):
            RandomMaskGenerator(ratio)(np.zeros((2, n, 1)), grid_shape=(gh, gw))
        return
    out = RandomMaskGenerator(ratio, seed=3)(np.zeros((3, n, 1)), grid_shape=(gh, gw))
    mask = to_numpy(out["mask"])
    assert mask.dtype == np.float32 and mask.shape == (3, n)
    np.testing.assert_array_equal(mask.sum(1), n - expected_visible(n, ratio))
    assert "int" in str(to_numpy(out["ids_keep"]).dtype)


def test_keep_count_is_official_formula():
    assert num_visible(196, 0.75) == 49
    assert num_visible(196, 0.985) == 2  # CropMAE
    assert num_visible(588, 5 / 6) == 98 and num_visible(20, 0.9) == 2  # not lost to float round-off
    assert num_visible(1568, 0.9) == 156  # VideoMAE 16x224


def test_noise_fixes_the_mask():
    noise = np.random.default_rng(0).random((2, 16)).astype("float32")
    gen_a, gen_b = RandomMaskGenerator(0.75, seed=1), RandomMaskGenerator(0.75, seed=2)
    a = to_numpy(gen_a(noise, grid_shape=(4, 4), noise=noise)["mask"])
    b = to_numpy(gen_b(noise, grid_shape=(4, 4), noise=noise)["mask"])
    np.testing.assert_array_equal(a, b)
    expected = np.zeros((2, 16), "float32")
    for i in range(2):
        expected[i, np.argsort(noise[i])[4:]] = 1
    np.testing.assert_array_equal(a, expected)


def test_seed_repeats_and_masks_differ_across_batch_and_calls():
    x = np.zeros((8, 64, 1))
    g1, g2 = RandomMaskGenerator(0.75, seed=7), RandomMaskGenerator(0.75, seed=7)
    m1, m2 = to_numpy(g1(x, grid_shape=(8, 8))["mask"]), to_numpy(g2(x, grid_shape=(8, 8))["mask"])
    np.testing.assert_array_equal(m1, m2)
    assert len({m.tobytes() for m in m1}) == 8  # different masks across the batch
    assert not np.array_equal(m1, to_numpy(g1(x, grid_shape=(8, 8))["mask"]))  # and across calls


@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.5])
def test_bad_ratio(ratio):
    with pytest.raises(ValueError, match=r"`mask_ratio` must be in \[0, 1\)"):
        RandomMaskGenerator(ratio)


def test_bad_noise_shape():
    with pytest.raises(ValueError, match=r"`noise` must have shape \(batch, 16\)"):
        RandomMaskGenerator(0.5)(np.zeros((2, 16, 1)), grid_shape=(4, 4), noise=np.zeros((2, 15)))
