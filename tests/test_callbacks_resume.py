"""ReconstructionFigureCallback(keep_existing=True): a resumed run keeps the earlier figures;
a stop while a figure is written leaves no file behind."""

import os
import types

import keras
import numpy as np
import pytest

from keras_mim import MaskedAutoencoder
from keras_mim.callbacks import ReconstructionFigureCallback


def test_keep_existing_leaves_earlier_figures_and_adds_new_ones(tmp_path):
    model = MaskedAutoencoder.from_preset("mae_vit_test", seed=0)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3))
    images = np.random.default_rng(0).random((8, 16, 16, 3)).astype("float32")
    (tmp_path / "reconstruction_epoch0001.png").write_bytes(b"from the killed run")
    (tmp_path / "reconstruction_epoch0002.png").write_bytes(b"also")
    with pytest.raises(FileExistsError):  # the default still refuses
        model.fit(images, epochs=1, verbose=0,
                  callbacks=[ReconstructionFigureCallback(images[:1], tmp_path, seed=0)])
    callback = ReconstructionFigureCallback(images[:1], tmp_path, seed=0, keep_existing=True)
    model.fit(images, epochs=3, initial_epoch=1, verbose=0, callbacks=[callback])
    assert sorted(os.listdir(tmp_path)) == [f"reconstruction_epoch000{e}.png" for e in (1, 2, 3)]
    assert (tmp_path / "reconstruction_epoch0001.png").read_bytes() == b"from the killed run"
    assert (tmp_path / "reconstruction_epoch0002.png").read_bytes() == b"also"  # epoch 2 re-run: kept
    assert (tmp_path / "reconstruction_epoch0003.png").read_bytes()[:4] == b"\x89PNG"
    assert callback.get_config()["keep_existing"] is True


def test_keep_existing_and_overwrite_exclude_each_other(tmp_path):
    with pytest.raises(ValueError, match="`overwrite` and `keep_existing`"):
        ReconstructionFigureCallback(np.zeros((1, 16, 16, 3), "float32"), tmp_path, overwrite=True,
                                     keep_existing=True)


@pytest.mark.backend_independent  # no Keras op: the figure is replaced
def test_a_stop_while_a_figure_is_written_leaves_no_file(tmp_path, monkeypatch):
    def interrupted(model, images, noise, path, **kwargs):
        with open(path, "wb") as f:
            f.write(b"\x89PNG half a figure")
        raise KeyboardInterrupt

    monkeypatch.setattr("keras_mim.callbacks.plot_reconstructions", interrupted)
    callback = ReconstructionFigureCallback(np.zeros((1, 16, 16, 3), "float32"), tmp_path, noise=np.zeros((1, 16)))
    callback.set_model(types.SimpleNamespace(reconstruct=lambda images, noise=None: images))
    callback.on_train_begin()
    with pytest.raises(KeyboardInterrupt):
        callback.on_epoch_end(0)
    assert os.listdir(tmp_path) == []  # neither the figure nor its partial file
