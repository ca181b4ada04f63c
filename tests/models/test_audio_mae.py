"""AudioMAE's own properties: the local-window decoder, the front-end and its checks, and
learning on speech spectrograms (the generic suite runs build / fit / round trip on tones)."""

import keras
import numpy as np
import pytest

from keras_mim import AudioMAE, MAEDecoder
from keras_mim.data.sample_audio import spoken_digits
from keras_mim.layers import WindowTransformerBlock
from tests.conftest import to_numpy
from tests.training import fit_history


@pytest.mark.one_backend(backend="torch")  # builds ViT-B: the architecture, not the backend
def test_official_preset_decoder_is_sixteen_window_blocks():
    model = AudioMAE.from_preset("audiomae_vit_base_patch16", load_weights=False)
    assert model.encoder.grid_shape == (64, 8) and model.num_visible == int(512 * 0.2)
    blocks = model.decoder.blocks
    assert len(blocks) == 16 and all(isinstance(b, WindowTransformerBlock) for b in blocks)
    assert [b.attn.shift_size for b in blocks[:2]] == [(0, 0), (2, 0)] and blocks[0].attn.window_size == (4, 4)
    assert blocks[0].num_heads == 16 and model.decoder.decoder_dim == 512


@pytest.mark.one_backend(backend="torch")  # the decoder's wiring; window attention: tests/layers, every backend
def test_decoder_output_of_a_window_ignores_the_other_windows(rng):
    """Changing what the decoder gets at one position changes the predictions of that token's
    windows only: the union over the blocks of the tokens sharing a window with it."""
    decoder = MAEDecoder((8, 4), output_dim=6, decoder_dim=16, depth=1, num_heads=2, window_size=(4, 4))
    latent = rng.normal(size=(1, 1 + 32, 8)).astype("float32")  # cls + every token visible
    ids_restore = np.arange(32)[None]
    changed = latent.copy()
    changed[0, 1 + 3] += 2.0  # token (0, 3): first window, rows 0-3
    diff = np.abs(to_numpy(decoder(changed, ids_restore)) - to_numpy(decoder(latent, ids_restore)))[0].max(-1)
    np.testing.assert_array_equal(diff > 1e-6, np.arange(32) < 16)
    with pytest.raises(ValueError, match="needs the whole grid"):
        decoder(latent, ids_restore, ids_decode=np.arange(8)[None])


@pytest.mark.one_backend(backend="torch")  # checks before any op; the log-mel numerics: tests/layers, every backend
def test_frontend_checks_sample_rate_and_clip_length():
    model = AudioMAE.from_preset("audiomae_vit_test", seed=0)
    waves = np.random.default_rng(0).normal(size=(2, 6000)).astype("float32")
    assert model.spectrograms(waves, 16000).shape == (2, 32, 16, 1)
    with pytest.raises(ValueError, match="takes 16000 Hz audio; resample first"):
        model.spectrograms(waves, 22050)
    with pytest.raises(ValueError, match=r"shorter than one patch of 4 frames \(880 samples\)"):
        model.spectrograms(waves[:, :800], 16000)
    with pytest.raises(ValueError, match="one-channel spectrograms"):
        AudioMAE.from_preset("audiomae_vit_test", num_channels=3)
    tf_model = AudioMAE.from_preset("audiomae_vit_test", mask_generator="time_frequency", seed=0)
    mask = to_numpy(tf_model(model.spectrograms(waves, 16000))["mask"]).reshape(2, 8, 4)
    assert (mask.min(axis=2) == 1).sum(1).tolist() == [5, 5]  # int(8 x 0.4) = 3 of the 8 time rows kept


@pytest.mark.one_backend(backend="torch")  # a learning check; the training step runs on every backend in the suite
def test_loss_falls_on_speech_spectrograms():
    keras.utils.set_random_seed(0)
    model = AudioMAE.from_preset("audiomae_vit_test", seed=0)
    waves, _, _ = spoken_digits(128, seconds=0.5, seed=1)
    x = model.spectrograms(waves[:, 1600:8000], 16000)  # 0.4 s of each word's middle
    history = fit_history(model, x, epochs=8)
    assert history[-1] < 0.75 * history[0], history
