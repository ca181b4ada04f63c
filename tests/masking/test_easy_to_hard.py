"""HPM's easy-to-hard masks: the hardest floor(alpha * hidden) tokens always hidden, the rest random."""

import keras
import numpy as np
import pytest

from keras_mim.masking.easy_to_hard_mask_generator import EasyToHardMaskGenerator
from tests.conftest import to_numpy

GRID = (4, 4)  # N = 16; ratio 0.75 hides 12


def draw(gen, difficulty, alpha=None):
    out = gen(np.zeros((len(difficulty), 1), "float32"), grid_shape=GRID, difficulty=difficulty, alpha=alpha)
    return {k: to_numpy(v) for k, v in out.items()}


def reference_split(difficulty, alpha, hidden):
    """The official generate_mask's choice: indices of the int(hidden * alpha) highest losses."""
    k = int(round(hidden * alpha, 6))  # exact rational floor for the alphas used here
    return np.argsort(difficulty, axis=1)[:, len(difficulty[0]) - k:] if k else np.zeros((len(difficulty), 0), int)


@pytest.mark.parametrize("alpha", [0.0, 0.25, 0.5, 0.7, 1.0])
def test_hardest_always_hidden_rest_uniform(rng, alpha):
    b, n, hidden = 3000, 16, 12
    difficulty = rng.normal(size=(b, n)).astype("float32")
    gen = EasyToHardMaskGenerator(0.75, alpha=0.5, seed=0)
    out = draw(gen, difficulty, alpha=alpha)
    mask = out["mask"]
    np.testing.assert_array_equal(mask.sum(1), hidden)  # exact count
    hard = reference_split(difficulty, alpha, hidden)
    k = hard.shape[1]
    assert k == int(round(hidden * alpha, 6))  # 0.7 * 12 = 8.4 -> 8, with float32 alpha too
    forced = np.zeros_like(mask, dtype=bool)
    np.put_along_axis(forced, hard, True, axis=1)
    assert mask[forced].min(initial=1.0) == 1.0  # the hardest are hidden in every draw
    # the others: a uniformly random subset of size hidden - k among n - k tokens
    rest = mask[~forced].reshape(b, n - k)
    if k < n:
        expected = (hidden - k) / (n - k)
        # frequency per difficulty rank: no preference among the non-forced tokens
        order = np.argsort(-difficulty, axis=1)
        by_rank = np.take_along_axis(mask, order, axis=1)[:, k:]
        np.testing.assert_allclose(by_rank.mean(0), expected, atol=0.04)
        np.testing.assert_allclose(rest.sum(1), hidden - k)
        if 0 < hidden - k < n - k:
            assert len({r.tobytes() for r in rest[:50]}) > 10  # random, not a fixed choice
    # ids_keep are the visible positions
    for i in range(5):
        np.testing.assert_array_equal(np.sort(out["ids_keep"][i]), np.flatnonzero(mask[i] == 0))


def test_exact_count_when_alpha_times_hidden_is_an_integer():
    # ViT-B/16 at ratio 0.75 hides 147 of 196; at epoch 87 of 147, alpha = 0.5 * 88 / 147
    # and alpha * 147 = 44 exactly, but float32 alpha * 147 is just below 44: still force 44.
    alpha = 0.5 * 88 / 147
    assert np.floor(np.float32(alpha) * np.float32(147)) == 43
    gen = EasyToHardMaskGenerator(0.75, seed=1)
    difficulty = np.tile(np.arange(196, dtype="float32")[::-1], (500, 1))  # token 0 hardest
    out = gen(np.zeros((500, 1)), grid_shape=(14, 14), difficulty=difficulty,
              alpha=keras.ops.convert_to_tensor(alpha, "float32"))
    mask = to_numpy(out["mask"])
    np.testing.assert_array_equal(mask[:, :44], 1.0)
    assert mask[:, 44].mean() < 0.9  # the 45th hardest is a random pick, p = 103 / 152


def test_alpha_tensor_default_and_full_difficulty(rng):
    difficulty = rng.normal(size=(4, 16)).astype("float32")
    gen = EasyToHardMaskGenerator(0.75, alpha=1.0, seed=0)
    mask = draw(gen, difficulty)["mask"]  # alpha 1: all 12 hidden tokens by difficulty
    expected = np.zeros((4, 16))
    np.put_along_axis(expected, np.argsort(difficulty, 1)[:, 4:], 1.0, axis=1)
    np.testing.assert_array_equal(mask, expected)
    variable = keras.Variable(0.0)  # a model's alpha: all random
    assert draw(gen, difficulty, alpha=variable)["mask"].sum() == 48


def test_without_difficulty_it_is_random_masking_and_seeded():
    a = EasyToHardMaskGenerator(0.75, seed=3)
    m1 = to_numpy(a(np.zeros((8, 1)), grid_shape=GRID)["mask"])
    m2 = to_numpy(EasyToHardMaskGenerator(0.75, seed=3)(np.zeros((8, 1)), grid_shape=GRID)["mask"])
    np.testing.assert_array_equal(m1, m2)
    np.testing.assert_array_equal(m1.sum(1), 12)
    assert len({r.tobytes() for r in m1}) >= 7
    noise = np.tile(np.arange(16, dtype="float32"), (2, 1))
    fixed = to_numpy(a(np.zeros((2, 1)), grid_shape=GRID, noise=noise)["mask"])
    np.testing.assert_array_equal(fixed[:, :4], 0.0)


def test_config_round_trip():
    gen = EasyToHardMaskGenerator(0.6, alpha=0.3, seed=5)
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(gen))
    assert type(again) is EasyToHardMaskGenerator and again.get_config() == gen.get_config()
    assert again.alpha == 0.3 and again.mask_ratio == 0.6


def test_bad_input():
    with pytest.raises(ValueError, match="`alpha` must be in \\[0, 1\\], got 1.5"):
        EasyToHardMaskGenerator(alpha=1.5)
    with pytest.raises(TypeError, match="`alpha` must be a float"):
        EasyToHardMaskGenerator(alpha="hard")
    gen = EasyToHardMaskGenerator()
    with pytest.raises(ValueError, match="`alpha` must be in"):
        gen(np.zeros((2, 1)), grid_shape=GRID, difficulty=np.zeros((2, 16)), alpha=-0.1)
    with pytest.raises(ValueError, match="`difficulty` must have shape \\(2, 16\\)"):
        gen(np.zeros((2, 1)), grid_shape=GRID, difficulty=np.zeros((2, 15)))
    with pytest.raises(ValueError, match="either `noise` or `difficulty`"):
        gen(np.zeros((2, 1)), grid_shape=GRID, difficulty=np.zeros((2, 16)), noise=np.zeros((2, 16)))
