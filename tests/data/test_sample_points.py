"""The generated point clouds: every point on its shape's surface, normalised as Point-MAE's."""

import numpy as np
import pytest

from keras_mim.data.sample_points import SHAPE_CLASSES, _surface, shape_clouds

pytestmark = pytest.mark.backend_independent  # numpy only


def on_surface(name, x):
    """Distance of each point to the exact surface of the unit shape `name` (0 = on it)."""
    r = np.hypot(x[:, 0], x[:, 1])
    if name == "sphere":
        return np.abs(np.linalg.norm(x, axis=1) - 1)
    if name == "cube":
        return np.abs(np.abs(x).max(1) - 1)
    if name == "cylinder":
        return np.minimum(np.abs(r - 1) + np.maximum(np.abs(x[:, 2]) - 1, 0), np.abs(np.abs(x[:, 2]) - 1))
    if name == "cone":
        return np.minimum(np.abs(r - (1 - x[:, 2]) / 2), np.abs(x[:, 2] + 1))
    if name == "torus":
        return np.abs(np.hypot(r - 1, x[:, 2]) - 0.35)
    if name == "pyramid":  # base plane z = -1, or a side face |x| or |y| = (1 - z) / 2 at the larger one
        side = np.abs(np.maximum(np.abs(x[:, 0]), np.abs(x[:, 1])) - (1 - x[:, 2]) / 2)
        return np.minimum(side, np.abs(x[:, 2] + 1))
    raise AssertionError(name)


@pytest.mark.parametrize("name", SHAPE_CLASSES)
def test_points_lie_on_the_surface(name):
    x = _surface(name, 2000, np.random.default_rng(0))
    assert x.shape == (2000, 3) and on_surface(name, x).max() < 1e-9


def test_clouds_are_normalised_labelled_and_repeatable():
    points, labels, names = shape_clouds(12, num_points=128, seed=3)
    assert points.shape == (12, 128, 3) and points.dtype == np.float32 and names == SHAPE_CLASSES
    assert labels.tolist() == list(range(6)) * 2
    np.testing.assert_allclose(points.mean(1), 0.0, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(points, axis=-1).max(1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(points, shape_clouds(12, num_points=128, seed=3)[0])
