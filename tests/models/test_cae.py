import keras
import numpy as np
import pytest

from keras_mim import ViTEncoder
from keras_mim.masking import BlockMaskGenerator
from keras_mim.models.cae import CAE
from keras_mim.models.cae_regressor import CAEDecoder, LatentRegressor
from tests.conftest import backend_grads, to_numpy
from tests.layers.test_cross_attention import np_cross, np_gelu, np_layer_norm, randomize
from tests.models.test_mr_mae import scramble_hidden
from tests.training import assert_roundtrip

K = 8  # visible patches of the test preset: 16 tokens, ratio 0.5


def official_patchify(x, p=4):
    n, h, w, c = x.shape
    x = x.reshape(n, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(n, (h // p) * (w // p), p * p * c)


def np_ln(layer, x, eps=1e-6):
    return np_layer_norm(x, to_numpy(layer.gamma), to_numpy(layer.beta), eps)


def np_projection(model, z):
    """The official `encoder_to_regresser` + its norm, in numpy."""
    dense, norm = model.projection.layers
    return np_ln(norm, z @ to_numpy(dense.kernel) + to_numpy(dense.bias))


def take(tokens, ids):
    return np.stack([t[i] for t, i in zip(tokens, ids)])


def test_loss_matches_official_formula(rng):
    # target: per-patch MSE of normalised pixels over hidden patches; alignment: F.mse_loss
    # between the regressor's latents and the encoder's (projected) latents of the hidden
    # patches; loss = target + 2 x alignment (cae_base_800e.sh: --align_loss_weight 2)
    model = CAE.from_preset("cae_vit_test", seed=0)
    x = rng.random((3, 16, 16, 3)).astype("float32")
    noise = rng.random((3, 16)).astype("float32")
    out = model(x, noise=noise)
    hidden = np.argsort(noise, axis=1)[:, K:]  # (B, M), lowest scores kept
    mask = np.zeros((3, 16))
    np.put_along_axis(mask, hidden, 1.0, axis=1)
    np.testing.assert_array_equal(to_numpy(out["mask"]), mask)
    pred = to_numpy(out["pred"]).astype(np.float64)
    assert not pred[mask == 0].any()  # nothing predicted for visible patches
    target = official_patchify(x.astype(np.float64))
    target = (target - target.mean(-1, keepdims=True)) / np.sqrt(target.var(-1, ddof=1, keepdims=True) + 1e-6)
    rec = (((pred - target) ** 2).mean(-1) * mask).sum() / mask.sum()
    z = to_numpy(model.encoder(x, ids_keep=hidden.astype("int32")))[:, 1:].astype(np.float64)  # cls dropped
    latent_target = np_projection(model, z)  # (B, M, 16)
    np.testing.assert_allclose(to_numpy(model.forward_alignment_target(x, out["ids_restore"])), latent_target,
                               rtol=1e-4, atol=1e-5)
    align = ((to_numpy(out["latent_pred"]) - latent_target) ** 2).mean()
    loss = float(to_numpy(model.compute_loss(x=x, y_pred=out, training=False)))
    assert align > 0.01 and loss == pytest.approx(rec + 2.0 * align, rel=1e-4)


def np_regressor(regressor, visible, visible_pos, hidden_pos):
    """The official LatentRegresser in numpy: per RegressorBlock, queries = LN_q(x + pos),
    keys = LN_k([visible, x] + [visible_pos, pos]), values = LN_v([visible, x]); then
    x = LN_2(x + g1 * attn); x = x + g2 * MLP(x); a final LN."""
    x = np.broadcast_to(to_numpy(regressor.mask_token), hidden_pos.shape).astype(np.float64)
    context_pos = np.concatenate([visible_pos, hidden_pos], 1)
    for blk in regressor.blocks:
        context = np.concatenate([visible, x], 1)
        attn = np_cross(blk.cross_attn, np_ln(blk.norm_q, x + hidden_pos), np_ln(blk.norm_k, context + context_pos),
                        np_ln(blk.norm_v, context))
        x = np_ln(blk.norm_mlp, x + to_numpy(blk.ls1.gamma) * attn)
        h = np_gelu(x @ to_numpy(blk.mlp.fc1.kernel) + to_numpy(blk.mlp.fc1.bias))
        x = x + to_numpy(blk.ls2.gamma) * (h @ to_numpy(blk.mlp.fc2.kernel) + to_numpy(blk.mlp.fc2.bias))
    return np_ln(regressor.norm, x)


def test_regressor_matches_official_blocks(rng):
    regressor = LatentRegressor(dim=16, depth=2, num_heads=2, layer_scale=0.1)
    visible, visible_pos = rng.normal(size=(2, 2, 5, 16))
    hidden_pos = rng.normal(size=(2, 3, 16))
    regressor(visible.astype("float32"), visible_pos.astype("float32"), hidden_pos.astype("float32"))
    randomize(regressor, rng)
    ours = regressor(visible.astype("float32"), visible_pos.astype("float32"), hidden_pos.astype("float32"))
    np.testing.assert_allclose(to_numpy(ours), np_regressor(regressor, visible, visible_pos, hidden_pos),
                               rtol=1e-4, atol=1e-4)


def test_regressor_sees_visible_patches_alignment_target_hidden_ones(rng):
    model = CAE.from_preset("cae_vit_test", seed=0)
    x = rng.random((2, 16, 16, 3)).astype("float32")
    noise = rng.random((2, 16)).astype("float32")
    out = model(x, noise=noise)
    y = scramble_hidden(x, to_numpy(out["mask"]), rng)
    out_y = model(y, noise=noise)
    for key in ("latent_pred", "pred"):
        np.testing.assert_allclose(to_numpy(out_y[key]), to_numpy(out[key]), atol=1e-5)
    change = to_numpy(model.forward_alignment_target(y, out["ids_restore"])) - to_numpy(
        model.forward_alignment_target(x, out["ids_restore"]))
    assert np.abs(change).max() > 1e-2


def alignment_loss_fn(model, noise, stop_gradient=True):
    """Images -> the alignment loss, the target with the model's stop-gradient or without."""
    def fn(images):
        out = model(images, noise=noise)
        if stop_gradient:
            target = model.forward_alignment_target(images, out["ids_restore"])
        else:  # the same target with the gradient kept, for contrast
            ids = np.argsort(noise, axis=1)[:, K:].astype("int32")
            target = model.project(model.encoder(images, ids_keep=ids)[:, 1:])
        return model.alignment_loss(out["latent_pred"], target)
    return fn


def test_alignment_target_passes_no_gradient(rng):
    # The hidden patches reach the alignment loss only through its target (the regressor
    # sees visible patches): with stop-gradient they get none, the visible ones do.
    model = CAE.from_preset("cae_vit_test", seed=0)
    x = rng.random((2, 16, 16, 3)).astype("float32")
    noise = rng.random((2, 16)).astype("float32")
    mask = to_numpy(model(x, noise=noise)["mask"])
    pixel_mask = np.kron(mask.reshape(2, 4, 4), np.ones((4, 4)))[..., None] > 0  # (B, 16, 16, 1)
    (grad,) = backend_grads(alignment_loss_fn(model, noise), x)
    hidden_grad = np.abs(np.where(pixel_mask, grad, 0))
    assert hidden_grad.max() == 0 and np.abs(np.where(pixel_mask, 0, grad)).max() > 1e-6
    (kept,) = backend_grads(alignment_loss_fn(model, noise, stop_gradient=False), x)
    assert np.abs(np.where(pixel_mask, kept, 0)).max() > 1e-6  # without it, the target path carries gradient


def encoder_grads(model, loss_fn):
    """Gradients of `loss_fn()` with respect to the encoder's trainable variables, as numpy."""
    variables = model.encoder.trainable_variables
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        def pure(values):
            with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                return loss_fn()

        return [np.asarray(g) for g in jax.grad(pure)([v.value for v in variables])]
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = loss_fn()
        grads = tape.gradient(loss, [v.value for v in variables])
    else:
        import torch

        grads = torch.autograd.grad(loss_fn(), [v.value for v in variables], allow_unused=True)
    return [np.zeros(v.shape) if g is None else to_numpy(g) for g, v in zip(grads, variables)]


def test_encoder_gets_alignment_gradient_only_through_the_visible_path(rng):
    # The gradient of the alignment loss with the model's target equals that with the
    # target frozen as a constant; with the gradient kept through the target it differs.
    model = CAE.from_preset("cae_vit_test", seed=0)
    x = rng.random((2, 16, 16, 3)).astype("float32")
    noise = rng.random((2, 16)).astype("float32")
    ids_restore = model(x, noise=noise)["ids_restore"]
    constant = to_numpy(model.forward_alignment_target(x, ids_restore))

    def with_constant():
        return model.alignment_loss(model(x, noise=noise)["latent_pred"], constant)

    ours = encoder_grads(model, lambda: alignment_loss_fn(model, noise)(x))
    reference = encoder_grads(model, with_constant)
    kept = encoder_grads(model, lambda: alignment_loss_fn(model, noise, stop_gradient=False)(x))
    for a, b in zip(ours, reference):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8)
    assert max(np.abs(a - b).max() for a, b in zip(kept, reference)) > 1e-6


def test_reconstruct_predicts_hidden_patches_and_keeps_visible_ones(rng):
    model = CAE.from_preset("cae_vit_test", norm_pix_loss=False, seed=0)
    x = rng.random((2, 16, 16, 3)).astype("float32")
    noise = rng.random((2, 16)).astype("float32")
    rec, pixel_mask, mask = (to_numpy(t) for t in model.reconstruct(x, noise=noise))
    out = model(x, noise=noise)
    np.testing.assert_array_equal(mask, to_numpy(out["mask"]))
    visible = pixel_mask[..., 0] == 0
    np.testing.assert_allclose(rec[visible], x[visible])
    hidden_pred = official_patchify(rec)[mask == 1]
    np.testing.assert_allclose(hidden_pred, to_numpy(out["pred"])[mask == 1], atol=1e-6)


def small_encoder(**kw):
    return ViTEncoder(**{**dict(image_size=16, patch_size=4, embed_dim=32, depth=1, num_heads=2), **kw})


def test_block_mask_arguments_and_round_trip(rng, tmp_path):
    # a dict of BlockMaskGenerator arguments (the ViT-B preset's min 16 patches per block)
    model = CAE(small_encoder(), decoder={"decoder_dim": 32, "depth": 1, "num_heads": 2},
                regressor={"depth": 1}, mask_generator={"min_num_patches": 8, "min_aspect": 1.0},
                mask_ratio=0.5, alignment_weight=1.5, seed=3)
    gen = model.mask_generator
    assert isinstance(gen, BlockMaskGenerator) and gen.min_num_patches == 8 and gen.mask_ratio == 0.5
    assert model.projection is None and model.regressor.dim == 32 and model.regressor.num_heads == 2
    model.build()
    model.build()  # a second build (as `keras-mim pretrain` does after `from_preset`) adds nothing
    x = rng.random((2, 16, 16, 3)).astype("float32")
    loaded = assert_roundtrip(model, x, tmp_path, call_kwargs={"noise": rng.random((2, 16)).astype("float32")})
    assert loaded.alignment_weight == 1.5 and loaded.mask_generator.min_num_patches == 8


@pytest.mark.parametrize("kw,error,match", [
    (dict(mask_ratio=0.0), ValueError, "hides none of the 16 patches"),
    (dict(mask_ratio=1.0), ValueError, "mask_ratio"),
    (dict(regressor=LatentRegressor(dim=24, num_heads=2, depth=1)), ValueError,
     r"regressor's width `dim`=24 must equal the decoder's `decoder_dim`=16"),
    (dict(regressor={"dim": 32}), ValueError, "`dim`=32 must equal"),
    (dict(decoder=CAEDecoder(output_dim=12, decoder_dim=16, num_heads=2)), ValueError,
     "predicts 12 values per patch, but the target has 48"),
    (dict(decoder=keras.layers.Dense(4)), TypeError, "`decoder` must be a CAEDecoder"),
    (dict(alignment_weight=-1.0), ValueError, "`alignment_weight` must be a float >= 0, got -1.0"),
    (dict(decoder={"decoder_dim": 18, "num_heads": 4}), ValueError, "`num_heads`=4 must divide `decoder_dim`=18"),
    (dict(regressor={"layer_scale": -0.1}), ValueError, "`layer_scale` must be None or a float > 0"),
])
def test_bad_arguments(kw, error, match):
    encoder = small_encoder()
    defaults = dict(decoder={"decoder_dim": 16, "depth": 1, "num_heads": 2}, regressor={"depth": 1})
    with pytest.raises(error, match=match):
        CAE(encoder, **{**defaults, **kw})
