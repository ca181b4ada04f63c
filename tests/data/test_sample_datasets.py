import numpy as np
import pytest

from keras_mim.data import DEFAULT_IMAGE_SIZES, list_sample_datasets, load_sample_images
from keras_mim.data.sample_datasets import NUM_DIGITS


def test_digits_default_shape_and_range():
    x = load_sample_images("digits")
    assert x.shape == (NUM_DIGITS, 16, 16, 1)
    assert x.dtype == np.float32
    assert x.min() == 0.0 and x.max() == 1.0
    assert np.isfinite(x).all()


@pytest.mark.parametrize("size, expected", [(8, (8, 8)), (32, (32, 32)), ((16, 24), (16, 24)), (4, (4, 4))])
def test_digits_sizes(size, expected):
    x = load_sample_images("digits", image_size=size, num_images=5)
    assert x.shape == (5,) + expected + (1,)
    assert 0.0 <= x.min() and x.max() <= 1.0


def test_digits_native_size_is_the_original_data():
    from sklearn.datasets import load_digits

    original = load_digits().images.astype("float32") / 16.0
    x = load_sample_images("digits", image_size=8)
    # Same images, in another (seeded) order.
    np.testing.assert_allclose(np.sort(x.reshape(len(x), -1).sum(1)), np.sort(original.reshape(len(x), -1).sum(1)),
                               rtol=1e-5)


def _bilinear_reference(image, n_out):
    """Upscaling by the formula: output pixel i samples the input at (i + 0.5) * n_in / n_out - 0.5
    (half-pixel centres), clamped to the edge, linearly between the two nearest pixels."""
    n_in = image.shape[0]
    x = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    lo = np.floor(x).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    w = x - lo
    rows = image[lo] * (1 - w)[:, None] + image[hi] * w[:, None]
    return rows[:, lo] * (1 - w)[None] + rows[:, hi] * w[None]


@pytest.mark.parametrize("size", [16, 24])
def test_digits_upscaling_is_bilinear(size):
    from sklearn.datasets import load_digits

    original = load_digits().images[:3].astype("float64") / 16.0
    native = load_sample_images("digits", image_size=8, seed=0)
    up = load_sample_images("digits", image_size=size, seed=0)
    # Locate the first three originals in the seeded order, then compare their upscaled versions.
    for image in original:
        index = int(np.argmin(np.abs(native[..., 0] - image).sum(axis=(1, 2))))
        np.testing.assert_allclose(up[index, ..., 0], _bilinear_reference(image, size), atol=1e-6)


@pytest.mark.parametrize("size", [2, 3])
def test_digits_downscaling_keeps_the_mean_brightness(size):
    native = load_sample_images("digits", image_size=8, num_images=100, seed=0)
    small = load_sample_images("digits", image_size=size, num_images=100, seed=0)
    # Anti-aliased: each image's mean survives shrinking. Plain bilinear would read only the
    # pixels next to the sample points (off by up to 0.25 at 2 px, 0.11 at 3 px).
    np.testing.assert_allclose(small.mean(axis=(1, 2, 3)), native.mean(axis=(1, 2, 3)), atol=0.03)


def test_digits_deterministic_and_seeded():
    a = load_sample_images("digits", num_images=50, seed=3)
    b = load_sample_images("digits", num_images=50, seed=3)
    c = load_sample_images("digits", num_images=50, seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # A prefix of the full seeded order.
    np.testing.assert_array_equal(a, load_sample_images("digits", seed=3)[:50])


def test_digits_prefix_covers_every_class():
    from sklearn.datasets import load_digits

    data = load_digits()
    x = load_sample_images("digits", image_size=8, num_images=20, seed=0)
    flat = (data.images.astype("float32") / 16.0).reshape(len(data.images), -1)
    labels = []
    for image in x.reshape(len(x), -1):
        labels.append(int(data.target[np.argmin(np.abs(flat - image).sum(axis=1))]))
    assert sorted(labels) == sorted(list(range(10)) * 2)


def test_photos_default_shape_and_range():
    x = load_sample_images("photos", num_images=64)
    assert x.shape == (64, DEFAULT_IMAGE_SIZES["photos"], DEFAULT_IMAGE_SIZES["photos"], 3)
    assert x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert x.std() > 0.05  # real image content, not constant
    # Crops differ from one another.
    assert len({image.tobytes() for image in x}) == len(x)


def test_photos_default_count():
    assert load_sample_images("photos", image_size=16).shape == (4096, 16, 16, 3)


def test_photos_deterministic_and_seeded():
    a = load_sample_images("photos", image_size=16, num_images=20, seed=1)
    b = load_sample_images("photos", image_size=16, num_images=20, seed=1)
    c = load_sample_images("photos", image_size=16, num_images=20, seed=2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_photos_non_square():
    x = load_sample_images("photos", image_size=(16, 32), num_images=3)
    assert x.shape == (3, 16, 32, 3)


def test_returned_arrays_are_independent_copies():
    a = load_sample_images("digits", num_images=4)
    a[:] = -1.0
    assert load_sample_images("digits", num_images=4).min() == 0.0


def test_list_sample_datasets():
    assert sorted(list_sample_datasets()) == ["digits", "photos"]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"name": "mnist"}, "Unknown sample dataset `name`='mnist'"),
        ({"name": "digits", "image_size": 0}, "image_size"),
        ({"name": "digits", "image_size": (16,)}, "image_size"),
        ({"name": "digits", "image_size": 16.0}, "image_size"),
        ({"name": "digits", "image_size": 1}, "at least 2 pixels"),
        ({"name": "photos", "image_size": 1000}, "at most 512"),
        ({"name": "digits", "num_images": 0}, "num_images"),
        ({"name": "digits", "num_images": 2.5}, "num_images"),
        ({"name": "digits", "num_images": NUM_DIGITS + 1}, "more than the 1797"),
        ({"name": "digits", "seed": -1}, "seed"),
        ({"name": "photos", "seed": "a"}, "seed"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_sample_images(**kwargs)


def test_labelled_digits_split_is_fixed_stratified_and_disjoint():
    from sklearn.datasets import load_digits

    from keras_mim.data import load_labelled_digits
    from keras_mim.data.sample_datasets import NUM_TEST_DIGITS, NUM_TRAIN_DIGITS

    raw = load_digits()
    xs = {}
    for split in ("train", "test"):
        x, y = load_labelled_digits(split, image_size=8)
        xs[split] = x
        # labels belong to their images: native 8 px images are the raw digits / 16
        flat = raw.images.reshape(len(raw.images), -1) / 16.0
        idx = [int(np.flatnonzero((flat == img.reshape(-1)).all(1))[0]) for img in x[:20]]
        np.testing.assert_array_equal(raw.target[idx], y[:20])
        counts = np.bincount(y, minlength=10)
        expected = np.round(np.bincount(raw.target) * (0.2 if split == "test" else 0.8))
        assert np.abs(counts - expected).max() <= 1
    assert len(xs["train"]) == NUM_TRAIN_DIGITS and len(xs["test"]) == NUM_TEST_DIGITS
    train_set = {img.tobytes() for img in xs["train"]}
    dupes_in_raw = len(raw.images) - len({img.tobytes() for img in raw.images})
    assert sum(img.tobytes() in train_set for img in xs["test"]) <= dupes_in_raw
    # another seed reorders, never moves images between splits
    other, _ = load_labelled_digits("test", image_size=8, seed=5)
    assert {i.tobytes() for i in other} == {i.tobytes() for i in xs["test"]}
