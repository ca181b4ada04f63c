"""Offline audio for demos and tests: generated tones and chirps, and spoken digits
synthesised by the `espeak-ng` system package (several voices, speeds and pitches).
Nothing is downloaded."""

import os
import shutil
import subprocess
import tempfile

import numpy as np

from keras_mim.data.audio_folder import read_audio, resample

TONE_CLASSES = ("tone", "chirp_up", "chirp_down", "two_tones")
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
#: espeak-ng voices (accents) and voice variants (male m1-m7, female f1-f5) the spoken digits draw from.
ESPEAK_VOICES = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbcwmd")
ESPEAK_VARIANTS = ("m1", "m2", "m3", "m4", "m7", "f1", "f2", "f3", "f4", "f5")


def tone_clips(num_clips, sample_rate=16000, seconds=1.0, seed=0):
    """`(waveforms (n, samples) float32, labels (n,) int32, class_names)`: four classes of
    generated sounds (`TONE_CLASSES`): a steady tone, a rising and a falling chirp, two
    tones at once; random frequencies (200 Hz to 3 kHz), loudness, onset and length, with
    a little noise. Labels cycle through the classes.

    Examples:
        >>> waves, labels, names = tone_clips(8, seconds=0.5)
        >>> waves.shape, labels.tolist()[:5], names[1]
        ((8, 8000), [0, 1, 2, 3, 0], 'chirp_up')
    """
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    waves = np.zeros((num_clips, n), "float32")
    labels = np.arange(num_clips, dtype="int32") % len(TONE_CLASSES)
    for i, label in enumerate(labels):
        f0, f1 = np.exp(rng.uniform(np.log(200.0), np.log(3000.0), 2))
        if label == 1:
            f0, f1 = min(f0, f1), max(f0, f1) * 1.5
        elif label == 2:
            f0, f1 = max(f0, f1) * 1.5, min(f0, f1)
        if label in (1, 2):  # frequency moving linearly from f0 to f1 over the clip
            phase = 2 * np.pi * (f0 * t + 0.5 * (f1 - f0) * t**2 / seconds)
            wave = np.sin(phase)
        elif label == 3:
            wave = 0.5 * (np.sin(2 * np.pi * f0 * t) + np.sin(2 * np.pi * f1 * t))
        else:
            wave = np.sin(2 * np.pi * f0 * t)
        start, stop = sorted(rng.uniform(0, 1, 2) * [0.3 * n, n])
        envelope = ((np.arange(n) >= start) & (np.arange(n) < max(stop, start + 0.3 * n))).astype(float)
        waves[i] = rng.uniform(0.2, 0.9) * wave * envelope + 0.01 * rng.standard_normal(n)
    return waves, labels, TONE_CLASSES


def espeak_available():
    """Whether the `espeak-ng` command is installed."""
    return shutil.which("espeak-ng") is not None


def spoken_digits(num_clips, sample_rate=16000, seconds=1.0, seed=0):
    """`(waveforms (n, samples) float32, labels (n,) int32, class_names)`: the words "zero" to
    "nine" spoken by `espeak-ng` with a voice, variant, speed (120-200 words a minute) and
    pitch (25-75) drawn per clip, resampled to `sample_rate`, placed at a random offset
    and zero-padded to `seconds`. Labels cycle through the ten digits.

    Needs the `espeak-ng` system package (Debian / Ubuntu: `apt-get install espeak-ng`;
    macOS: `brew install espeak-ng`); raises RuntimeError saying so when it is missing.

    Examples:
        >>> waves, labels, names = spoken_digits(3)
        >>> waves.shape, names[labels[2]]
        ((3, 16000), 'two')
    """
    if not espeak_available():
        raise RuntimeError("Spoken digits are synthesised by the espeak-ng system package, which is not installed "
                           "(Debian/Ubuntu: apt-get install espeak-ng; macOS: brew install espeak-ng).")
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    waves = np.zeros((num_clips, n), "float32")
    labels = np.arange(num_clips, dtype="int32") % len(DIGIT_WORDS)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "word.wav")
        for i, label in enumerate(labels):
            voice = f"{rng.choice(ESPEAK_VOICES)}+{rng.choice(ESPEAK_VARIANTS)}"
            command = ["espeak-ng", "-v", voice, "-s", str(int(rng.integers(120, 201))),
                       "-p", str(int(rng.integers(25, 76))), "-w", path, DIGIT_WORDS[label]]
            subprocess.run(command, check=True, capture_output=True, timeout=30)
            wave, rate = read_audio(path)
            wave = resample(wave, rate, sample_rate)[:n]
            start = int(rng.integers(0, n - len(wave) + 1))
            waves[i, start : start + len(wave)] = wave
    return waves, labels, DIGIT_WORDS
