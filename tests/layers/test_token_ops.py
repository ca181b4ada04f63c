import numpy as np

from keras_mim.layers import gather_tokens, restore_tokens
from tests.conftest import to_numpy


def test_gather_matches_numpy(rng):
    tokens = rng.normal(size=(3, 7, 4)).astype("float32")
    ids = np.stack([rng.permutation(7)[:3] for _ in range(3)])
    expected = np.stack([tokens[b, ids[b]] for b in range(3)])
    np.testing.assert_array_equal(to_numpy(gather_tokens(tokens, ids)), expected)


def test_restore_puts_tokens_back_and_fills_mask_token(rng):
    b, n, k, d = 2, 6, 2, 3
    tokens = rng.normal(size=(b, n, d)).astype("float32")
    shuffles = np.stack([rng.permutation(n) for _ in range(b)])
    restore = np.argsort(shuffles, axis=1)
    visible = np.stack([tokens[i, shuffles[i, :k]] for i in range(b)])
    mask_token = np.full((d,), -9.0, "float32")
    out = to_numpy(restore_tokens(visible, restore, mask_token))
    for i in range(b):
        for j in range(n):
            if j in shuffles[i, :k]:
                np.testing.assert_array_equal(out[i, j], tokens[i, j])
            else:
                np.testing.assert_array_equal(out[i, j], mask_token)
