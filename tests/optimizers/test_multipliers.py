"""Per-variable learning-rate multipliers inside `model.fit`: every variable's change
checked against an independent numpy AdamW, and other optimizers through the mixin."""

import keras
import numpy as np
import pytest

from keras_mim.optimizers import LayerDecayAdamW, LearningRateMultiplierMixin, finetune_optimizer
from tests.conftest import to_numpy
from tests.optimizers.standin import KnownGradientClassifier, tiny_encoder
from tests.optimizers.test_layer_decay import official_layer_id, official_lr, official_name, official_no_decay
from tests.training import jit_for_backend


def numpy_adamw(p, g, lrs, wd, beta_1, beta_2, eps):
    """Keras/torch AdamW in float64 (Keras' "epsilon hat": eps on the uncorrected sqrt(v)),
    decoupled decay first: p -= lr * wd * p, then the Adam step with lr."""
    m, v = np.zeros_like(p), np.zeros_like(p)
    for t, lr in enumerate(lrs, start=1):
        p = p - lr * wd * p
        m = beta_1 * m + (1 - beta_1) * g
        v = beta_2 * v + (1 - beta_2) * g * g
        alpha = lr * np.sqrt(1 - beta_2**t) / (1 - beta_1**t)
        p = p - alpha * m / (np.sqrt(v) + eps)
    return p


def test_fit_applies_each_variables_scaled_lr_and_decay():
    """The key check: 3 `fit` steps (full batch, no shuffle) with known gradients; every
    variable moves as numpy AdamW with lr(t) * decay ** (L + 1 - layer_id) and weight decay
    only where the official rule keeps it."""
    encoder = tiny_encoder(pos_embed="learned", mask_token=True)
    rng = np.random.default_rng(0)
    model = KnownGradientClassifier(encoder)
    grads = {v.path: rng.normal(size=v.shape).astype("float32") for v in model.trainable_variables}
    model.set_gradients(grads)
    decay, wd, peak, floor, total, warmup = 0.5, 0.3, 1e-2, 1e-4, 4, 1
    opt = finetune_optimizer(
        model, total_steps=total, warmup_steps=warmup, learning_rate=peak, min_learning_rate=floor,
        layer_decay=decay, weight_decay=wd, beta_2=0.95,
    )
    before = {v.path: to_numpy(v).astype("float64") for v in model.trainable_variables}
    model.compile(optimizer=opt, jit_compile=jit_for_backend())
    x, y = np.zeros((4, 16, 16, 1), "float32"), np.zeros((4,), "float32")
    model.fit(x, y, batch_size=4, epochs=3, shuffle=False, verbose=0)
    assert int(opt.iterations) == 3
    lrs = [official_lr(t, peak, floor, warmup, total) for t in range(3)]  # [0, peak, cosine]
    num_layers = encoder.depth + 1
    seen = set()
    for v in model.trainable_variables:
        name = official_name(v.path, model)
        layer = official_layer_id(name, num_layers)
        scale = decay ** (num_layers - layer)
        decayed = not official_no_decay(name, len(v.shape))
        expected = numpy_adamw(before[v.path], grads[v.path].astype("float64"), [lr * scale for lr in lrs],
                               wd if decayed else 0.0, 0.9, 0.95, 1e-8)
        change, expected_change = to_numpy(v) - before[v.path], expected - before[v.path]
        np.testing.assert_allclose(change, expected_change, rtol=2e-4, atol=3e-7, err_msg=v.path)
        seen.add((layer, decayed))
    # the layers and groups the check went through: tokens/pos (0, no decay), blocks, head
    assert {(0, False), (0, True), (1, True), (1, False), (2, True), (3, True), (3, False)} <= seen
    # a token moved by its own scale: exactly the Adam step, decay ** 3 of the head's rate
    assert opt.lr_multiplier(encoder.cls_token) == 0.125 and not opt.uses_weight_decay(encoder.cls_token)
    assert opt.lr_multiplier(model.head.kernel) == 1.0 and opt.uses_weight_decay(model.head.kernel)


