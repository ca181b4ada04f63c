"""Audio files and the offline audio sets: reading, resampling, skipping what does not read."""

import os

import numpy as np
import pytest
from scipy.io import wavfile

from keras_mim.data.audio_folder import AudioFolder, fit_length, read_audio, resample
from keras_mim.data.sample_audio import DIGIT_WORDS, spoken_digits, tone_clips

pytestmark = pytest.mark.backend_independent  # numpy and scipy only


def test_read_audio_scales_pcm_and_mixes_channels(tmp_path):
    wavfile.write(tmp_path / "a.wav", 8000, np.array([[-32768, 0], [16384, 16384]], "int16"))
    wave, rate = read_audio(tmp_path / "a.wav")
    assert rate == 8000 and wave.dtype == np.float32
    np.testing.assert_allclose(wave, [-0.5, 0.5])  # (-1 + 0) / 2, (0.5 + 0.5) / 2
    wavfile.write(tmp_path / "b.wav", 8000, np.array([0, 128, 255], "uint8"))
    np.testing.assert_allclose(read_audio(tmp_path / "b.wav")[0], [-1.0, 0.0, 127 / 128])
    wavfile.write(tmp_path / "c.wav", 8000, np.array([0.25, -0.5], "float32"))
    np.testing.assert_allclose(read_audio(tmp_path / "c.wav")[0], [0.25, -0.5])


def test_resample_keeps_a_tone_and_fit_length_crops_or_pads():
    t = np.arange(22050) / 22050
    out = resample(np.sin(2 * np.pi * 440 * t), 22050, 16000)
    assert out.shape == (16000,)
    spectrum = np.abs(np.fft.rfft(out))
    assert abs(np.argmax(spectrum) - 440) <= 1  # 1 Hz bins over 1 s
    np.testing.assert_array_equal(fit_length(np.arange(5), 3), [0, 1, 2])
    np.testing.assert_array_equal(fit_length(np.arange(2), 4), [0, 1, 0, 0])
    crop = fit_length(np.arange(10), 4, np.random.default_rng(0))
    assert len(crop) == 4 and np.all(np.diff(crop) == 1)


def test_folder_resamples_labels_and_lists_what_it_skips(tmp_path):
    for cls, rate in (("birds", 8000), ("frogs", 16000)):
        os.makedirs(tmp_path / cls)
        wavfile.write(tmp_path / cls / "a.wav", rate, (np.random.default_rng(0).normal(size=rate) * 1000).astype("int16"))
    (tmp_path / "birds" / "broken.wav").write_text("not audio")
    wavfile.write(tmp_path / "birds" / "click.wav", 16000, np.zeros(100, "int16"))  # 6 ms: shorter than a window
    (tmp_path / "frogs" / "song.flac").write_bytes(b"fLaC")
    with pytest.warns(UserWarning, match="skipped 3 file"):
        folder = AudioFolder(tmp_path, sample_rate=16000)
    assert len(folder) == 2 and folder.class_names == ["birds", "frogs"] and folder.labels.tolist() == [0, 1]
    assert folder.durations == [1.0, 1.0] and folder.source_rates == [8000, 16000]
    reasons = dict((os.path.basename(p), r) for p, r in folder.skipped)
    assert "shorter than min_seconds" in reasons["click.wav"] and "broken.wav" in reasons
    assert folder.read([0, 1], 4000).shape == (2, 4000)
    folder.write_skipped(tmp_path / "skipped.txt")
    with pytest.raises(FileExistsError):
        folder.write_skipped(tmp_path / "skipped.txt")
    os.makedirs(tmp_path / "empty")
    with pytest.raises(ValueError, match="No audio file"):
        AudioFolder(tmp_path / "empty")
    with pytest.raises(ValueError, match="`sample_rate` must be a positive int"):
        AudioFolder(tmp_path, sample_rate=0)


def test_generated_sets():
    waves, labels, names = tone_clips(8, seconds=0.25, seed=0)
    assert waves.shape == (8, 4000) and labels.tolist() == [0, 1, 2, 3] * 2 and len(names) == 4
    np.testing.assert_array_equal(waves, tone_clips(8, seconds=0.25, seed=0)[0])  # repeatable
    waves, labels, names = spoken_digits(12, seed=0)
    assert names == DIGIT_WORDS and waves.shape == (12, 16000) and labels.tolist()[:3] == [0, 1, 2]
    assert all(np.abs(w).max() > 0.05 for w in waves)  # every clip holds speech
    np.testing.assert_array_equal(waves, spoken_digits(12, seed=0)[0])
