"""A folder of audio files (speech, bird song, machine sounds), scanned once and read as
mono float32 waveforms at one sample rate, cropped or padded to one length. Nothing is
downloaded."""

import math
import os
import warnings

import numpy as np

from keras_mim.data.decoding import error_reason, summarize_skipped, write_skipped
from keras_mim.data.image_folder import _walk, check_folder, folder_classes

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")


def read_audio(path):
    """`(waveform, sample_rate)`: a mono float32 waveform in [-1, 1] (channels averaged).

    WAV files (PCM 8/16/24/32-bit or float) read with scipy; FLAC and OGG need the
    optional `soundfile` package (`pip install soundfile`), which reads WAV too when it is
    installed. Raises ValueError naming the file when it does not read.
    """
    path = os.fspath(path)
    try:
        import soundfile
    except ImportError:
        soundfile = None
    try:
        if soundfile is not None:
            wave, rate = soundfile.read(path, dtype="float32", always_2d=True)
        elif path.lower().endswith(".wav"):
            from scipy.io import wavfile

            with warnings.catch_warnings():  # unknown chunks (e.g. LIST metadata) are skipped
                warnings.simplefilter("ignore")
                rate, wave = wavfile.read(path)
            wave = _pcm_to_float(wave).reshape(len(wave), -1)
        else:
            raise ValueError(f"{os.path.splitext(path)[1]} files need the `soundfile` package (pip install soundfile)")
    except ValueError as error:
        raise ValueError(f"Cannot read {path!r}: {error}") from error
    except Exception as error:
        raise ValueError(f"Cannot read {path!r}: {error_reason(error)}") from error
    if wave.size == 0:
        raise ValueError(f"Cannot read {path!r}: no samples")
    return wave.mean(axis=1).astype("float32"), int(rate)


def _pcm_to_float(wave):
    """Integer PCM (uint8 centred at 128, int16, int32) -> float32 in [-1, 1]; floats as they are."""
    if wave.dtype == np.uint8:
        return (wave.astype("float32") - 128.0) / 128.0
    if np.issubdtype(wave.dtype, np.integer):
        return wave.astype("float32") / float(-np.iinfo(wave.dtype).min)
    return wave.astype("float32")


def resample(wave, rate, target_rate):
    """`wave` sampled at `rate` Hz resampled to `target_rate` Hz (polyphase filter,
    `scipy.signal.resample_poly`, anti-aliased)."""
    if rate == target_rate:
        return np.asarray(wave, "float32")
    from scipy.signal import resample_poly

    g = math.gcd(int(rate), int(target_rate))
    return resample_poly(np.asarray(wave, "float64"), target_rate // g, rate // g).astype("float32")


def fit_length(wave, num_samples, rng=None):
    """`wave` cut to `num_samples` (a random window when `rng` is a numpy Generator, else the
    start) or zero-padded at the end."""
    wave = np.asarray(wave, "float32")
    if len(wave) >= num_samples:
        start = 0 if rng is None else int(rng.integers(0, len(wave) - num_samples + 1))
        return wave[start : start + num_samples]
    return np.pad(wave, (0, num_samples - len(wave)))


class AudioFolder:
    """The audio files found under a folder, read once (waveforms are kept in memory).

    Files with the extensions `.wav .flac .ogg` (any case) are taken recursively, in
    natural order, as `ImageFolder` does; a file that does not read (a text file named
    `x.wav`, a cut WAV, a FLAC without `soundfile`) or is shorter than `min_seconds` is
    skipped and listed in `skipped` as `(path, reason)`, with one warning in all. Every
    waveform is mixed to mono and resampled to `sample_rate`.

    Labels: the first-level subfolder of each file (`class_names`, sorted; `labels`, -1
    for files directly in `path`).

    Args:
        path: the folder to scan.
        sample_rate: the sample rate every waveform is resampled to (Audio-MAE: 16000).
        min_seconds: files shorter than this are skipped (one analysis window, 25 ms, by
            default: a spectrogram needs a frame).
        recursive: scan subfolders too.

    Examples:
        >>> import tempfile
        >>> from scipy.io import wavfile
        >>> tmp = tempfile.TemporaryDirectory()
        >>> os.makedirs(os.path.join(tmp.name, "birds"))
        >>> wavfile.write(os.path.join(tmp.name, "birds", "a.wav"), 8000, np.zeros(8000, "int16"))
        >>> open(os.path.join(tmp.name, "broken.wav"), "w").write("not audio")
        9
        >>> folder = AudioFolder(tmp.name, sample_rate=16000)
        >>> len(folder), folder.durations, len(folder.skipped)
        (1, [1.0], 1)
        >>> folder.read([0], num_samples=4000).shape
        (1, 4000)
        >>> tmp.cleanup()
    """

    def __init__(self, path, sample_rate=16000, min_seconds=0.025, recursive=True):
        self.path = check_folder(path)
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate < 1:
            raise ValueError(f"`sample_rate` must be a positive int (Hz), got {sample_rate!r}.")
        self.sample_rate = sample_rate
        found, self.skipped = _walk(self.path, AUDIO_EXTENSIONS, recursive)
        if not found:
            raise ValueError(f"No audio file ({', '.join(AUDIO_EXTENSIONS)}) found under `path` {self.path!r}.")
        self.files, self.waves, self.source_rates = [], [], []
        for file in found:
            try:
                wave, rate = read_audio(file)
                if len(wave) < min_seconds * rate:
                    raise ValueError(f"{len(wave) / rate:.3f} s long, shorter than min_seconds={min_seconds}")
            except ValueError as error:
                self.skipped.append((file, str(error).replace(f"Cannot read {file!r}: ", "")))
                continue
            self.files.append(file)
            self.source_rates.append(rate)
            self.waves.append(resample(wave, rate, sample_rate))
        if not self.files:
            raise ValueError(f"No readable audio file under `path` {self.path!r}; skipped {len(self.skipped)} "
                             f"file(s): {summarize_skipped(self.skipped)}.")
        self.class_names, self.labels = folder_classes(self.path, self.files)
        if self.skipped:
            warnings.warn(self.report(), stacklevel=2)

    @property
    def durations(self):
        """Each file's length in seconds (at `sample_rate`)."""
        return [round(len(w) / self.sample_rate, 6) for w in self.waves]

    def __len__(self):
        return len(self.files)

    def __repr__(self):
        return f"AudioFolder({self.path!r}, files={len(self)}, skipped={len(self.skipped)})"

    def report(self, listed_in="`.skipped`"):
        """One line on what the scan skipped, or "" when nothing was."""
        if not self.skipped:
            return ""
        return (f"audio folder {self.path!r}: skipped {len(self.skipped)} file(s) that do not read as audio "
                f"({summarize_skipped(self.skipped, limit=2)}); all listed in {listed_in}.")

    def read(self, indices, num_samples, seed=None):
        """Waveforms `indices` as one float32 array `(k, num_samples)`: longer files cut (a
        random window per file with `seed`, else their start), shorter ones zero-padded."""
        rng = None if seed is None else np.random.default_rng(seed)
        return np.stack([fit_length(self.waves[int(i)], num_samples, rng) for i in indices])

    def write_skipped(self, path):
        """Write the skipped files, one `path<TAB>reason` a line, to a new text file `path`
        (an existing file is never overwritten: FileExistsError). Returns the count."""
        return write_skipped(path, self.skipped)
