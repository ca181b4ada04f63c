"""Gradient accumulation through Keras optimizers' own `gradient_accumulation_steps`:
weights move once every N steps, by the update of the mean gradient, also with
layer-wise lr decay and under jit."""

import keras
import numpy as np
import pytest

import keras_mim
from keras_mim.optimizers import LayerDecayAdamW, layer_decay_multipliers
from tests.training import digits, jit_for_backend


class WeightsPerBatch(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.snapshots = []

    def on_train_batch_end(self, batch, logs=None):
        self.snapshots.append([np.array(w) for w in self.model.encoder.get_weights()])


def changed(a, b):
    return any(not np.array_equal(x, y) for x, y in zip(a, b))


def make_optimizer(kind, model):
    if kind == "adamw":
        return keras.optimizers.AdamW(1e-3, gradient_accumulation_steps=2)
    return LayerDecayAdamW(1e-3, lr_multipliers=layer_decay_multipliers(model.encoder, 0.75), default_lr_multiplier=1.0,
                           gradient_accumulation_steps=2)


@pytest.mark.parametrize("kind", ["adamw", "layer_decay"])
def test_weights_update_every_second_step(kind):
    model = keras_mim.MaskedAutoencoder.from_preset("mae_vit_test", seed=0)
    x = digits(64, channels=3)
    model(x[:2])
    # TensorFlow compiles layer-wise decay's per-variable rates under XLA in ~50 s (CI); the
    # accumulation itself is the optimizer's either way, and "adamw" keeps the XLA path.
    jit = jit_for_backend() and not (kind == "layer_decay" and keras.backend.backend() == "tensorflow")
    model.compile(optimizer=make_optimizer(kind, model), jit_compile=jit)
    before = [np.array(w) for w in model.encoder.get_weights()]
    spy = WeightsPerBatch()
    model.fit(x, batch_size=16, epochs=1, verbose=0, callbacks=[spy])
    states = [before] + spy.snapshots  # after 0, 1, 2, 3, 4 steps
    assert [changed(states[i], states[i + 1]) for i in range(4)] == [False, True, False, True]


def test_accumulated_step_equals_one_step_on_the_mean_gradient():
    """SGD, lr 1: two accumulated half-batch steps move a weight by minus the mean of the
    two half-batch gradients, i.e. the full-batch gradient of a mean loss (numpy reference)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 3)).astype("float32")
    y = rng.normal(size=(8, 1)).astype("float32")
    w0 = rng.normal(size=(3, 1)).astype("float32")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, use_bias=False)])
    model.set_weights([w0])
    model.compile(optimizer=keras.optimizers.SGD(1.0, gradient_accumulation_steps=2), loss="mse",
                  jit_compile=jit_for_backend())
    model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    full_batch_grad = 2 * x.T @ (x @ w0 - y) / len(x)
    np.testing.assert_allclose(model.get_weights()[0], w0 - full_batch_grad, rtol=1e-5, atol=1e-6)
