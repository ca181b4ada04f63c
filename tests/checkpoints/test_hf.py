"""Hugging Face ViTMAE / ViT weights in and out of keras_mim: outputs must match HF's own
forward (same `noise`) on every backend. Models are tiny and built offline."""

import json

import numpy as np
import pytest
import safetensors.numpy
import torch
import transformers
from transformers import ViTConfig, ViTMAEConfig, ViTMAEForPreTraining, ViTMAEModel, ViTModel

from keras_mim.checkpoints import (
    CheckpointError,
    export_hf_config,
    export_state_dict,
    load_mae_checkpoint,
    save_hf_pretrained,
)
from keras_mim.models import MaskedAutoencoder, ViTEncoder
from tests.checkpoints.reference import (
    TINY,
    TOKENS,
    hf_encoder,
    hf_forward,
    hf_mae,
    hf_vit,
    load_into_hf,
    official_state_dict,
    official_to_hf_by_hand,
)
from tests.conftest import to_numpy

NAMING = "v5" if int(transformers.__version__.split(".")[0]) >= 5 else "legacy"


def inputs(rng, batch=2):
    return rng.random((batch, 32, 32, 3)).astype("float32"), rng.random((batch, TOKENS)).astype("float32")


def assert_mae_matches(model, hf, x, noise):
    ref = hf_forward(hf, x, noise)
    out = model(x, noise=noise)
    np.testing.assert_allclose(to_numpy(out["pred"]), ref.logits.numpy(), atol=1e-5)
    np.testing.assert_array_equal(to_numpy(out["mask"]), ref.mask.numpy())
    np.testing.assert_array_equal(to_numpy(out["ids_restore"]), ref.ids_restore.numpy())
    loss = float(to_numpy(model.compute_loss(x=x, y_pred=out, training=False)))
    assert loss == pytest.approx(float(ref.loss), rel=1e-5)


def assert_encoder_matches(encoder, hf, x, noise=True):
    if noise:  # ViTMAEModel shuffles tokens by the noise even at mask_ratio 0: keep the order
        ref = hf_forward(hf, x, np.tile(np.arange(TOKENS, dtype="float32"), (len(x), 1))).last_hidden_state
    else:
        with torch.no_grad():
            ref = hf(torch.from_numpy(x).permute(0, 3, 1, 2)).last_hidden_state
    np.testing.assert_allclose(to_numpy(encoder(x)), ref.numpy(), atol=1e-5)


@pytest.mark.parametrize("norm_pix", [True, False])
def test_save_pretrained_directory_matches_hf(tmp_path, rng, norm_pix):
    hf = hf_mae(norm_pix_loss=norm_pix)
    hf.save_pretrained(tmp_path)
    model = load_mae_checkpoint(str(tmp_path))
    assert isinstance(model, MaskedAutoencoder)
    assert model.encoder.norm_epsilon == 1e-12 and model.decoder.norm_epsilon == 1e-12
    assert model.mask_ratio == 0.75 and model.norm_pix_loss is norm_pix
    assert model.encoder.pos_embed_mode == "sincos"
    assert_mae_matches(model, hf, *inputs(rng))


def test_torch_saved_state_dict_with_config(tmp_path, rng):
    hf = hf_mae(norm_pix_loss=True, seed=3)
    torch.save(hf.state_dict(), tmp_path / "pytorch_model.bin")
    model = load_mae_checkpoint(tmp_path / "pytorch_model.bin", config=hf.config)
    assert_mae_matches(model, hf, *inputs(rng))
    with pytest.raises(CheckpointError, match="Cannot infer `num_heads`.*pass `num_heads=`"):  # no config
        load_mae_checkpoint(tmp_path / "pytorch_model.bin")
    model = load_mae_checkpoint(tmp_path / "pytorch_model.bin", num_heads=2, decoder_num_heads=2, norm_pix_loss=True)
    assert model.encoder.norm_epsilon == 1e-12  # the HF default for HF-layout weights
    assert_mae_matches(model, hf, *inputs(rng))


