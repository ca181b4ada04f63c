import keras
import numpy as np
import pytest

from keras_mim.masking import RunningCellMaskGenerator
from keras_mim.models import ViTEncoder, VideoMAE
from tests.conftest import to_numpy
from tests.training import assert_roundtrip, digits


def clips(rng, b=2, t=4, size=16, c=3):
    return rng.random((b, t, size, size, c)).astype("float32")


def moving_digits(n=128, frames=4):
    """Real digits sliding one pixel right and down per frame: `(n, frames, 16, 16, 3)`."""
    x = digits(n, channels=3)
    return np.stack([np.roll(x, (f, f), axis=(1, 2)) for f in range(frames)], axis=1)


def numpy_videomae_target(x, t, p):
    """The official VideoMAE target in numpy: `b (t p0) (h p1) (w p2) c -> b (t h w) (p0 p1 p2) c`,
    normalised per token and channel with the unbiased std (+1e-6 on the std)."""
    b, frames, h, w, c = x.shape
    y = x.reshape(b, frames // t, t, h // p, p, w // p, p, c).transpose(0, 1, 3, 5, 2, 4, 6, 7)
    y = y.reshape(b, -1, t * p * p, c)
    y = (y - y.mean(axis=2, keepdims=True)) / (y.std(axis=2, ddof=1, keepdims=True) + 1e-6)
    return y.reshape(b, y.shape[1], -1)


def test_tube_mask_is_constant_in_time(rng):
    model = VideoMAE.from_preset("videomae_vit_test", seed=0)
    out = model(clips(rng, b=8))
    mask = to_numpy(out["mask"]).reshape(8, 2, 16)  # (B, T/t, gh * gw)
    assert (mask[:, 0] == mask[:, 1]).all()
    assert (mask.sum(axis=(1, 2)) == 2 * 12).all()  # int(0.75 * 16) spatial positions, both slices
    assert model.mask_ratio == 0.75 and VideoMAE(model.encoder).mask_ratio == 0.9  # class default


def test_loss_is_videomae_per_channel_normalised_mse_on_hidden_tubelets(rng):
    model = VideoMAE.from_preset("videomae_vit_test", seed=0)
    x = clips(rng)
    out = model(x)
    target = numpy_videomae_target(x.astype("float64"), 2, 4)
    np.testing.assert_allclose(to_numpy(model.target(x, patch_size=(2, 4, 4))), target, rtol=1e-4, atol=1e-4)
    mask = to_numpy(out["mask"])
    per_token = ((to_numpy(out["pred"]) - target) ** 2).mean(-1)
    expected = (per_token * mask).sum() / mask.sum()
    np.testing.assert_allclose(float(model.compute_loss(x=x, y_pred=out)), expected, rtol=1e-4)
    assert "decode_mask" not in out  # no dual masking: every hidden token is decoded and scored


def test_dual_masking_decodes_hidden_tokens_kept_by_the_running_cell(rng):
    model = VideoMAE.from_preset("videomaev2_vit_test", seed=0)  # 8 frames -> T/t = 4: exact counts
    n, k = model.encoder.num_patches, model.mask_generator.num_visible(model.encoder.grid_shape)
    assert (n, k, model.num_decoded) == (64, 16, 24)
    x = clips(rng, b=4, t=8)
    cells = to_numpy(RunningCellMaskGenerator(0.5, seed=3)(x, grid_shape=(4, 4, 4))["mask"])
    seen = []
    attn = model.decoder.blocks[0].attn
    original = attn.call
    attn.call = lambda tokens, training=None: seen.append(tokens.shape[1]) or original(tokens, training=training)
    try:
        out = model(x, decoder_noise=keras.ops.convert_to_tensor(cells))
    finally:
        attn.call = original
    assert seen == [k + 24]  # the decoder blocks run on K visible + M decoded tokens, not N
    mask, decode = to_numpy(out["mask"]), to_numpy(out["decode_mask"])
    np.testing.assert_array_equal(decode, mask * (1 - cells))  # hidden AND kept by the decoder mask
    assert (decode.sum(1) == 24).all()
    pred = to_numpy(out["pred"])
    decoded = (1 - mask) + decode  # visible or decoded positions
    assert np.abs(pred[decoded == 0]).max() == 0  # nothing predicted where the decoder never ran
    assert (np.abs(pred[decoded == 1]).sum(-1) > 0).all()


def test_dual_masking_loss_only_on_decoded_hidden_tokens(rng):
    model = VideoMAE.from_preset("videomaev2_vit_test", seed=0)
    x = clips(rng, b=2, t=8)
    out = model(x)
    decode = to_numpy(out["decode_mask"])
    per_token = ((to_numpy(out["pred"]) - numpy_videomae_target(x.astype("float64"), 2, 4)) ** 2).mean(-1)
    expected = (per_token * decode).sum() / decode.sum()
    np.testing.assert_allclose(float(model.compute_loss(x=x, y_pred=out)), expected, rtol=1e-4)
    # drawn masks keep the static count in every sample, also when it is not exact per cell
    other = VideoMAE.from_preset("videomaev2_vit_test", num_frames=4, seed=1)
    counts = to_numpy(other(clips(rng, b=6))["decode_mask"]).sum(1)
    assert (counts == other.num_decoded).all() and other.num_decoded == 12


@pytest.mark.parametrize("preset,frames", [("videomae_vit_test", 4), ("videomaev2_vit_test", 8)])
def test_roundtrip(preset, frames, rng, tmp_path):
    model = VideoMAE.from_preset(preset, seed=0)
    x = clips(rng, t=frames)
    noise = keras.ops.convert_to_tensor(rng.random((2, model.encoder.num_patches)).astype("float32"))
    kwargs = {"noise": noise}
    if model.decoder_mask_generator is not None:
        kwargs["decoder_noise"] = keras.ops.convert_to_tensor(rng.random((2, 64)).astype("float32"))
    loaded = assert_roundtrip(model, x, tmp_path, call_kwargs=kwargs)
    assert loaded.encoder.num_frames == frames and loaded.encoder.pos_embed.mode == "sincos_1d"


def test_paper_preset_sizes():
    model = VideoMAE.from_preset("videomaev2_vit_base_patch16", depth=1, decoder_depth=1)
    enc = model.encoder
    assert enc.grid_shape == (8, 14, 14) and enc.patch_shape == (2, 16, 16) and enc.num_prefix_tokens == 0
    assert model.mask_generator.num_visible(enc.grid_shape) == 8 * 20  # tube 0.9: 20 of 196 per slice
    assert model.num_decoded == 8 * 176 // 2  # running cells keep half of the hidden tubes
    assert model.decoder.decoder_dim == 384 and model.decoder.output_dim == 2 * 16 * 16 * 3


def test_bad_input():
    image_encoder = ViTEncoder(image_size=16, patch_size=4, embed_dim=32, depth=1, num_heads=2)
    with pytest.raises(ValueError, match="VideoMAE pretrains on clips"):
        VideoMAE(image_encoder)
    with pytest.raises(ValueError, match="T=6 frames, which is not divisible by the tubelet size 4"):
        VideoMAE.from_preset("videomae_vit_test", num_frames=6, tubelet_size=4)
    with pytest.raises(ValueError, match="leaves no visible token"):
        VideoMAE.from_preset("videomae_vit_test", mask_generator="random", mask_ratio=0.99)
    with pytest.raises(ValueError, match="divisible by 16"):
        VideoMAE.from_preset("videomae_vit_test", embed_dim=40, pos_embed="sincos")
    model = VideoMAE.from_preset("videomae_vit_test")
    model.compile(optimizer="adam")
    with pytest.raises(ValueError, match="clips of 6 frames but the encoder expects `num_frames`=4"):
        model.fit(np.zeros((2, 6, 16, 16, 3), "float32"), verbose=0)
    with pytest.raises(ValueError, match=r"clips \(B, T, H, W, C\), got rank 4"):
        model.fit(np.zeros((2, 16, 16, 3), "float32"), verbose=0)
    with pytest.raises(ValueError, match="`decoder_noise` must have shape"):
        VideoMAE.from_preset("videomaev2_vit_test")(np.zeros((1, 8, 16, 16, 3), "float32"),
                                                    decoder_noise=np.zeros((1, 5), "float32"))
