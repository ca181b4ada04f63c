"""Tests of keras_mim.viz: panel arrays against numpy references, PNG output, argument checks."""

import numpy as np
import pytest
from keras import ops
from matplotlib.figure import Figure
from matplotlib.image import imread

from keras_mim import MaskedAutoencoder
from keras_mim.viz import PANEL_TITLES, plot_reconstructions, reconstruction_panels

PATCH = 4  # mae_vit_test: 16 x 16 images, 4 x 4 patches, 16 tokens, 4 visible at ratio 0.75


@pytest.fixture(scope="module")
def rgb_model():
    return MaskedAutoencoder.from_preset("mae_vit_test", seed=0)


def _images(batch, channels, seed=0):
    return np.random.default_rng(seed).random((batch, 16, 16, channels)).astype("float32")


def _noise(batch, seed=1):
    return np.random.default_rng(seed).random((batch, 16)).astype("float32")


def _pixel_mask_from_noise(noise, num_visible=4):
    """Independent reference: the `num_visible` lowest scores are visible, rest hidden."""
    token_mask = np.ones_like(noise)
    np.put_along_axis(token_mask, np.argsort(noise, axis=1)[:, :num_visible], 0.0, axis=1)
    grid = token_mask.reshape(-1, 4, 4)
    return np.kron(grid, np.ones((PATCH, PATCH)))[..., None]  # (B, 16, 16, 1)


class StubModel:
    """A model whose reconstruction is known: a constant image; the mask comes from `noise`."""

    def __init__(self, value=7.0):
        self.value = value

    def reconstruct(self, images, noise=None):
        images = np.asarray(images)
        mask = _pixel_mask_from_noise(np.asarray(noise))
        return np.full_like(images, self.value), mask.astype("float32"), None