def test_published_layout_directory(tmp_path, rng):
    """The names of the files on the hub (transformers 4): `attention.attention.query`,
    `decoder.decoder_layers.N`, written here by hand."""
    sd = official_state_dict(seed=5)
    hf = load_into_hf(ViTMAEForPreTraining(ViTMAEConfig(**TINY, norm_pix_loss=False)), sd)
    safetensors.numpy.save_file(official_to_hf_by_hand(sd, "published"), tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "vit_mae", **TINY, "norm_pix_loss": False}))
    model = load_mae_checkpoint(str(tmp_path))
    assert_mae_matches(model, hf, *inputs(rng))


def test_encoder_matches_vitmae_model(tmp_path, rng):
    hf = hf_encoder()
    hf.save_pretrained(tmp_path)
    encoder = load_mae_checkpoint(str(tmp_path))
    assert isinstance(encoder, ViTEncoder)
    assert_encoder_matches(encoder, hf, inputs(rng)[0])
    full = hf_mae()
    full.save_pretrained(tmp_path / "full")  # the encoder part of a pretraining checkpoint
    encoder = load_mae_checkpoint(str(tmp_path / "full"), encoder_only=True)
    assert isinstance(encoder, ViTEncoder)
    ref_encoder = ViTMAEModel(ViTMAEConfig(**TINY, mask_ratio=0.0)).eval()
    ref_encoder.load_state_dict({k[len("vit."):]: v for k, v in full.state_dict().items() if k.startswith("vit.")})
    assert_encoder_matches(encoder, ref_encoder, inputs(rng)[0])


def test_vit_model_with_learned_table(tmp_path, rng):
    hf = hf_vit(seed=4)
    hf.save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match=r"pooler\.dense\.weight.*allow_extra=True"):
        load_mae_checkpoint(str(tmp_path))
    encoder = load_mae_checkpoint(str(tmp_path), allow_extra=True)
    assert encoder.pos_embed_mode == "learned" and encoder.norm_epsilon == 1e-6
    assert_encoder_matches(encoder, hf, inputs(rng)[0], noise=False)


def randomized_keras(model, seed=0):
    """Random values in every trainable variable (LayerNorm scales around 1)."""
    rng = np.random.default_rng(seed)
    for v in model.trainable_weights:
        shift = 1.0 if v.path.endswith("gamma") else 0.0
        v.assign((shift + 0.2 * rng.standard_normal(v.shape)).astype("float32"))
    return model


def hf_tensors(state):
    return {k: torch.from_numpy(v) for k, v in state.items()}


def test_export_encoder_loads_strictly_into_hf(rng):
    encoder = randomized_keras(ViTEncoder(image_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2))
    x = inputs(rng)[0]
    state = export_state_dict(encoder, layout="hf", hf_naming=NAMING)
    mae_model = ViTMAEModel(ViTMAEConfig(**export_hf_config(encoder))).eval()
    mae_model.load_state_dict(hf_tensors(state), strict=True)
    assert_encoder_matches(encoder, mae_model, x)
    vit = ViTModel(ViTConfig(**export_hf_config(encoder, "vit")), add_pooling_layer=False).eval()
    vit.load_state_dict(hf_tensors(state), strict=True)
    assert_encoder_matches(encoder, vit, x, noise=False)


def test_export_mae_loads_strictly_into_hf(tmp_path, rng):
    model = MaskedAutoencoder(ViTEncoder(image_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2),
                              decoder={"decoder_dim": 16, "depth": 1, "num_heads": 2}, norm_pix_loss=True)
    randomized_keras(model, seed=1)
    hf = ViTMAEForPreTraining(ViTMAEConfig(**export_hf_config(model))).eval()
    hf.load_state_dict(hf_tensors(export_state_dict(model, layout="hf", hf_naming=NAMING)), strict=True)
    x, noise = inputs(rng)
    assert_mae_matches(model, hf, x, noise)
    # a directory any transformers version loads with from_pretrained (published names)
    loaded = ViTMAEForPreTraining.from_pretrained(save_hf_pretrained(model, str(tmp_path / "hf"))).eval()
    assert_mae_matches(model, loaded, x, noise)


