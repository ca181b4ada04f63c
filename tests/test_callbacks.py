"""Tests of keras_mim.callbacks.ReconstructionFigureCallback."""

import os

import keras
import numpy as np
import pytest
from matplotlib.image import imread

from keras_mim import MaskedAutoencoder
from keras_mim.callbacks import ReconstructionFigureCallback

NAMES = ["reconstruction_epoch0001.png", "reconstruction_epoch0002.png"]


@pytest.fixture(scope="module")
def model():
    model = MaskedAutoencoder.from_preset("mae_vit_test", seed=0)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3))
    return model


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).random((8, 16, 16, 3)).astype("float32")


def _snapshot(folder):
    return {
        name: (os.stat(folder / name).st_mtime_ns, (folder / name).read_bytes())
        for name in sorted(os.listdir(folder))
    }


def _weights(model):
    return [np.array(keras.ops.convert_to_numpy(w)) for w in model.weights]


def test_saves_every_epoch_and_refuses_to_overwrite(model, images, tmp_path):
    folder = tmp_path / "figs"
    callback = ReconstructionFigureCallback(images[:2], folder, seed=0)
    model.fit(images, epochs=2, batch_size=8, verbose=0, callbacks=[callback])
    assert sorted(os.listdir(folder)) == NAMES
    for name in NAMES:
        png = imread(folder / name)
        assert png.ndim == 3 and png.shape[2] == 4 and png.shape[0] > 100
    # The noise was drawn once from the seed, (B, num_patches), and kept.
    np.testing.assert_array_equal(
        callback.noise, np.random.default_rng(0).random((2, 16)).astype("float32")
    )

    # A second callback into the same folder fails before any training step.
    before_files, before_weights = _snapshot(folder), _weights(model)
    second = ReconstructionFigureCallback(images[:2], folder, seed=0)
    with pytest.raises(FileExistsError) as info:
        model.fit(images, epochs=2, batch_size=8, verbose=0, callbacks=[second])
    assert str(folder) in str(info.value) and "overwrite=True" in str(info.value)
    assert _snapshot(folder) == before_files
    for old, new in zip(before_weights, _weights(model)):
        np.testing.assert_array_equal(old, new)

    # overwrite=True replaces them.
    for name in NAMES:
        os.utime(folder / name, ns=(0, 0))
    third = ReconstructionFigureCallback(images[:2], folder, seed=0, overwrite=True)
    model.fit(images, epochs=2, batch_size=8, verbose=0, callbacks=[third])
    assert sorted(os.listdir(folder)) == NAMES
    assert all(os.stat(folder / name).st_mtime_ns > 0 for name in NAMES)


def test_every_n_epochs_and_resumed_fit(model, images, tmp_path):
    noise = np.random.default_rng(3).random((2, 16)).astype("float32")
    callback = ReconstructionFigureCallback(
        images[:2], tmp_path, every_n_epochs=2, noise=noise, max_images=1,
        filename_pattern="rec_{epoch:03d}.png",
    )
    model.fit(images, epochs=3, batch_size=8, verbose=0, callbacks=[callback])
    assert sorted(os.listdir(tmp_path)) == ["rec_002.png"]
    # Resuming with the same callback is fine (its own files do not count) ...
    model.fit(images, epochs=4, initial_epoch=3, batch_size=8, verbose=0, callbacks=[callback])
    assert sorted(os.listdir(tmp_path)) == ["rec_002.png", "rec_004.png"]
    np.testing.assert_array_equal(callback.noise, noise)
    # ... but writing the same epoch again is refused rather than silently overwritten.
    before = _snapshot(tmp_path)
    with pytest.raises(FileExistsError, match="rec_002.png"):
        model.fit(images, epochs=2, batch_size=8, verbose=0, callbacks=[callback])
    assert _snapshot(tmp_path) == before


def test_unrelated_files_do_not_clash(model, images, tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    (tmp_path / "reconstruction_epoch.png").write_text("no epoch number: not a match")
    callback = ReconstructionFigureCallback(images[:1], tmp_path, every_n_epochs=5)
    callback.set_model(model)
    callback.on_train_begin()  # does not raise
    (tmp_path / "reconstruction_epoch0042.png").write_text("a match")
    with pytest.raises(FileExistsError, match="reconstruction_epoch0042.png"):
        callback.on_train_begin()


def test_get_config_round_trip(tmp_path):
    images = np.zeros((2, 16, 16, 3), "float32")
    callback = ReconstructionFigureCallback(
        images, tmp_path, every_n_epochs=3, seed=5, max_images=2,
        filename_pattern="e{epoch}.png", overwrite=True,
    )
    config = callback.get_config()
    again = ReconstructionFigureCallback(**config)
    assert again.get_config() == config
    assert config["every_n_epochs"] == 3 and config["seed"] == 5 and config["overwrite"] is True
    assert config["output_dir"] == str(tmp_path) and config["noise"] is None


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"images": np.zeros((16, 16, 3))}, ValueError, ["images", "rank 4"]),
        ({"output_dir": 3}, TypeError, ["output_dir", "int"]),
        ({"every_n_epochs": 0}, ValueError, ["every_n_epochs", "0"]),
        ({"max_images": -1}, ValueError, ["max_images", "-1"]),
        ({"seed": 1.5}, TypeError, ["seed", "1.5"]),
        ({"noise": np.zeros((3, 16))}, ValueError, ["noise", "(3, 16)"]),
        ({"filename_pattern": "fixed.png"}, ValueError, ["filename_pattern", "fixed.png"]),
        ({"filename_pattern": "{step}.png"}, ValueError, ["filename_pattern", "{step}.png"]),
        ({"filename_pattern": "a/{epoch}.png"}, ValueError, ["filename_pattern", "no folder"]),
        ({"filename_pattern": "{epoch}_{epoch}.png"}, ValueError, ["filename_pattern"]),
        ({"filename_pattern": 3}, TypeError, ["filename_pattern", "int"]),
    ],
)
def test_bad_arguments(kwargs, error, words, tmp_path):
    args = {"images": np.zeros((2, 16, 16, 3), "float32"), "output_dir": tmp_path}
    args.update(kwargs)
    with pytest.raises(error) as info:
        ReconstructionFigureCallback(**args)
    for word in words:
        assert word in str(info.value)


def test_model_without_reconstruct(tmp_path):
    callback = ReconstructionFigureCallback(np.zeros((1, 16, 16, 3), "float32"), tmp_path)
    callback.set_model(keras.Sequential([keras.layers.Dense(1)]))
    with pytest.raises(TypeError, match="reconstruct"):
        callback.on_train_begin()
