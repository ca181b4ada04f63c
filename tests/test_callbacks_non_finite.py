"""Tests of keras_mim.callbacks.StopOnNonFiniteLoss."""

import json

import keras
import numpy as np
import pytest

from keras_mim import MaskedAutoencoder
from keras_mim.callbacks import NonFiniteLossError, StopOnNonFiniteLoss
from tests.training import digits


class _PoisonAt(keras.callbacks.Callback):
    """Sets the first trainable weight to NaN at the start of epoch `epoch` (0-based)."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            weight = self.model.trainable_weights[0]
            weight.assign(np.full(weight.shape, np.nan, "float32"))


def test_stops_at_the_first_nan_batch_keeping_every_checkpoint(tmp_path):
    model = MaskedAutoencoder.from_preset("mae_vit_test", num_channels=1, seed=0)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3))
    model.build((None, 16, 16, 1))
    saved = {}

    class Record(keras.callbacks.Callback):  # the checkpoint file as it was after each epoch
        def on_epoch_end(self, epoch, logs=None):
            saved[epoch] = (tmp_path / "model.keras").read_bytes()

    callbacks = [
        _PoisonAt(1),
        StopOnNonFiniteLoss(),
        keras.callbacks.CSVLogger(str(tmp_path / "history.csv")),
        keras.callbacks.BackupAndRestore(str(tmp_path / "backup")),
        keras.callbacks.ModelCheckpoint(str(tmp_path / "model.keras")),
        Record(),
    ]
    with pytest.raises(NonFiniteLossError) as info:
        model.fit(digits(64), epochs=3, batch_size=16, verbose=0, callbacks=callbacks)
    error = info.value
    assert (error.epoch, error.batch) == (1, 0) and np.isnan(error.loss)
    message = str(error)
    assert "became nan at epoch 2 of 3, batch 1 of 4" in message
    for cause in ("learning rate", "NaN or infinite values in the input data", "precision"):
        assert cause in message
    # Nothing after the bad batch ran: the epoch-1 checkpoint, backup and history stand.
    assert list(saved) == [0]
    assert (tmp_path / "model.keras").read_bytes() == saved[0]
    metadata = json.loads((tmp_path / "backup" / "training_metadata.json").read_text())
    assert metadata["epoch"] == 1  # Keras would delete the backup at a normal end of training
    rows = (tmp_path / "history.csv").read_text().strip().splitlines()
    assert len(rows) == 2 and rows[1].startswith("0,")


@pytest.mark.parametrize("value", [np.inf, -np.inf, np.float32("nan")])
def test_infinite_and_nan_losses_raise(value):
    callback = StopOnNonFiniteLoss()
    callback.set_params({"epochs": 5, "steps": 7})
    callback.on_epoch_begin(3)
    callback.on_train_batch_end(0, {"loss": 1.5})
    callback.on_train_batch_end(1, {})  # no loss logged: nothing to check
    with pytest.raises(NonFiniteLossError, match="at epoch 4 of 5, batch 7 of 7") as info:
        callback.on_train_batch_end(6, {"loss": value})
    assert str(float(value)) in str(info.value)
    assert (info.value.epoch, info.value.batch) == (3, 6)


def test_monitor_another_entry_and_bad_monitor():
    callback = StopOnNonFiniteLoss(monitor="pixel_loss")
    callback.on_train_batch_end(0, {"loss": np.nan, "pixel_loss": 0.5})  # loss is not watched
    with pytest.raises(NonFiniteLossError, match="pixel_loss became inf at epoch 1, batch 2"):
        callback.on_train_batch_end(1, {"pixel_loss": np.inf})
    for bad in ("", 3, None):
        with pytest.raises(TypeError, match="monitor"):
            StopOnNonFiniteLoss(monitor=bad)


def test_built_on_keras_terminate_on_nan():
    callback = StopOnNonFiniteLoss()
    assert isinstance(callback, keras.callbacks.TerminateOnNaN) and callback.raise_error
    with pytest.raises(NonFiniteLossError) as info:
        callback.on_train_batch_end(0, {"loss": float("nan")})
    # Keras' own check found it; ours only adds the context.
    assert type(info.value.__cause__) is RuntimeError
