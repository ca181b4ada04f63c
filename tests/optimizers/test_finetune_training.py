"""Fine-tuning with `finetune_optimizer` in `model.fit`: the optimizer survives a `.keras`
round trip and trains on identically; the loss falls on real digits."""

import keras
import numpy as np
from sklearn.datasets import load_digits

from keras_mim.optimizers import LayerDecayAdamW, finetune_optimizer
from tests.conftest import to_numpy
from tests.optimizers.standin import StandInClassifier, tiny_encoder
from tests.training import digits, jit_for_backend


def test_keras_roundtrip_continues_training_identically(tmp_path):
    x, y = digits(64), load_digits().target[:64]
    model = StandInClassifier(tiny_encoder())
    model.compile(
        optimizer=finetune_optimizer(model, total_steps=8, warmup_steps=2, learning_rate=3e-3, layer_decay=0.5),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        # the fastest choice per backend (the other fits cover XLA on TensorFlow)
        jit_compile=keras.backend.backend() == "jax",
    )
    model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    model.save(tmp_path / "clf.keras")
    loaded = keras.saving.load_model(tmp_path / "clf.keras")
    opt, back = model.optimizer, loaded.optimizer
    assert type(back) is LayerDecayAdamW and back.get_config() == opt.get_config()
    assert int(back.iterations) == 4
    for a, b in zip(opt.variables, back.variables):
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b))
    for m in (model, loaded):
        m.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    assert back.lr_multiplier(loaded.encoder.cls_token) == 0.125
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_allclose(to_numpy(a), to_numpy(b), rtol=1e-5, atol=1e-6, err_msg=a.path)


def test_finetuning_loss_falls_on_digits():
    x, y = digits(256), keras.utils.to_categorical(load_digits().target[:256], 10)
    model = StandInClassifier(tiny_encoder())
    steps = 5 * 256 // 32
    model.compile(
        optimizer=finetune_optimizer(model, total_steps=steps, warmup_steps=4, learning_rate=3e-3, layer_decay=0.75),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True),
        jit_compile=jit_for_backend(),
    )
    history = model.fit(x, y, batch_size=32, epochs=5, shuffle=False, verbose=0).history["loss"]
    assert np.all(np.isfinite(history)) and history[-1] < 0.75 * history[0], history
