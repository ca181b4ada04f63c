"""Figures of the multi-input methods: a row per band group (SatMAE) whose masked panel is
blank exactly on that group's hidden patches, the composites' band order, and the figure
callback drawing modalities and band groups during `fit`."""

import os

import keras
import numpy as np
import pytest

from keras_mim import MultiMAE, SatMAE
from keras_mim.callbacks import ReconstructionFigureCallback
from keras_mim.data.multispectral import SATMAE_BANDS, multispectral_scenes
from keras_mim.data.paired_scenes import paired_scenes
from keras_mim.viz_multimodal import group_composite, plot_band_group_reconstructions


@pytest.mark.one_backend  # a figure of SatMAE.reconstruct, whose masks the model tests check on every backend
def test_band_group_rows_blank_each_groups_hidden_patches():
    model = SatMAE.from_preset("satmae_vit_test", seed=0)
    tiles = multispectral_scenes(2, image_size=16, seed=0)[0][..., list(SATMAE_BANDS)]
    noise = np.random.default_rng(0).random((2, 48)).astype("float32")  # 3 groups x 16 patches
    fig = plot_band_group_reconstructions(model, tiles, noise=noise, band_names=[str(b) for b in range(10)])
    assert len(fig.axes) == 2 * 3 * 3
    # the hidden tokens of fixed noise: the 36 highest scores of each sample (independent masking)
    hidden = np.argsort(np.argsort(noise, axis=1), axis=1) >= 12
    for i in range(2):
        for g in range(3):
            masked = np.ma.getdata(fig.axes[(i * 3 + g) * 3 + 1].images[0].get_array())
            blank = np.isnan(masked.reshape(16, 16, -1)[..., 0])
            expected = np.kron(hidden[i, g * 16 : (g + 1) * 16].reshape(4, 4), np.ones((4, 4), bool))
            np.testing.assert_array_equal(blank, expected)
    with pytest.raises(ValueError, match="band_names"):
        plot_band_group_reconstructions(model, tiles, band_names=["a"])


@pytest.mark.backend_independent
def test_group_composite_band_order():
    image = np.arange(10, dtype="float32")[None, None, :] * np.ones((2, 2, 1), "float32")
    assert group_composite(image, (0, 1, 2, 6))[0, 0].tolist() == [2.0, 1.0, 0.0]  # B4 B3 B2: true colour
    assert group_composite(image, (8, 9)).shape == (2, 2) and group_composite(image, (8, 9))[0, 0] == 8.0


@pytest.mark.one_backend
def test_callback_draws_modalities_and_band_groups(tmp_path):
    scenes = paired_scenes(8, image_size=16, seed=0)
    tiles = multispectral_scenes(8, image_size=16, seed=0)[0][..., list(SATMAE_BANDS)]
    for figure, model, data in (("modalities", MultiMAE.from_preset("multimae_vit_test", seed=0), scenes),
                                ("band_groups", SatMAE.from_preset("satmae_vit_test", seed=0), tiles)):
        model.compile(optimizer=keras.optimizers.AdamW(1e-3))
        head = {k: v[:2] for k, v in data.items()} if isinstance(data, dict) else data[:2]
        callback = ReconstructionFigureCallback(head, tmp_path / figure, seed=0, max_images=2, figure=figure)
        model.fit(data, batch_size=4, epochs=1, verbose=0, callbacks=[callback])
        assert os.listdir(tmp_path / figure) == ["reconstruction_epoch0001.png"]
    with pytest.raises(ValueError, match="`figure` must be one of"):
        ReconstructionFigureCallback(tiles[:2], tmp_path, figure="bands")
