import numpy as np
import pytest

from keras_mim.masking import RandomMaskGenerator, SimMIMMaskGenerator
from keras_mim.models import ViTEncoder
from keras_mim.models.simmim import SimMIM
from keras_mim.targets import PixelTarget, Target
from tests.conftest import to_numpy
from tests.training import assert_roundtrip


def official_loss(x, x_rec, mask, p):
    """microsoft/SimMIM models/simmim.py in numpy (channels-last): mask repeated over each
    patch's pixels, L1, sum over hidden pixels / (hidden pixel count + 1e-5) / C."""
    b, h, w, c = x.shape
    m = mask.reshape(b, h // p, w // p).repeat(p, axis=1).repeat(p, axis=2)[..., None]
    loss_recon = np.abs(x.astype(np.float64) - x_rec)
    return (loss_recon * m).sum() / (m.sum() + 1e-5) / c


def scramble(x, tokens, rng, p=4, gw=4):
    y = x.copy()
    for t in tokens:
        r, c = divmod(int(t), gw)
        y[:, p * r : p * r + p, p * c : p * c + p] = rng.random((y.shape[0], p, p, y.shape[-1]))
    return y


def test_loss_matches_official_formula(rng):
    model = SimMIM.from_preset("simmim_vit_test")
    x = rng.random((2, 16, 16, 3)).astype("float32")
    noise = rng.random((2, 16)).astype("float32")
    out = model(x, noise=noise)
    assert tuple(out["pred"].shape) == (2, 16, 16, 3)
    ref = official_loss(x, to_numpy(out["pred"]).astype(np.float64), to_numpy(out["mask"]), 4)
    assert float(model.compute_loss(x=x, y_pred=out)) == pytest.approx(ref, rel=1e-5)


def test_encoder_sees_all_tokens_with_mask_tokens_for_hidden_ones(rng):
    model = SimMIM.from_preset("simmim_vit_test")
    x = rng.random((2, 16, 16, 3)).astype("float32")
    noise = rng.random((2, 16)).astype("float32")
    mask = to_numpy(model(x, noise=noise)["mask"])
    latent = model.forward_encoder(x, mask)
    assert tuple(latent.shape) == (2, 1 + 16, 32)  # cls + all N tokens, none dropped
    # hidden patches' pixels never reach the encoder: they are replaced by the mask token
    hidden = np.intersect1d(np.flatnonzero(mask[0]), np.flatnonzero(mask[1]))
    visible = np.flatnonzero((1 - mask[0]) * (1 - mask[1]))
    assert len(hidden) and len(visible)
    y = scramble(x, hidden, rng)
    np.testing.assert_allclose(to_numpy(model(y, noise=noise)["pred"]), to_numpy(model(x, noise=noise)["pred"]),
                               atol=1e-5)
    # ... while hidden positions still take part: the encoder equals one fed the mask token itself
    enc = model.encoder
    tokens = to_numpy(enc.patch_embed(x))
    w = mask[..., None]
    tokens = tokens * (1 - w) + to_numpy(enc.mask_token) * w
    manual = enc.encode_tokens(enc.pos_embed(tokens))
    np.testing.assert_allclose(to_numpy(latent), to_numpy(manual), atol=1e-5)
    # and a visible patch does change the prediction
    z = scramble(x, visible[:1], rng)
    assert np.abs(to_numpy(model(z, noise=noise)["pred"]) - to_numpy(model(x, noise=noise)["pred"])).max() > 1e-4


def test_default_masks_are_coarse_cells_rounded_up(rng):
    model = SimMIM.from_preset("simmim_vit_test", seed=0)
    assert isinstance(model.mask_generator, SimMIMMaskGenerator) and model.mask_patch_size == 8
    mask = np.concatenate([to_numpy(model(np.zeros((2, 16, 16, 3), "float32"))["mask"]) for _ in range(3)])
    np.testing.assert_array_equal(mask.sum(1), 12)  # ceil(4 cells * 0.6) = 3 cells of 2x2 tokens
    assert len({tuple(m) for m in mask}) > 1  # drawn afresh
    cells = mask.reshape(6, 2, 2, 2, 2)  # (B, cell row, token row, cell col, token col)
    assert (cells.min(axis=(2, 4)) == cells.max(axis=(2, 4))).all()


def encoder(image_size=16, patch_size=4, **kw):
    return ViTEncoder(image_size=image_size, patch_size=patch_size, embed_dim=32, depth=1, num_heads=2,
                      mask_token=True, **kw)


def test_default_mask_patch_size_is_twice_the_patch_or_the_patch():
    assert SimMIM(encoder(64, 16)).mask_patch_size == 32  # the paper's ViT/16 setting
    assert SimMIM(encoder(12, 4)).mask_patch_size == 4  # 8 does not divide 12
    assert SimMIM(encoder(16, 4), mask_patch_size=16, mask_ratio=0.0).mask_patch_size == 16
    assert SimMIM(encoder(), mask_generator="block", mask_ratio=0.4).mask_patch_size is None
    # a preset's cell size configures its "simmim" generator only; another strategy ignores it
    assert SimMIM.from_preset("simmim_vit_test", mask_generator="random").mask_patch_size is None


def test_nothing_hidden_scores_every_pixel(rng):
    model = SimMIM.from_preset("simmim_vit_test", mask_ratio=0.0)
    x = rng.random((2, 16, 16, 3)).astype("float32")
    out = model(x)
    assert to_numpy(out["mask"]).sum() == 0
    ref = official_loss(x, to_numpy(out["pred"]), np.ones((2, 16)), 4)
    assert float(model.compute_loss(x=x, y_pred=out)) == pytest.approx(ref, rel=1e-5)


def test_per_token_target_is_maskfeat_style(rng):
    model = SimMIM.from_preset("simmim_vit_test", target=PixelTarget(normalize=False),
                               mask_generator=RandomMaskGenerator(0.5, seed=0))
    x = rng.random((2, 16, 16, 3)).astype("float32")
    noise = rng.random((2, 16)).astype("float32")
    out = model(x, noise=noise)
    pred, mask = to_numpy(out["pred"]).astype(np.float64), to_numpy(out["mask"])
    assert pred.shape == (2, 16, 48)
    t = x.reshape(2, 4, 4, 4, 4, 3).transpose(0, 1, 3, 2, 4, 5).reshape(2, 16, 48)
    ref = (((pred - t) ** 2).mean(-1) * mask).sum() / mask.sum()
    assert float(model.compute_loss(x=x, y_pred=out)) == pytest.approx(ref, rel=1e-5)
    rec, pixel_mask, _ = model.reconstruct(x, noise=noise)
    np.testing.assert_allclose(to_numpy(rec).reshape(2, 4, 4, 4, 4, 3).transpose(0, 1, 3, 2, 4, 5).reshape(2, 16, 48),
                               pred, atol=1e-6)


def test_maskfeat_preset_predicts_hog_of_hidden_tokens(rng):
    from keras_mim.targets.hog_target import HOGTarget  # registers the preset's target class

    model = SimMIM.from_preset("maskfeat_vit_test")
    assert isinstance(model.target, HOGTarget) and type(model.mask_generator).__name__ == "BlockMaskGenerator"
    x = rng.random((2, 16, 16, 3)).astype("float32")
    out = model(x)
    dim = model.target.output_dim(4, 3)
    assert tuple(out["pred"].shape) == (2, 16, dim)
    pred, mask = to_numpy(out["pred"]).astype(np.float64), to_numpy(out["mask"])
    target = to_numpy(model.target(x, patch_size=4)).astype(np.float64)
    ref = (((pred - target) ** 2).mean(-1) * mask).sum() / mask.sum()
    assert float(model.compute_loss(x=x, y_pred=out)) == pytest.approx(ref, rel=1e-5)
    with pytest.raises(ValueError, match="needs pixel predictions"):
        model.reconstruct(x)


def test_reconstruct_gives_image_and_pixel_mask(rng):
    from keras_mim.viz import reconstruction_panels

    model = SimMIM.from_preset("simmim_vit_test")
    x = rng.random((2, 16, 16, 3)).astype("float32")
    noise = rng.random((2, 16)).astype("float32")
    rec, pixel_mask, mask = model.reconstruct(x, noise=noise)
    np.testing.assert_allclose(to_numpy(rec), to_numpy(model(x, noise=noise)["pred"]), atol=1e-6)
    m = to_numpy(mask).reshape(2, 4, 4)
    np.testing.assert_array_equal(to_numpy(pixel_mask)[..., 0], np.kron(m, np.ones((4, 4))))
    panels = reconstruction_panels(model, x, noise=noise)
    assert panels["reconstruction"].shape == (2, 16, 16, 3)


@pytest.mark.parametrize("target", [None, "pixels"])
def test_keras_roundtrip(rng, tmp_path, target):
    model = SimMIM.from_preset("simmim_vit_test", seed=3, target=target)
    x = rng.random((2, 16, 16, 3)).astype("float32")
    loaded = assert_roundtrip(model, x, tmp_path, call_kwargs={"noise": rng.random((2, 16)).astype("float32")})
    assert loaded.mask_patch_size == model.mask_patch_size and loaded.encoder.use_mask_token


def test_preset_paper_configuration():
    model = SimMIM.from_preset("simmim_vit_base_patch16", image_size=64, depth=1, embed_dim=32, num_heads=2)
    assert model.mask_patch_size == 32 and model.mask_ratio == 0.6 and model.decoder.scale == (16, 16)
    assert model.encoder.use_mask_token and model.encoder.patch_size == (16, 16)


class Incompatible(Target):
    def output_dim(self, patch_size, num_channels):
        raise ValueError("needs 8 px patches")


@pytest.mark.parametrize(
    "build,error,match",
    [
        (lambda: SimMIM(ViTEncoder(16, 4, embed_dim=32, depth=1, num_heads=2)), ValueError,
         r"mask token.*mask_token=True.*SimMIM.from_preset"),
        (lambda: SimMIM("vit"), TypeError, "`encoder` must be an encoder model"),
        (lambda: SimMIM(encoder(), mask_patch_size=6), ValueError, r"`mask_patch_size`=6 must be a multiple"),
        (lambda: SimMIM(encoder(), mask_patch_size=12), ValueError, r"`mask_patch_size`=12 .*divides the image"),
        (lambda: SimMIM(encoder(), mask_generator=SimMIMMaskGenerator(0.5, 16, model_patch_size=8)), ValueError,
         "`model_patch_size`=8 must equal"),
        (lambda: SimMIM(encoder(), target=Incompatible()), ValueError, "needs 8 px patches"),
        (lambda: SimMIM(encoder(), target="sift"), ValueError, "Unknown `target`"),
        (lambda: SimMIM(encoder(), mask_ratio=1.0), ValueError, r"\[0, 1\)"),
        (lambda: SimMIM(encoder(), mask_ratio=0.8), ValueError, "hides all 4 cells"),
    ],
)
def test_bad_arguments(build, error, match):
    with pytest.raises(error, match=match):
        build()
