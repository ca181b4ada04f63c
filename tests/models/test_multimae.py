"""MultiMAE: each modality's loss against numpy (norm-pix MSE on RGB, L1 on robustly
standardised depth, cross-entropy on class maps, hidden tokens only, per sample), hidden
tokens never reach the encoder, and clear errors for missing or unknown modalities. The
generic suite (tests/models/test_method_suite.py) trains it, round-trips it and feeds it
bad input on every backend."""

import numpy as np
import pytest

from keras_mim import MultiMAE
from keras_mim.data.paired_scenes import paired_scenes
from tests.conftest import to_numpy


def patchify_np(x, p):
    b, h, w, c = x.shape
    x = x.reshape(b, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (h // p) * (w // p), p * p * c)


def masked_sample_mean(per_token, mask):
    hidden = mask.sum(1)
    per_sample = (per_token * mask).sum(1) / np.maximum(hidden, 1)
    return per_sample[hidden > 0].mean()


def numpy_losses(x, pred, mask, p=4, classes=4):
    """The official criteria in numpy on the model's own predictions and mask."""
    n = pred["rgb"].shape[1]
    masks = {name: mask[:, i * n : (i + 1) * n] for i, name in enumerate(("rgb", "depth", "semseg"))}
    t = patchify_np(x["rgb"].astype("float64"), p)
    t = (t - t.mean(-1, keepdims=True)) / np.sqrt(t.var(-1, ddof=1, keepdims=True) + 1e-6)
    rgb = masked_sample_mean(((pred["rgb"] - t) ** 2).mean(-1), masks["rgb"])
    d = x["depth"].astype("float64").reshape(len(x["depth"]), -1)
    kept = np.sort(d, axis=1)[:, int(0.1 * d.shape[1]) : int(0.9 * d.shape[1])]
    d = (d - kept.mean(1, keepdims=True)) / np.sqrt(kept.var(1, ddof=1, keepdims=True) + 1e-6)
    depth_t = patchify_np(d.reshape(x["depth"].shape), p)
    depth = masked_sample_mean(np.abs(pred["depth"] - depth_t).mean(-1), masks["depth"])
    labels = patchify_np(x["semseg"][..., None], p)  # (B, N, p p)
    logits = pred["semseg"].reshape(labels.shape + (classes,)).astype("float64")
    log_p = logits - logits.max(-1, keepdims=True)
    log_p = log_p - np.log(np.exp(log_p).sum(-1, keepdims=True))
    ce = -np.take_along_axis(log_p, labels[..., None], axis=-1)[..., 0].mean(-1)
    semseg = masked_sample_mean(ce, masks["semseg"])
    return {"rgb": rgb, "depth": depth, "semseg": semseg, "total": rgb + depth + semseg}


def test_losses_match_numpy_on_hidden_tokens_only():
    model = MultiMAE.from_preset("multimae_vit_test", seed=0)
    x = paired_scenes(4, image_size=16, seed=1)
    noise = np.random.default_rng(0).random((4, 48)).astype("float32")
    noise[0, :16] += 2.0  # sample 0: every RGB token hidden ...
    noise[1, 16:32] -= 2.0  # ... sample 1: many depth tokens visible
    out = model(x, noise=noise, training=False)
    got = {k: float(v) for k, v in model.forward_loss(model.prepare_inputs(x), out).items()}
    pred = {k: to_numpy(v).astype("float64") for k, v in out["pred"].items()}
    expected = numpy_losses(x, pred, to_numpy(out["mask"]))
    for key in expected:
        assert got[key] == pytest.approx(expected[key], rel=1e-4), key
    assert float(model.compute_loss(x=x, y_pred=out)) == pytest.approx(expected["total"], rel=1e-4)


def test_hidden_tokens_never_reach_the_encoder():
    model = MultiMAE.from_preset("multimae_vit_test", seed=0)
    x = paired_scenes(2, image_size=16, seed=2)
    noise = np.tile(np.linspace(0, 1, 48, dtype="float32"), (2, 1))  # visible: the lowest 12 scores
    inputs = model.prepare_inputs(x)
    latent, masking = model.forward_encoder(inputs, noise=noise)
    hidden = np.flatnonzero(to_numpy(masking["mask"])[0])
    spoiled = {k: np.array(v, copy=True) for k, v in x.items()}
    for token in hidden:  # overwrite every hidden token's pixels / classes in its own modality
        m, t = divmod(int(token), 16)
        r, c = divmod(t, 4)
        name = ("rgb", "depth", "semseg")[m]
        spoiled[name][:, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4] = 3 if name == "semseg" else 0.5
    spoiled["depth"] = x["depth"]  # depth is standardised per image: its hidden pixels move the statistics
    again, _ = model.forward_encoder(model.prepare_inputs(spoiled), noise=noise)
    np.testing.assert_allclose(to_numpy(latent), to_numpy(again), atol=1e-5)


@pytest.mark.one_backend
def test_missing_or_unknown_modalities_are_refused_clearly():
    model = MultiMAE.from_preset("multimae_vit_test", seed=0)
    model.compile(optimizer="adam")
    x = paired_scenes(4, image_size=16, seed=0)
    with pytest.raises(ValueError, match=r"lacks the modalities \['depth'\]"):
        model.fit({"rgb": x["rgb"], "semseg": x["semseg"]}, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="must be a dict of the modalities"):
        model.fit(x["rgb"], epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"Unknown modalities \['normals'\]"):
        model.encoder({"rgb": x["rgb"], "normals": x["rgb"]})
    with pytest.raises(ValueError, match=r"x\['semseg'\].*int class map"):
        model.fit({**x, "semseg": x["semseg"].astype("float32")}, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"x\['depth'\]. has 3 channels"):
        model.fit({**x, "depth": x["rgb"]}, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"`losses\['semseg'\]` must be one of \['cross_entropy'\]"):
        MultiMAE(model.encoder, losses={"semseg": "mse"})
    with pytest.raises(ValueError, match="`standardize` names"):
        MultiMAE(model.encoder, standardize=["semseg"])
