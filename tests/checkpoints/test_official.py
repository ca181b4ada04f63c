"""Official MAE (facebookresearch/mae) and timm layouts: loading, config inference, bad
input, export, `.keras` round trip and training after loading."""

import argparse
import warnings

import keras
import numpy as np
import pytest
import torch
from transformers import ViTMAEConfig, ViTMAEForPreTraining, ViTMAEModel

from keras_mim.checkpoints import CheckpointError, export_state_dict, load_mae_checkpoint
from keras_mim.models import MaskedAutoencoder, ViTEncoder
from tests.checkpoints.reference import TINY, TOKENS, hf_forward, load_into_hf, mae_sincos, official_state_dict
from tests.conftest import to_numpy
from tests.training import assert_roundtrip, digits, fit_history

# timm 1.0 `VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2,
# num_classes=0)`: state-dict keys and shapes, from timm/models/vision_transformer.py (Block:
# norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2; ls1/ls2 only with init_values).
TIMM_KEYS = {"cls_token": (1, 1, 32), "pos_embed": (1, 17, 32), "patch_embed.proj.weight": (32, 3, 8, 8),
             "patch_embed.proj.bias": (32,), "norm.weight": (32,), "norm.bias": (32,)}
for _i in range(2):
    TIMM_KEYS.update({f"blocks.{_i}.{k}": s for k, s in {
        "norm1.weight": (32,), "norm1.bias": (32,), "attn.qkv.weight": (96, 32), "attn.qkv.bias": (96,),
        "attn.proj.weight": (32, 32), "attn.proj.bias": (32,), "norm2.weight": (32,), "norm2.bias": (32,),
        "mlp.fc1.weight": (128, 32), "mlp.fc1.bias": (128,), "mlp.fc2.weight": (32, 128), "mlp.fc2.bias": (32,),
    }.items()})


def save_official(path, sd, **args):
    """As main_pretrain.py / util/misc.py save_model: {'model': state_dict, 'args': Namespace}."""
    torch.save({"model": {k: torch.from_numpy(v) for k, v in sd.items()}, "epoch": 0,
                "args": argparse.Namespace(**args)}, path)
    return path


def inputs(rng, size=32, batch=2, tokens=TOKENS):
    return rng.random((batch, size, size, 3)).astype("float32"), rng.random((batch, tokens)).astype("float32")


def test_full_checkpoint_matches_independent_forward(tmp_path, rng):
    sd = official_state_dict(seed=0)
    path = save_official(tmp_path / "checkpoint-799.pth", sd, model="mae_vit_tiny_custom", mask_ratio=0.75,
                         norm_pix_loss=True, input_size=32)
    model = load_mae_checkpoint(path, num_heads=2, decoder_num_heads=2)
    assert model.encoder.norm_epsilon == 1e-6 and model.norm_pix_loss and model.mask_ratio == 0.75
    hf = load_into_hf(ViTMAEForPreTraining(ViTMAEConfig(**TINY, layer_norm_eps=1e-6, norm_pix_loss=True)), sd)
    x, noise = inputs(rng)
    ref, out = hf_forward(hf, x, noise), model(x, noise=noise)
    np.testing.assert_allclose(to_numpy(out["pred"]), ref.logits.numpy(), atol=1e-5)
    np.testing.assert_array_equal(to_numpy(out["mask"]), ref.mask.numpy())
    assert float(to_numpy(model.compute_loss(x=x, y_pred=out))) == pytest.approx(float(ref.loss), rel=1e-5)


def test_pretrain_checkpoint_is_an_encoder(tmp_path, rng):
    sd = official_state_dict(seed=1, decoder=False)  # mae_pretrain_vit_*.pth: {'model': encoder}
    torch.save({"model": {k: torch.from_numpy(v) for k, v in sd.items()}}, tmp_path / "mae_pretrain_vit_x.pth")
    encoder = load_mae_checkpoint(tmp_path / "mae_pretrain_vit_x.pth", num_heads=2)
    assert isinstance(encoder, ViTEncoder) and encoder.pos_embed_mode == "sincos"
    hf = load_into_hf(ViTMAEModel(ViTMAEConfig(**TINY, layer_norm_eps=1e-6, mask_ratio=0.0)), sd, root="")
    x = inputs(rng)[0]
    ref = hf_forward(hf, x, np.tile(np.arange(TOKENS, dtype="float32"), (2, 1))).last_hidden_state
    np.testing.assert_allclose(to_numpy(encoder(x)), ref.numpy(), atol=1e-5)
    # into a model with an encoder (a classifier): only the encoder is filled
    classifier = Classifier(ViTEncoder(image_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2))
    assert load_mae_checkpoint(tmp_path / "mae_pretrain_vit_x.pth", classifier) is classifier
    np.testing.assert_allclose(to_numpy(classifier.encoder(x)), ref.numpy(), atol=1e-5)
    with pytest.raises(CheckpointError, match=r"lacks 20 tensor.*It has no MAE decoder.*model\.encoder"):
        load_mae_checkpoint(tmp_path / "mae_pretrain_vit_x.pth", MaskedAutoencoder.from_preset(
            "mae_vit_test", image_size=32, patch_size=8))