def _check_panels(panels, images, noise):
    mask = _pixel_mask_from_noise(noise)
    hidden, visible = mask[..., 0] == 1, mask[..., 0] == 0
    np.testing.assert_array_equal(panels["mask"], mask)
    np.testing.assert_array_equal(panels["original"], images)
    gray = 0.5 * (images.min(axis=(1, 2, 3)) + images.max(axis=(1, 2, 3)))
    expected_masked = np.where(mask == 1, gray[:, None, None, None], images)
    np.testing.assert_allclose(panels["masked"], expected_masked, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(panels["masked"][visible], images[visible])
    np.testing.assert_allclose(panels["pasted"][visible], images[visible], rtol=0, atol=1e-6)
    np.testing.assert_allclose(
        panels["pasted"][hidden], panels["reconstruction"][hidden], rtol=0, atol=1e-6
    )
    for key in ("original", "masked", "reconstruction", "pasted"):
        assert panels[key].shape == images.shape and panels[key].dtype == np.float32
        assert np.all(np.isfinite(panels[key]))


def test_panels_match_numpy_reference(rgb_model):
    images, noise = _images(2, 3), _noise(2)
    panels = reconstruction_panels(rgb_model, images, noise=noise)
    _check_panels(panels, images, noise)
    # The reconstruction is in pixel space: the prediction with each patch's own
    # (unbiased) mean and variance put back, unpatchified in (row, col, channel) order.
    pred = ops.convert_to_numpy(rgb_model(images, noise=noise)["pred"]).astype("float64")
    patches = images.reshape(2, 4, PATCH, 4, PATCH, 3).transpose(0, 1, 3, 2, 4, 5).reshape(2, 16, -1)
    mean = patches.mean(-1, keepdims=True)
    var = patches.var(-1, ddof=1, keepdims=True)
    rec = (pred * np.sqrt(var + 1e-6) + mean).reshape(2, 4, 4, PATCH, PATCH, 3)
    rec = rec.transpose(0, 1, 3, 2, 4, 5).reshape(2, 16, 16, 3)
    np.testing.assert_allclose(panels["reconstruction"], rec, rtol=1e-4, atol=1e-4)


def test_panels_with_stub_reconstruction():
    images, noise = _images(2, 2) * 10 - 3, _noise(2)
    panels = reconstruction_panels(StubModel(7.0), images, noise=noise)
    _check_panels(panels, images, noise)
    hidden = _pixel_mask_from_noise(noise)[..., 0] == 1
    np.testing.assert_array_equal(panels["reconstruction"], np.full_like(images, 7.0))
    np.testing.assert_array_equal(panels["pasted"][hidden], np.full((hidden.sum(), 2), 7.0))


def test_plot_writes_png_and_returns_figure(rgb_model, tmp_path):
    path = tmp_path / "nested" / "folder" / "fig.png"
    images, noise = _images(3, 3), _noise(3)
    fig = plot_reconstructions(rgb_model, images, noise=noise, path=path, max_images=2, title="t")
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2 * 4
    assert [ax.get_title() for ax in fig.axes[:4]] == list(PANEL_TITLES)
    # rgb_model trains with norm_pix_loss: the figure says hidden patches borrow their stats
    assert fig.get_suptitle() == "t\nnorm-pix model: hidden patches shown with their true mean/std"
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    png = imread(path)
    width, height = fig.get_size_inches() * fig.dpi
    assert png.shape == (round(height), round(width), 4)
    # Figure dimensions follow the rows drawn: 2 rows here, 1 row next (the same batch
    # size for the real model throughout keeps JAX's eager compilation to one shape).
    fig1 = plot_reconstructions(StubModel(), images, noise=noise, max_images=1)
    assert len(fig1.axes) == 4 and fig1.get_size_inches()[1] < fig.get_size_inches()[1]


def test_rgb_display_rescales_with_original_range(rgb_model):
    images = (_images(2, 3) - 0.5) * 6.0  # standardized-looking values around 0
    noise = _noise(2)
    fig = plot_reconstructions(rgb_model, images, noise=noise)
    panels = reconstruction_panels(rgb_model, images, noise=noise)
    for row in range(2):
        low, high = images[row].min(), images[row].max()
        for col, key in enumerate(("original", "masked", "reconstruction", "pasted")):
            shown = np.asarray(fig.axes[4 * row + col].images[0].get_array())
            expected = np.clip((panels[key][row] - low) / (high - low), 0, 1)
            np.testing.assert_allclose(shown, expected, rtol=0, atol=1e-6)
    hidden = _pixel_mask_from_noise(noise)[0, ..., 0] == 1
    masked_shown = np.asarray(fig.axes[1].images[0].get_array())
    np.testing.assert_allclose(masked_shown[hidden], 0.5, atol=1e-6)  # neutral gray


def test_grayscale_model(tmp_path):
    model = MaskedAutoencoder.from_preset("mae_vit_test", num_channels=1, seed=0)
    images, noise = _images(2, 1) * 255.0, _noise(2)
    panels = reconstruction_panels(model, images, noise=noise)
    _check_panels(panels, images, noise)
    fig = plot_reconstructions(model, images, noise=noise, path=tmp_path / "gray.png")
    assert len(fig.axes) == 8
    for row in range(2):
        for ax in fig.axes[4 * row: 4 * row + 4]:
            image = ax.images[0]
            assert image.get_array().shape == (16, 16)
            assert image.get_cmap().name == "gray"
            np.testing.assert_allclose(image.get_clim(), (images[row].min(), images[row].max()))
    assert imread(tmp_path / "gray.png").ndim == 3


def test_five_channel_model_shows_first_three(tmp_path):
    model = MaskedAutoencoder.from_preset("mae_vit_test", num_channels=5, seed=0)
    images, noise = _images(2, 5), _noise(2)
    panels = reconstruction_panels(model, images, noise=noise)
    _check_panels(panels, images, noise)
    fig = plot_reconstructions(model, images, noise=noise, path=tmp_path / "five.png")
    low, high = images[0].min(), images[0].max()
    shown = np.asarray(fig.axes[0].images[0].get_array())
    np.testing.assert_allclose(shown, (images[0, ..., :3] - low) / (high - low), atol=1e-6)
    assert (tmp_path / "five.png").stat().st_size > 0


def test_two_channels_and_constant_image_with_stub():
    images = np.zeros((1, 16, 16, 2), "float32")
    images[..., 1] = 5.0  # the shown channel 0 is constant; the range comes from all channels
    fig = plot_reconstructions(StubModel(7.0), images, noise=_noise(1))
    image = fig.axes[0].images[0]
    assert image.get_array().shape == (16, 16) and image.get_cmap().name == "gray"
    assert image.get_clim() == (0.0, 5.0)
    constant = np.full((1, 16, 16, 3), 2.0, "float32")
    with np.errstate(all="raise"):
        fig = plot_reconstructions(StubModel(2.0), constant, noise=_noise(1))
    assert np.all(np.isfinite(np.asarray(fig.axes[0].images[0].get_array())))


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"images": np.zeros((16, 16, 3), "float32")}, ValueError, ["images", "(16, 16, 3)", "rank 4"]),
        ({"images": np.zeros((0, 16, 16, 3), "float32")}, ValueError, ["images", "(0, 16, 16, 3)"]),
        ({"images": "not an image"}, TypeError, ["images", "str"]),
        ({"max_images": 0}, ValueError, ["max_images", "0", "positive int"]),
        ({"max_images": 2.0}, ValueError, ["max_images", "2.0"]),
        ({"max_images": True}, ValueError, ["max_images", "True"]),
        ({"noise": np.zeros((3, 16), "float32")}, ValueError, ["noise", "(3, 16)", "batch = 2"]),
        ({"noise": np.zeros((16,), "float32")}, ValueError, ["noise", "(16,)"]),
        ({"path": 3}, TypeError, ["path", "int"]),
        ({"title": 3}, TypeError, ["title", "int"]),
        ({"model": object()}, TypeError, ["model", "reconstruct", "object"]),
    ],
)
def test_bad_arguments(kwargs, error, words):
    args = {"model": StubModel(), "images": _images(2, 3), "noise": _noise(2)}
    args.update(kwargs)
    with pytest.raises(error) as info:
        plot_reconstructions(**args)
    for word in words:
        assert word in str(info.value)