def test_hf_config_checks_heads_and_shapes(tmp_path):
    hf = hf_mae()
    hf.save_pretrained(tmp_path)
    wrong_heads = MaskedAutoencoder(ViTEncoder(image_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=4),
                                    decoder={"decoder_dim": 16, "depth": 1, "num_heads": 2})
    with pytest.raises(CheckpointError, match="num_attention_heads=2 but the model's encoder has 4 heads"):
        load_mae_checkpoint(str(tmp_path), wrong_heads)
    wider = MaskedAutoencoder(ViTEncoder(image_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2,
                                         mlp_ratio=2, name="encoder"),
                              decoder={"decoder_dim": 16, "depth": 1, "num_heads": 2}, norm_pix_loss=False)
    before = [to_numpy(v) for v in wider.weights]
    with pytest.warns(UserWarning, match="epsilon 1e-12"), pytest.raises(
        CheckpointError,
        match=r"`vit\.encoder\.layer\.0\.intermediate\.dense\.weight` \(-> `encoder/block_0/mlp/fc1/kernel`\): "
              r"checkpoint shape \(128, 32\), the model needs \(64, 32\)",
    ):
        load_mae_checkpoint(str(tmp_path), wider)
    for old, v in zip(before, wider.weights):  # nothing was assigned
        np.testing.assert_array_equal(old, to_numpy(v))


def test_export_rejects_what_hf_cannot_hold():
    with pytest.raises(ValueError, match="LayerScale"):
        export_state_dict(ViTEncoder(image_size=16, patch_size=4, embed_dim=32, depth=1, num_heads=2,
                                     layer_scale=0.1), layout="hf")
    with pytest.raises(ValueError, match="cls token"):
        export_hf_config(ViTEncoder(image_size=16, patch_size=4, embed_dim=32, depth=1, num_heads=2, cls_token=False))
    with pytest.raises(ValueError, match="`layout` must be one of"):
        export_state_dict(ViTEncoder(image_size=16, patch_size=4, embed_dim=32, depth=1, num_heads=2), layout="jax")


def _non_square_mae():
    return MaskedAutoencoder(ViTEncoder(image_size=(32, 48), patch_size=8, embed_dim=32, depth=1, num_heads=2),
                             decoder={"decoder_dim": 16, "depth": 1, "num_heads": 2})


# Bad inputs of the export, as in tests/test_bad_inputs.py's catalogue: (id, call(directory),
# error, regex the message must match); HF_CASES names them for the catalogue's count.
HF_CASES = ["non-square Hugging Face export"]
HF_BAD_INPUTS = [
    # ViTMAEForPreTraining builds its decoder's sin-cos table for a square grid: from_pretrained
    # cannot load a 32 x 48 MAE
    ("non-square Hugging Face export", lambda directory: save_hf_pretrained(_non_square_mae(), directory),
     ValueError, r"ViTMAEForPreTraining needs square images, got image_size=\(32, 48\); export the encoder"),
]


@pytest.mark.parametrize("call, error, message", [c[1:] for c in HF_BAD_INPUTS], ids=[c[0] for c in HF_BAD_INPUTS])
def test_hf_export_bad_input(call, error, message, tmp_path):
    with pytest.raises(error, match=message):
        call(str(tmp_path / "hf"))
    assert list(tmp_path.iterdir()) == []  # refused before any folder or file was written


def test_hf_cases_name_the_catalogue():
    assert HF_CASES == [c[0] for c in HF_BAD_INPUTS]


def test_non_square_encoder_exports(tmp_path, rng):
    """What the refusal suggests: the encoder alone, which `ViTMAEModel` loads on any grid."""
    encoder = randomized_keras(_non_square_mae().encoder, seed=2)
    loaded = ViTMAEModel.from_pretrained(save_hf_pretrained(encoder, str(tmp_path / "enc"))).eval()
    x, order = rng.random((2, 32, 48, 3)).astype("float32"), np.tile(np.arange(24, dtype="float32"), (2, 1))
    ref = hf_forward(loaded, x, order).last_hidden_state  # noise in grid order: no shuffle
    np.testing.assert_allclose(to_numpy(encoder(x)), ref.numpy(), atol=1e-5)
