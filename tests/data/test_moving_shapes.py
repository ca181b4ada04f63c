import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_mim.data import moving_shapes
from keras_mim.data.moving_shapes import BACKGROUND_VALUES, SHAPE_VALUES, SIZE_RANGE, SPEED_RANGE


def shape_mask(clips):
    """Shape pixels: every channel brighter than any background value can be."""
    return clips.min(axis=-1) > 0.5 * (BACKGROUND_VALUES[1] + SHAPE_VALUES[0])


def test_shape_dtype_and_range():
    x = moving_shapes(6, num_frames=5, image_size=(20, 28), num_channels=3, seed=1)
    assert x.shape == (6, 5, 20, 28, 3)
    assert x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    mask = shape_mask(x)
    # Background and shape values are in their documented ranges.
    assert BACKGROUND_VALUES[0] <= x[~mask].min() and x[~mask].max() <= BACKGROUND_VALUES[1]
    assert x[mask].min() >= SHAPE_VALUES[0]


@pytest.mark.parametrize("channels", [1, 3, 5])
def test_channels(channels):
    x = moving_shapes(3, num_frames=4, image_size=16, num_channels=channels)
    assert x.shape == (3, 4, 16, 16, channels)
    assert shape_mask(x).any()


def test_deterministic_and_seeded():
    a = moving_shapes(8, seed=5)
    np.testing.assert_array_equal(a, moving_shapes(8, seed=5))
    assert not np.array_equal(a, moving_shapes(8, seed=6))
    # Clips of one call differ from one another.
    assert len({clip.tobytes() for clip in a}) == len(a)


def test_single_shape_moves_by_at_most_its_speed_and_stays_in_frame():
    size, frames = 32, 24
    x = moving_shapes(40, num_frames=frames, image_size=size, num_shapes=1, seed=2)
    mask = shape_mask(x)  # (N, T, H, W)
    counts = mask.sum(axis=(2, 3))
    assert (counts > 0).all(), "a shape left the frame"
    # The whole shape stays inside: its pixel count barely changes (rasterisation only).
    assert (counts.min(axis=1) >= 0.6 * counts.max(axis=1)).all()
    rows, cols = np.mgrid[:size, :size]
    cy = (mask * rows).sum(axis=(2, 3)) / counts
    cx = (mask * cols).sum(axis=(2, 3)) / counts
    step = np.hypot(np.diff(cy, axis=1), np.diff(cx, axis=1))
    max_speed = SPEED_RANGE[1] * size
    # Rasterisation moves a centroid by at most about a pixel on top of the true motion.
    assert step.max() <= max_speed + 1.0
    # ... and the shapes do move: consecutive frames differ.
    assert (np.abs(np.diff(x, axis=1)).max(axis=(2, 3, 4)) > 0).mean() > 0.95
    assert np.median(step) > 0.5 * SPEED_RANGE[0] * size


def test_shapes_bounce_off_borders():
    # Long clips: every shape travels further than the frame is wide, so it must turn back
    # (at least once along its main axis of motion) and still never leave the frame.
    size = 24
    x = moving_shapes(20, num_frames=64, image_size=size, num_shapes=1, seed=3)
    mask = shape_mask(x)
    counts = mask.sum(axis=(2, 3))
    assert (counts > 0).all()
    rows, cols = np.mgrid[:size, :size]
    centre = np.stack([(mask * rows).sum(axis=(2, 3)), (mask * cols).sum(axis=(2, 3))], -1) / counts[..., None]
    steps = np.diff(centre, axis=1)  # (N, T - 1, 2)
    main_axis = np.abs(steps).sum(axis=1).argmax(axis=-1)
    along = np.take_along_axis(steps, main_axis[:, None, None], axis=2)[..., 0]
    assert ((along > 0.2).any(axis=1) & (along < -0.2).any(axis=1)).all()


def test_shape_sizes_match_the_size_range():
    size = 40
    x = moving_shapes(60, num_frames=1, image_size=size, num_shapes=1, seed=4)
    area = shape_mask(x)[:, 0].sum(axis=(1, 2))
    r_min, r_max = SIZE_RANGE[0] * size, SIZE_RANGE[1] * size
    # A triangle covers ~ 2 r^2, a disc pi r^2, a square (2r + 1)^2 pixels.
    assert area.min() >= 2 * r_min ** 2 * 0.7
    assert area.max() <= (2 * r_max + 1) ** 2


@pytest.mark.one_backend  # property test, many shapes: one CI pass; fixed cases run on every backend
@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 3), t=st.integers(1, 6), h=st.integers(4, 20), w=st.integers(4, 20),
    c=st.integers(1, 4), shapes=st.integers(1, 4), seed=st.integers(0, 2 ** 31),
)
def test_property_shapes_and_range(n, t, h, w, c, shapes, seed):
    x = moving_shapes(n, num_frames=t, image_size=(h, w), num_channels=c, num_shapes=shapes, seed=seed)
    assert x.shape == (n, t, h, w, c) and x.dtype == np.float32
    assert np.isfinite(x).all() and 0.0 <= x.min() and x.max() <= 1.0
    assert shape_mask(x).any(axis=(2, 3)).all()  # every frame shows a shape


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_clips": 0}, "num_clips"),
        ({"num_clips": 2.0}, "num_clips"),
        ({"num_clips": 1, "num_frames": 0}, "num_frames"),
        ({"num_clips": 1, "image_size": 3}, "at least 4"),
        ({"num_clips": 1, "image_size": (8, 8, 8)}, "image_size"),
        ({"num_clips": 1, "num_channels": 0}, "num_channels"),
        ({"num_clips": 1, "num_shapes": -1}, "num_shapes"),
        ({"num_clips": 1, "seed": -2}, "seed"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        moving_shapes(**kwargs)
