"""paired_scenes: shapes and dtypes, repeatable, the floor's depth by the formula of its row,
every shape nearer than the floor, classes where the shapes are."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_mim.data.paired_scenes import CLASS_NAMES, paired_scenes

pytestmark = pytest.mark.backend_independent  # numpy only


@settings(max_examples=20, deadline=None)
@given(h=st.integers(8, 40), w=st.integers(8, 40), shapes=st.integers(1, 4), seed=st.integers(0, 10_000))
def test_property_modalities_agree(h, w, shapes, seed):
    s = paired_scenes(3, image_size=(h, w), num_shapes=shapes, seed=seed)
    assert s["rgb"].shape == (3, h, w, 3) and s["depth"].shape == (3, h, w, 1) and s["semseg"].shape == (3, h, w)
    assert s["rgb"].dtype == s["depth"].dtype == np.float32 and s["semseg"].dtype == np.int32
    assert 0.0 <= s["rgb"].min() and s["rgb"].max() <= 1.0
    assert set(np.unique(s["semseg"])) <= set(range(len(CLASS_NAMES)))
    depth, classes = s["depth"][..., 0], s["semseg"]
    floor = 4.0 + 4.0 * (1.0 - np.arange(h) / (h - 1))  # 4 at the bottom row, 8 at the top
    rows = np.broadcast_to(floor[None, :, None], depth.shape)
    np.testing.assert_allclose(depth[classes == 0], rows[classes == 0], rtol=1e-6)
    assert (depth[classes > 0] < 3.8 + 1e-6).all() and (depth[classes > 0] >= 1.0).all()
    assert (classes > 0).any()  # at least one shape is visible


def test_repeatable_and_seeded():
    a, b, c = paired_scenes(4, 16, seed=5), paired_scenes(4, 16, seed=5), paired_scenes(4, 16, seed=6)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["rgb"], c["rgb"])


@pytest.mark.parametrize("kwargs, message", [
    ({"num_scenes": 0}, "num_scenes"), ({"num_scenes": 2, "image_size": 4}, "at least 8"),
    ({"num_scenes": 2, "seed": -1}, "seed"), ({"num_scenes": 2, "num_shapes": 0}, "num_shapes"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        paired_scenes(**kwargs)
