"""Waveforms -> Audio-MAE's normalised log-mel spectrograms, on Keras' `MelSpectrogram`."""

import math

import keras

from keras_mim.compat import DataLayer

#: AudioSet's log-mel mean and std (official Audio-MAE / AST `norm_stats`).
AUDIOSET_MEAN, AUDIOSET_STD = -4.2677393, 4.5689974
#: Kaldi's energy floor: float32 machine epsilon.
LOG_FLOOR = 1.1920929e-07


@keras.saving.register_keras_serializable(package="keras_mim")
class LogMelSpectrogram(DataLayer):
    """Waveforms `(B, samples)` -> log-mel spectrograms `(B, num_frames, num_mel_bins, 1)`,
    time along the first axis as Audio-MAE's inputs (1024 frames x 128 bins for 10 s).

    Audio-MAE computes Kaldi filter banks (`torchaudio.compliance.kaldi.fbank`: 25 ms
    Hann windows every 10 ms, FFT of 512 at 16 kHz, power spectrum, 128 triangular mel
    filters from 20 Hz to Nyquist, natural log), zero-pads or cuts them to 1024 frames,
    then normalises with the dataset's statistics, `(x - mean) / (2 * std)`. Here the mel
    power spectrum is Keras' own `keras.layers.MelSpectrogram` (the same filters: HTK mel
    scale, triangles in mel, the DC and Nyquist bins weightless), and this layer adds
    what it lacks: the waveform's mean removed and pre-emphasis (0.97), frames placed as
    Kaldi's (`MelSpectrogram` centres frames on multiples of the hop with reflected
    edges; 120 zeros in front and two frames dropped put frame i on samples `[160 i, 160 i
    + 400)`, Kaldi's `snip_edges` framing, and the frames Kaldi does not make are zeroed),
    the natural log with Kaldi's floor, padding / cutting to `num_frames`, and the
    normalisation. What still differs from Kaldi (measured in docs/audio.md): a periodic
    Hann window instead of the symmetric one, and the mean and pre-emphasis applied to
    the whole waveform instead of to each frame.

    A data layer: it runs inside `tf.data` (TensorFlow ops, on every backend) and inside
    a model. The number of samples must be static.

    Args:
        sample_rate: waveform sample rate in Hz (Audio-MAE: 16000).
        num_mel_bins: mel filters (Audio-MAE: 128).
        window_ms: window length in milliseconds (25).
        hop_ms: hop in milliseconds (10).
        num_frames: frames of the output, zero-padded or cut (Audio-MAE: 1024, 10 s).
        mean: dataset mean of the log-mel values (AudioSet's by default).
        std: dataset std; the output is `(log_mel - mean) / (2 * std)` as Audio-MAE.
        min_freq: lowest filter edge in Hz (Kaldi: 20).
        max_freq: highest filter edge in Hz (None: Nyquist).
        pre_emphasis: pre-emphasis coefficient (Kaldi: 0.97; 0 for none).
        **kwargs: standard layer arguments.

    Examples:
        >>> import numpy as np
        >>> layer = LogMelSpectrogram(num_frames=96)
        >>> wave = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000).astype("float32")[None]
        >>> spec = keras.ops.convert_to_numpy(layer(wave))
        >>> spec.shape, int(spec[0, 10].argmax())  # 1 s = 98 Kaldi frames; 440 Hz lands in mel bin 23
        ((1, 96, 128, 1), 23)
    """

    def __init__(self, sample_rate=16000, num_mel_bins=128, window_ms=25.0, hop_ms=10.0, num_frames=1024,
                 mean=AUDIOSET_MEAN, std=AUDIOSET_STD, min_freq=20.0, max_freq=None, pre_emphasis=0.97, **kwargs):
        super().__init__(**kwargs)
        for name, value in (("sample_rate", sample_rate), ("num_mel_bins", num_mel_bins), ("num_frames", num_frames)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive int, got {value!r}.")
        if not float(std) > 0:
            raise ValueError(f"`std` must be positive, got {std!r}.")
        self.sample_rate, self.num_mel_bins, self.num_frames = sample_rate, num_mel_bins, num_frames
        self.window_ms, self.hop_ms = float(window_ms), float(hop_ms)
        self.window_length = int(sample_rate * self.window_ms * 0.001)  # 400 samples (truncated, as Kaldi)
        self.hop_length = int(sample_rate * self.hop_ms * 0.001)  # 160
        if not 0 < self.hop_length <= self.window_length:
            raise ValueError(f"`hop_ms`={hop_ms} must be positive and at most `window_ms`={window_ms}.")
        self.fft_length = 2 ** math.ceil(math.log2(self.window_length))  # 512, as Kaldi's round_to_power_of_two
        self.mean, self.std = float(mean), float(std)
        self.min_freq = float(min_freq)
        self.max_freq = None if max_freq is None else float(max_freq)
        self.pre_emphasis = float(pre_emphasis)
        self.mel = keras.layers.MelSpectrogram(
            fft_length=self.fft_length, sequence_stride=self.hop_length, sequence_length=self.window_length,
            window="hann", sampling_rate=sample_rate, num_mel_bins=num_mel_bins, min_freq=self.min_freq,
            max_freq=self.max_freq, power_to_db=False, mag_exp=2.0, dtype="float32", name="mel",
        )

    def build(self, input_shape=None):
        self.mel.build(input_shape)  # no weights: the filters are computed in each call
        self.built = True

    def num_samples(self, num_frames=None):
        """The fewest samples that make `num_frames` Kaldi frames (default: the layer's
        `num_frames`): `window + (frames - 1) * hop`, the inverse of `num_kaldi_frames`."""
        frames = self.num_frames if num_frames is None else num_frames
        return self.window_length + (frames - 1) * self.hop_length

    def num_kaldi_frames(self, num_samples):
        """Frames Kaldi makes of `num_samples` (`snip_edges`): `1 + (S - window) // hop`."""
        if num_samples is None:
            raise ValueError("LogMelSpectrogram needs the number of samples to be static (known when the model "
                             "or the tf.data pipeline is built); cut or pad the waveforms to one length.")
        if num_samples < self.window_length:
            raise ValueError(
                f"A waveform of {num_samples} samples is shorter than one {self.window_ms:g} ms window "
                f"({self.window_length} samples at {self.sample_rate} Hz)."
            )
        return 1 + (num_samples - self.window_length) // self.hop_length

    def call(self, waveforms):
        b = self.backend
        x = b.cast(waveforms, "float32")
        single = len(x.shape) == 1
        if single:
            x = b.numpy.expand_dims(x, 0)
        if len(x.shape) != 2:
            raise ValueError(f"LogMelSpectrogram takes waveforms (batch, samples), got shape {tuple(x.shape)}.")
        valid = min(self.num_kaldi_frames(x.shape[-1]), self.num_frames)
        x = x - b.numpy.mean(x, axis=-1, keepdims=True)
        if self.pre_emphasis:
            x = b.numpy.concatenate([x[:, :1] * (1.0 - self.pre_emphasis), x[:, 1:] - self.pre_emphasis * x[:, :-1]], -1)
        # MelSpectrogram's frame i covers [hop * i - window / 2, hop * i + window / 2); `lead` zeros in
        # front make its frame `skip + j` cover Kaldi's frame j, samples [hop * j, hop * j + window).
        half = self.fft_length // 2 - (self.fft_length - self.window_length) // 2  # frame start before its centre
        skip = math.ceil(half / self.hop_length)
        lead = skip * self.hop_length - half
        x = b.numpy.pad(x, [(0, 0), (lead, 0)]) if lead else x
        power = self.mel(x)[:, :, skip : skip + valid]  # (B, mel, frames)
        logmel = b.numpy.log(b.numpy.maximum(b.numpy.swapaxes(power, 1, 2), LOG_FLOOR))  # (B, frames, mel)
        if valid < self.num_frames:  # Kaldi's missing frames are zeros (before normalisation), as Audio-MAE pads
            logmel = b.numpy.pad(logmel, [(0, 0), (0, self.num_frames - valid), (0, 0)])
        out = b.numpy.expand_dims((logmel - self.mean) / (2.0 * self.std), -1)
        out = b.cast(out, self.compute_dtype)
        return out[0] if single else out

    def compute_output_shape(self, input_shape):
        self.num_kaldi_frames(input_shape[-1])
        return tuple(input_shape[:-1]) + (self.num_frames, self.num_mel_bins, 1)

    def get_config(self):
        config = super().get_config()
        config.update(
            sample_rate=self.sample_rate, num_mel_bins=self.num_mel_bins, window_ms=self.window_ms,
            hop_ms=self.hop_ms, num_frames=self.num_frames, mean=self.mean, std=self.std,
            min_freq=self.min_freq, max_freq=self.max_freq, pre_emphasis=self.pre_emphasis,
        )
        return config