@keras.saving.register_keras_serializable(package="keras_mim_tests")
class LayerDecaySGD(LearningRateMultiplierMixin, keras.optimizers.SGD):
    """Any Keras optimizer takes the multipliers by mixing the class in first."""


def test_mixin_on_sgd_with_momentum_and_weight_decay():
    dense = keras.layers.Dense(3, name="sgd_head")
    dense.build((None, 4))
    kernel, bias = to_numpy(dense.kernel).astype("float64"), to_numpy(dense.bias).astype("float64")
    opt = LayerDecaySGD(
        0.1, momentum=0.9, weight_decay=0.2,
        lr_multipliers={dense.kernel.path: 0.25}, default_lr_multiplier=1.0, no_weight_decay=[dense.bias.path],
    )
    g_kernel, g_bias = np.full((4, 3), 0.5, "float32"), np.arange(3, dtype="float32")
    for _ in range(2):
        opt.apply([g_kernel, g_bias], dense.trainable_variables)

    def numpy_sgd(p, g, lr, wd):  # Keras SGD: decoupled decay, then m = 0.9 m - lr g; p += m
        m = np.zeros_like(p)
        for _ in range(2):
            p = p - lr * wd * p
            m = 0.9 * m - lr * g
            p = p + m
        return p

    np.testing.assert_allclose(to_numpy(dense.kernel), numpy_sgd(kernel, g_kernel, 0.025, 0.2), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(to_numpy(dense.bias), numpy_sgd(bias, g_bias, 0.1, 0.0), rtol=1e-5, atol=1e-7)
    config = opt.get_config()
    assert config["lr_multipliers"] == {dense.kernel.path: 0.25} and config["momentum"] == 0.9
    assert LayerDecaySGD.from_config(config).get_config() == config


def test_table_errors():
    dense = keras.layers.Dense(2, name="err_head")
    dense.build((None, 3))
    opt = LayerDecayAdamW(1e-3, lr_multipliers={dense.kernel.path: 0.5})
    with pytest.raises(ValueError, match="err_head/bias"):
        opt.build(dense.trainable_variables)  # a variable missing from the table
    with pytest.raises(ValueError, match="needs a built optimizer"):
        opt.lr_multiplier(dense.kernel)
    with pytest.raises(ValueError, match="lr_multipliers"):
        LayerDecayAdamW(1e-3, lr_multipliers={"a": -1.0})
    with pytest.raises(TypeError, match="lr_multipliers"):
        LayerDecayAdamW(1e-3, lr_multipliers=[0.5])
    with pytest.raises(TypeError, match="no_weight_decay"):
        LayerDecayAdamW(1e-3, no_weight_decay="err_head/bias")
    with pytest.raises(ValueError, match="default_lr_multiplier"):
        LayerDecayAdamW(1e-3, default_lr_multiplier=-2)


def test_gradient_accumulation_clipping_and_ema_keep_the_multipliers():
    dense = keras.layers.Dense(2, name="acc_head")
    dense.build((None, 3))
    kernel = to_numpy(dense.kernel).astype("float64")
    opt = LayerDecayAdamW(
        0.1, weight_decay=0.5, lr_multipliers={dense.kernel.path: 0.5, dense.bias.path: 1.0},
        gradient_accumulation_steps=2, use_ema=True, global_clipnorm=100.0,
    )
    for scale in (1.0, 3.0):  # the update uses the mean gradient 2.0 once, after the second call
        opt.apply([keras.ops.full((3, 2), scale), keras.ops.zeros((2,))], dense.trainable_variables)
    expected = numpy_adamw(kernel, np.full((3, 2), 2.0), [0.05], 0.5, 0.9, 0.999, 1e-7)
    np.testing.assert_allclose(to_numpy(dense.kernel), expected, rtol=1e-5, atol=1e-6)
