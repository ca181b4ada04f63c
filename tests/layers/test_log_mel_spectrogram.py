"""LogMelSpectrogram against numpy formulas: its own definition, and Kaldi's filter banks
(Audio-MAE's `torchaudio.compliance.kaldi.fbank`), which it approximates."""

import keras
import numpy as np
import pytest

from keras_mim.layers import LogMelSpectrogram
from tests.conftest import to_numpy

SR, WIN, HOP, NFFT, MEL = 16000, 400, 160, 512, 40


def mel(f):
    return 1127.0 * np.log1p(f / 700.0)


def np_mel_filters(num_bins, sr=SR, nfft=NFFT, low=20.0):
    """`(nfft // 2 + 1, num_bins)`: triangles in mel between equally spaced mel edges (Kaldi / HTK)."""
    edges = np.linspace(mel(low), mel(sr / 2), num_bins + 2)
    bin_mel = mel(np.arange(nfft // 2 + 1) * sr / nfft)[:, None]
    left, centre, right = edges[:-2], edges[1:-1], edges[2:]
    return np.maximum(0, np.minimum((bin_mel - left) / (centre - left), (right - bin_mel) / (right - centre)))


def np_log_mel(wave, frames, window, per_frame):
    """Natural-log mel energies `(frames_made, MEL)`: frame i on samples [HOP i, HOP i + WIN).
    `per_frame`: Kaldi (DC offset and pre-emphasis inside each frame); else the layer's
    definition (both on the whole waveform first)."""
    wave = wave.astype("float64")
    if not per_frame:
        wave = wave - wave.mean()
        wave = np.concatenate([wave[:1] * 0.03, wave[1:] - 0.97 * wave[:-1]])
    n = 1 + (len(wave) - WIN) // HOP
    out = []
    for i in range(n):
        frame = wave[HOP * i : HOP * i + WIN].copy()
        if per_frame:
            frame -= frame.mean()
            frame = np.concatenate([frame[:1] * 0.03, frame[1:] - 0.97 * frame[:-1]])
        spectrum = np.abs(np.fft.rfft(frame * window, NFFT)) ** 2
        out.append(np.log(np.maximum(spectrum @ np_mel_filters(MEL), 1.1920929e-07)))
    out = np.array(out)[:frames]
    return np.pad(out, [(0, frames - len(out)), (0, 0)])


def periodic_hann(n):
    return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)


def symmetric_hann(n):  # Kaldi's "hanning"
    return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / (n - 1))


@pytest.fixture(scope="module")
def speech_like():
    """A fixed waveform: a gliding harmonic tone with noise, 0.5 s."""
    t = np.arange(SR // 2) / SR
    f0 = 150 + 100 * t
    wave = sum(np.sin(2 * np.pi * k * np.cumsum(f0) / SR) / k for k in range(1, 6))
    return (0.3 * wave + 0.01 * np.random.default_rng(0).standard_normal(len(t))).astype("float32")


def test_matches_its_numpy_definition(speech_like):
    layer = LogMelSpectrogram(num_mel_bins=MEL, num_frames=64, mean=-1.0, std=2.0)
    out = to_numpy(layer(np.stack([speech_like, speech_like[::-1]])))
    assert out.shape == (2, 64, MEL, 1)
    for i, wave in enumerate((speech_like, speech_like[::-1])):
        ref = (np_log_mel(wave, 64, periodic_hann(WIN), per_frame=False) + 1.0) / 4.0
        made = 1 + (len(wave) - WIN) // HOP  # 48 frames, then zero log-mel padding
        ref[made:] = 1.0 / 4.0
        np.testing.assert_allclose(out[i, :, :, 0], ref, atol=2e-4)


def test_close_to_kaldi_filter_banks(speech_like):
    """What remains of Kaldi's definition (per-frame DC and pre-emphasis, symmetric Hann): the
    mean absolute natural-log difference, measured 0.0098 here (the window alone: 0.0037;
    docs/audio.md)."""
    layer = LogMelSpectrogram(num_mel_bins=MEL, num_frames=48, mean=0.0, std=0.5)
    ours = to_numpy(layer(speech_like[None]))[0, :, :, 0]
    kaldi = np_log_mel(speech_like, 48, symmetric_hann(WIN), per_frame=True)
    assert np.abs(ours - kaldi).mean() < 0.02


def test_in_tf_data_on_every_backend(speech_like):
    import tensorflow as tf

    layer = LogMelSpectrogram(num_mel_bins=MEL, num_frames=32)
    waves = np.stack([speech_like, 0.5 * speech_like])
    from_data = np.concatenate([np.asarray(b) for b in tf.data.Dataset.from_tensor_slices(waves).batch(2).map(layer)])
    np.testing.assert_allclose(from_data, to_numpy(layer(waves)), atol=1e-5)
    single = next(iter(tf.data.Dataset.from_tensor_slices(waves).map(layer)))  # one waveform: (frames, mel, 1)
    assert tuple(single.shape) == (32, MEL, 1)


def test_config_and_bad_input(tmp_path):
    layer = LogMelSpectrogram(num_mel_bins=MEL, num_frames=32, mean=1.0, std=3.0)
    again = LogMelSpectrogram.from_config(layer.get_config())
    assert again.get_config() == layer.get_config()
    model = keras.Sequential([keras.Input((4000,)), layer])
    model.save(tmp_path / "m.keras")
    wave = np.random.default_rng(0).normal(size=(1, 4000)).astype("float32")
    np.testing.assert_allclose(to_numpy(keras.saving.load_model(tmp_path / "m.keras")(wave)), to_numpy(model(wave)),
                               atol=1e-6)
    # 25 ms windows every 10 ms at 16 kHz: 400 + 31 x 160 samples make 32 frames, one fewer 31
    assert layer.num_samples() == 5360 and layer.num_samples(96) == 15600
    assert layer.num_kaldi_frames(5360) == 32 and layer.num_kaldi_frames(5359) == 31
    with pytest.raises(ValueError, match="shorter than one 25 ms window"):
        layer(np.zeros((1, 300), "float32"))
    with pytest.raises(ValueError, match="`num_mel_bins` must be a positive int"):
        LogMelSpectrogram(num_mel_bins=0)
    with pytest.raises(ValueError, match="`std` must be positive"):
        LogMelSpectrogram(std=0.0)