class Classifier(keras.Model):
    """Stands in for any downstream model: an encoder plus its own head."""

    def __init__(self, encoder, **kwargs):
        super().__init__(**kwargs)
        self.encoder, self.head = encoder, keras.layers.Dense(10)

    def call(self, images):
        return self.head(self.encoder(images)[:, 0])


def test_config_from_presets_and_args(tmp_path):
    # the shapes of the "mae_vit_test" preset: heads come from the preset table, silently
    sd = official_state_dict(patch=4, dec_width=32, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = load_mae_checkpoint(save_official(tmp_path / "a.pth", sd))
    assert (model.encoder.num_heads, model.decoder.num_heads, model.encoder.image_size) == (2, 2, (16, 16))
    assert model.norm_pix_loss  # official pretraining default
    visual = load_mae_checkpoint(save_official(tmp_path / "mae_visualize_vit_test.pth", sd))
    assert not visual.norm_pix_loss  # the visualisation checkpoints train on raw pixels
    args = load_mae_checkpoint(save_official(tmp_path / "b.pth", sd, mask_ratio=0.5, norm_pix_loss=False))
    assert args.mask_ratio == 0.5 and not args.norm_pix_loss
    # no preset: head width 64 by convention, with a warning; none possible: a clear error
    wide = official_state_dict(width=64, depth=1, decoder=False, seed=3)
    with pytest.warns(UserWarning, match="assuming heads of width 64"):
        assert load_mae_checkpoint(save_official(tmp_path / "c.pth", wide)).num_heads == 1
    odd = official_state_dict(width=48, depth=1, decoder=False, seed=3)
    with pytest.raises(CheckpointError, match="Cannot infer `num_heads`"):
        load_mae_checkpoint(save_official(tmp_path / "d.pth", odd))
    with pytest.raises(TypeError, match="Unknown argument 'heads'"):
        load_mae_checkpoint(tmp_path / "a.pth", heads=2)
    with pytest.raises(TypeError, match="only apply when building"):
        load_mae_checkpoint(tmp_path / "a.pth", model, num_heads=2)


def test_bad_checkpoints_raise_before_assigning(tmp_path):
    model = MaskedAutoencoder.from_preset("mae_vit_test", image_size=32, patch_size=8, decoder_dim=16)
    before = [to_numpy(v) for v in model.weights]
    sd = official_state_dict(seed=4)
    sd["blocks.1.mlp.fc1.weight"] = sd["blocks.1.mlp.fc1.weight"][:64]
    with pytest.raises(CheckpointError, match=r"`blocks\.1\.mlp\.fc1\.weight` \(-> `encoder/block_1/mlp/fc1/kernel`\): "
                                              r"checkpoint shape \(64, 32\), the model needs \(128, 32\)"):
        load_mae_checkpoint(sd, model)
    sd = official_state_dict(seed=4)
    del sd["blocks.1.norm2.bias"]
    with pytest.raises(CheckpointError, match=r"lacks 1 tensor\(s\).*'blocks.1.norm2.bias'"):
        load_mae_checkpoint(sd, model)
    sd = official_state_dict(seed=4)
    sd.update({"head.weight": np.zeros((10, 32), "float32"), "head.bias": np.zeros(10, "float32")})
    with pytest.raises(CheckpointError, match=r"2 tensor\(s\) the model does not use: 'head.bias', 'head.weight'"):
        load_mae_checkpoint(sd, model)
    learned = official_state_dict(seed=4)
    learned["pos_embed"] = learned["pos_embed"] + 0.5
    with pytest.raises(CheckpointError, match=r"`pos_embed` .*not the fixed 2D sin-cos table.*pos_embed='learned'"):
        load_mae_checkpoint(learned, model)
    with pytest.raises(CheckpointError, match=r"Unknown layout in the checkpoint: found keys 'conv1.weight', "
                                              r"'fc.weight'; supported: official MAE"):
        load_mae_checkpoint({"conv1.weight": np.zeros((4, 3, 3, 3)), "fc.weight": np.zeros((2, 4))}, model)
    for old, v in zip(before, model.weights):  # nothing was assigned
        np.testing.assert_array_equal(old, to_numpy(v))
    finetuned = {k: v for k, v in official_state_dict(seed=4, decoder=False).items() if not k.startswith("norm.")}
    finetuned.update({"fc_norm.weight": np.ones(32, "float32"), "fc_norm.bias": np.zeros(32, "float32")})
    with pytest.raises(CheckpointError, match="global pooling"):
        load_mae_checkpoint(finetuned, model.encoder)


def test_extra_tensors_when_allowed(rng):
    sd = official_state_dict(seed=5)
    sd.update({"head.weight": np.zeros((10, 32), "float32"), "head.bias": np.zeros(10, "float32")})
    encoder = ViTEncoder(image_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2)
    load_mae_checkpoint(sd, encoder, allow_extra=True)  # the decoder and the head are skipped
    state = export_state_dict(encoder)
    for key, value in state.items():
        np.testing.assert_array_equal(value, sd[key], err_msg=key)


def test_timm_layout_and_layer_scale(rng):
    encoder = ViTEncoder(image_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2)
    state = export_state_dict(encoder, layout="timm")
    assert {k: v.shape for k, v in state.items()} == TIMM_KEYS
    scaled = {k: rng.standard_normal(s).astype("float32") for k, s in TIMM_KEYS.items()}
    scaled.update({f"blocks.{i}.ls{j}.gamma": rng.standard_normal(32).astype("float32")
                   for i in range(2) for j in (1, 2)})  # timm init_values=...: LayerScale
    model = load_mae_checkpoint(scaled, num_heads=2)
    assert model.layer_scale is not None and model.pos_embed_mode == "learned"
    back = export_state_dict(model)
    assert set(back) == set(scaled)
    for key, value in back.items():
        np.testing.assert_array_equal(value, scaled[key], err_msg=key)


def test_new_image_size(rng):
    sd = official_state_dict(seed=6)
    model = load_mae_checkpoint(sd, num_heads=2, decoder_num_heads=2, image_size=48)  # fine-tune at 48 px
    np.testing.assert_allclose(to_numpy(model.encoder.pos_embed.pos_embed), mae_sincos(32, 6), atol=1e-6)
    np.testing.assert_allclose(to_numpy(model.decoder.pos_embed.pos_embed), mae_sincos(16, 6), atol=1e-6)
    np.testing.assert_array_equal(to_numpy(model.encoder.blocks[0].mlp.fc1.kernel), sd["blocks.0.mlp.fc1.weight"].T)
    learned = dict(sd, pos_embed=rng.standard_normal((1, 17, 32)).astype("float32"))
    encoder = load_mae_checkpoint(learned, num_heads=2, image_size=48, encoder_only=True)
    table = to_numpy(encoder.pos_embed.pos_embed)  # resized bicubically, the cls row kept
    assert table.shape == (1, 37, 32)
    np.testing.assert_array_equal(table[:, 0], learned["pos_embed"][:, 0])
    assert np.ptp(table[0, 1:]) > 0.5


def test_loaded_model_roundtrips_and_trains(tmp_path, rng):
    source = MaskedAutoencoder.from_preset("mae_vit_test", num_channels=1, seed=0)
    model = load_mae_checkpoint(export_state_dict(source), seed=0)
    assert model.encoder.num_channels == 1 and model.decoder.num_heads == 2
    x, noise = digits(4), rng.random((4, 16)).astype("float32")
    np.testing.assert_allclose(to_numpy(model(x, noise=noise)["pred"]), to_numpy(source(x, noise=noise)["pred"]),
                               atol=1e-5)
    assert_roundtrip(model, x, tmp_path, call_kwargs={"noise": noise})
    before = model.encoder.patch_embed.get_weights()[0].copy()
    history = fit_history(model, digits(64), epochs=1)  # trains on from the loaded weights
    assert np.isfinite(history).all() and not np.allclose(model.encoder.patch_embed.get_weights()[0], before)