def test_panels_bad_arguments():
    with pytest.raises(TypeError, match="reconstruct"):
        reconstruction_panels(None, _images(1, 3))
    with pytest.raises(ValueError, match="rank 4"):
        reconstruction_panels(StubModel(), np.zeros((2, 16, 16), "float32"))


def test_mask_overlay_matches_numpy():
    from keras_mim.viz import mask_overlay

    image = np.arange(4 * 6 * 1, dtype="float32").reshape(4, 6, 1)
    mask = np.array([0, 1, 0, 1, 0, 0], "float32")  # 2 x 3 grid of 2 px patches
    out = mask_overlay(image, mask, 2, fill=-1.0)
    expected = image.copy()
    expected[0:2, 2:4] = -1.0
    expected[2:4, 0:2] = -1.0
    np.testing.assert_array_equal(out, expected)


def test_mask_gallery_rows_and_video_columns(tmp_path):
    from keras_mim.masking import get_mask_generator
    from keras_mim.viz import plot_mask_gallery

    gens = {"random": get_mask_generator("random", seed=0), "tube": get_mask_generator("tube", seed=0)}
    fig = plot_mask_gallery(np.random.rand(32, 32, 3), gens, patch_size=8, num_samples=3, num_frames=2,
                            path=tmp_path / "g.png")
    titled = [ax.get_title() for ax in fig.axes if ax.get_images()]
    assert len(titled) == 3 + 2  # three random samples, two time slices of the tube
    assert titled[0].startswith("random (75%)") and titled[3].startswith("tube (")
    assert (tmp_path / "g.png").exists()
    with pytest.raises(ValueError, match="divisible by `patch_size`=8"):
        plot_mask_gallery(np.zeros((30, 32, 3)), gens, patch_size=8)


def test_clip_figure_has_four_panel_rows_per_clip_and_frames_in_a_row(tmp_path):
    from keras_mim.models import VideoMAE

    model = VideoMAE.from_preset("videomae_vit_test", seed=0, norm_pix_loss=False)
    clips = np.random.default_rng(0).random((2, 4, 16, 16, 3)).astype("float32")
    noise = np.random.default_rng(1).random((2, model.encoder.num_patches)).astype("float32")
    panels = reconstruction_panels(model, clips, noise=noise)
    assert panels["mask"].shape == (2, 4, 16, 16, 1)
    mask = panels["mask"][..., 0]
    np.testing.assert_array_equal(mask[:, 0], mask[:, 1])  # one tubelet spans frames 0 and 1
    hidden = np.broadcast_to(panels["mask"], clips.shape) > 0.5
    np.testing.assert_array_equal(panels["pasted"][~hidden], clips[~hidden])
    fig = plot_reconstructions(model, clips, noise=noise, path=tmp_path / "clips.png", max_frames=3)
    assert len(fig.axes) == 2 * 4 * 3  # 2 clips x 4 panels, 3 frames (0, 2, 3 of 4) in a row
    assert [ax.get_title() for ax in fig.axes[:3]] == ["frame 0", "frame 2", "frame 3"]
    assert [fig.axes[3 * r].get_ylabel() for r in range(4)] == [t.replace(" + ", "\n+ ") for t in PANEL_TITLES]
    assert (tmp_path / "clips.png").exists()
