"""Point-cloud ops against numpy: greedy farthest point sampling (same start point), k-NN by
argsort of distances, brute-force Chamfer-L2; shapes under hypothesis."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_mim.layers.point_ops import chamfer_l2, farthest_point_sample, group_points, knn_indices
from tests.conftest import to_numpy


def np_fps(points, g):
    chosen, nearest = [0], np.full(len(points), np.inf)
    for _ in range(g - 1):
        nearest = np.minimum(nearest, ((points - points[chosen[-1]]) ** 2).sum(-1))
        chosen.append(int(np.argmax(nearest)))
    return chosen


def np_chamfer(a, b):
    d = ((a[:, None] - b[None]) ** 2).sum(-1)
    return d.min(1).mean() + d.min(0).mean()


@settings(max_examples=5, deadline=None)  # each new shape compiles anew on JAX
@given(n=st.integers(8, 40), g=st.integers(1, 8), k=st.integers(1, 8), seed=st.integers(0, 1000))
def test_fps_and_knn_match_numpy(n, g, k, seed):
    pts = np.random.default_rng(seed).normal(size=(2, n, 3)).astype("float32")
    fps = to_numpy(farthest_point_sample(pts, g))
    assert fps.shape == (2, g) and fps.dtype == np.int32
    for b in range(2):
        assert fps[b].tolist() == np_fps(pts[b].astype("float64"), g)
    centres = pts[:, :g]
    knn = to_numpy(knn_indices(pts, centres, k))
    for b in range(2):
        d = ((centres[b][:, None] - pts[b][None]) ** 2).sum(-1)
        np.testing.assert_allclose(np.take_along_axis(d, knn[b], 1), np.sort(d, 1)[:, :k], rtol=1e-4, atol=1e-5)
    groups, got_centres = (to_numpy(t) for t in group_points(pts, g, k))
    assert groups.shape == (2, g, k, 3)
    np.testing.assert_allclose(got_centres, np.take_along_axis(pts, fps[..., None], 1), atol=1e-6)
    np.testing.assert_allclose(groups[:, :, 0], 0.0, atol=1e-5)  # each centre is its own nearest point


def test_chamfer_matches_brute_force(rng):
    a = rng.normal(size=(3, 5, 7, 3)).astype("float32")
    b = rng.normal(size=(3, 5, 6, 3)).astype("float32")
    out = to_numpy(chamfer_l2(a, b))
    assert out.shape == (3, 5)
    expected = np.array([[np_chamfer(a[i, j], b[i, j]) for j in range(5)] for i in range(3)])
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
    assert float(to_numpy(chamfer_l2(a[0, 0], a[0, 0][::-1]))) == pytest.approx(0.0, abs=1e-5)  # order-free


def test_bad_input():
    pts = np.zeros((1, 6, 3), "float32")
    with pytest.raises(ValueError, match="cannot make 2 groups of 8 points"):
        group_points(pts, 2, 8)
    with pytest.raises(ValueError, match=r"`points` must be \(batch, num_points, 3\)"):
        group_points(np.zeros((1, 6, 2), "float32"), 2, 2)
    with pytest.raises(ValueError, match="`num_samples` must be an int in"):
        farthest_point_sample(pts, 0)
