"""I-JEPA: the loss against numpy, the target encoder's EMA rule, what the context encoder sees."""

import keras
import numpy as np
import pytest

from keras_mim import IJEPA
from tests.conftest import to_numpy


def model_and_images(n=4, seed=0):
    keras.utils.set_random_seed(seed)
    model = IJEPA.from_preset("ijepa_vit_test", seed=seed)
    images = np.random.default_rng(seed).random((n, 16, 16, 3)).astype("float32")
    return model, images


def fixed_masks(n):
    """Context = tokens 0-7, target blocks {8, 9, 12, 13} and {10, 11, 14, 15} on the 4 x 4 grid."""
    context = np.tile(np.arange(8, dtype="int32"), (n, 1))
    targets = np.tile(np.array([[8, 9, 12, 13], [10, 11, 14, 15]], "int32"), (n, 1, 1))
    return {"ids_keep": context, "target_ids": targets}


def test_loss_is_smooth_l1_over_layer_normed_target_features_at_the_target_blocks():
    model, x = model_and_images()
    masks = fixed_masks(len(x))
    out = model(x, masks=masks, training=False)
    # reference: the target encoder's output, F.layer_norm (eps 1e-5, no affine), gathered
    h = to_numpy(model.target_encoder.encoder(x, training=False)).astype("float64")  # (B, N, D), no cls token
    h = (h - h.mean(-1, keepdims=True)) / np.sqrt(h.var(-1, keepdims=True) + 1e-5)
    target = np.stack([h[b][masks["target_ids"][b]] for b in range(len(x))])  # (B, M, T, D)
    d = np.abs(to_numpy(out["pred"]).astype("float64") - target)
    expected = np.mean(np.where(d < 1.0, 0.5 * d**2, d - 0.5))  # F.smooth_l1_loss, beta 1
    loss = float(to_numpy(model.compute_loss(x=x, y_pred=out, training=False)))
    np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_the_context_encoder_sees_only_the_context_block():
    model, x = model_and_images()
    masks = fixed_masks(len(x))
    changed = x.copy()
    changed[:, 8:] = np.random.default_rng(1).random(changed[:, 8:].shape)  # rows 2-3: targets only
    a = to_numpy(model(x, masks=masks, training=False)["pred"])
    b = to_numpy(model(changed, masks=masks, training=False)["pred"])
    np.testing.assert_allclose(a, b, atol=1e-6)
    changed = x.copy()
    changed[:, :4] += 0.5  # row 0: context
    c = to_numpy(model(changed, masks=masks, training=False)["pred"])
    assert np.abs(a - c).max() > 1e-4


def test_target_encoder_gets_no_gradient_and_moves_by_the_ema_rule():
    model, x = model_and_images(8)
    teacher = model.target_encoder
    assert not {id(v) for v in teacher.weights} & {id(v) for v in model.trainable_weights}
    # start the target encoder away from the encoder, so the update is visible
    teacher.encoder.set_weights([w + 0.1 for w in teacher.encoder.get_weights()])
    t0 = [w.copy() for w in teacher.encoder.get_weights()]
    s0 = [w.copy() for w in model.encoder.get_weights()]
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    model.train_on_batch(x)
    m = 0.996  # momentum at update 0 of the ramp 0.996 -> 1.0
    for t, s, new in zip(t0, s0, teacher.encoder.get_weights()):
        np.testing.assert_allclose(new, m * t + (1 - m) * s, rtol=1e-5, atol=1e-6)
    assert int(to_numpy(teacher.num_updates)) == 1
    assert any(not np.allclose(a, b) for a, b in zip(s0, model.encoder.get_weights()))  # the encoder trained
    steps = model.momentum_steps
    np.testing.assert_allclose(float(teacher.momentum_at(steps // 2)), 0.998, rtol=1e-6)
    np.testing.assert_allclose(float(teacher.momentum_at(2 * steps)), 1.0)


def test_cli_ramps_the_momentum_over_the_run(tmp_path, monkeypatch):
    from keras_mim import cli
    from keras_mim.cli import pretrain_run

    seen = []
    monkeypatch.setattr(cli, "run_pretrain", seen.append)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["pretrain", "--method", "ijepa", "--preset", "ijepa_vit_test"]) == 0
    model = pretrain_run.build_model(seen[0], 3, total_steps=123)
    assert model.momentum_steps == 123 and (model.momentum, model.final_momentum) == (0.996, 1.0)


@pytest.mark.parametrize("kwargs, error, word", [
    ({"mask_generator": "random"}, TypeError, "MultiBlockMaskGenerator"),
    ({"mask_generator": {"target_scale": (0.5, 0.6)}}, ValueError, "cannot fit"),
    ({"predictor": {"predictor_dim": 18, "num_heads": 4}}, ValueError, "num_heads"),
    ({"loss_beta": 0}, ValueError, "loss_beta"),
])
def test_bad_arguments_fail_clearly(kwargs, error, word):
    with pytest.raises(error, match=word):
        IJEPA.from_preset("ijepa_vit_test", **kwargs)


def test_bad_masks_fail_clearly():
    model, x = model_and_images(2)
    with pytest.raises(ValueError, match="target_ids"):
        model(x, masks={"ids_keep": fixed_masks(2)["ids_keep"], "target_ids": np.zeros((2, 3, 4), "int32")})
