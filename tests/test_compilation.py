"""Compiled training traces once: static shapes and a fixed hidden-token count mean no
recompilation across steps or epochs (JAX jit and TensorFlow XLA); PyTorch runs eagerly."""

import keras
import pytest

import keras_mim
from tests.training import digits, jit_for_backend

MASKINGS = ["random", "block", "grid", "green"]


class CountingMAE(keras_mim.MaskedAutoencoder):
    """Counts how often the Python body of `compute_loss` runs: once per trace when the
    step is compiled, once per step when it runs eagerly."""

    runs = 0

    def compute_loss(self, *args, **kwargs):
        type(self).runs += 1
        return super().compute_loss(*args, **kwargs)


class RunsPerBatch(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.runs = []

    def on_train_batch_end(self, batch, logs=None):
        self.runs.append(CountingMAE.runs)


@pytest.mark.parametrize("masking", MASKINGS)
def test_fit_traces_the_train_step_once(masking):
    encoder = keras_mim.ViTEncoder(image_size=16, patch_size=4, embed_dim=32, depth=1, num_heads=2)
    model = CountingMAE(encoder, decoder=dict(decoder_dim=16, depth=1, num_heads=2), mask_generator=masking,
                        mask_ratio=0.75, seed=0)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3), jit_compile=jit_for_backend())
    CountingMAE.runs = 0
    epochs, steps = 3, 4
    counter = RunsPerBatch()
    model.fit(digits(16 * steps, channels=3), batch_size=16, epochs=epochs, verbose=0, callbacks=[counter])
    if jit_for_backend():
        # Traced during the first step only (tf.function traces its first call twice: once
        # creating variables, once for the graph it keeps), never again.
        assert counter.runs[0] <= 2 and counter.runs == [counter.runs[0]] * (epochs * steps), counter.runs
    else:
        assert counter.runs == list(range(1, epochs * steps + 1)), counter.runs


def test_several_steps_per_execution_train_as_one_step_per_call():
    """`steps_per_execution` (the CLI's default, `--steps-per-execution auto`) only changes how
    often the fit loop and callbacks run: the same seed gives the same losses and weights as one
    step per call, also over an epoch (5 steps) that is not a multiple of it (3). Keras on torch
    runs one step per call (and says so)."""
    import numpy as np

    from keras_mim.cli.common import steps_per_execution_setting

    if keras.backend.backend() == "torch":  # Keras' torch trainer refuses more than 1
        assert steps_per_execution_setting("auto", 100) == 1
        return
    assert steps_per_execution_setting("auto", 100) == 8

    images = digits(16 * 5, channels=1)
    runs = []
    for steps_per_execution in (1, 3):
        keras.utils.set_random_seed(0)
        encoder = keras_mim.ViTEncoder(image_size=16, patch_size=4, num_channels=1, embed_dim=32, depth=1,
                                       num_heads=2, seed=0)
        model = keras_mim.MaskedAutoencoder(encoder, decoder=dict(decoder_dim=16, depth=1, num_heads=2),
                                            mask_ratio=0.75, seed=0)
        model.compile(optimizer=keras.optimizers.AdamW(1e-3), jit_compile=jit_for_backend(),
                      steps_per_execution=steps_per_execution)
        history = model.fit(images, batch_size=16, epochs=1, shuffle=False, verbose=0)
        runs.append((history.history["loss"], [np.asarray(w) for w in model.get_weights()]))
    (loss_1, weights_1), (loss_3, weights_3) = runs
    np.testing.assert_allclose(loss_3, loss_1, rtol=1e-5, atol=1e-6)
    for a, b in zip(weights_3, weights_1):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
