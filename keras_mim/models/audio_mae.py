"""Audio-MAE: Masked Autoencoders that Listen (Huang et al., NeurIPS 2022).

Official code: facebookresearch/AudioMAE (`models_mae.py`, `dataset.py`). A spectrogram is an
image with time along its first axis: Audio-MAE is MAE on `(B, frames, mel_bins, 1)` log-mel
spectrograms (`keras_mim.layers.LogMelSpectrogram`) with a high mask ratio and a decoder whose
attention stays inside local windows of the time-frequency grid. Differences from the official
code: docs/audio.md.
"""

import keras

from keras_mim.layers.log_mel_spectrogram import AUDIOSET_MEAN, AUDIOSET_STD, LogMelSpectrogram
from keras_mim.masking import get_mask_generator
from keras_mim.models.masked_autoencoder import MaskedAutoencoder
from keras_mim.models.methods import MethodSpec, register_method
from keras_mim.models.presets import decoder, vit


def spectrogram_frontend(encoder, sample_rate, spectrogram_mean, spectrogram_std):
    """The `LogMelSpectrogram` that makes the inputs of an Audio-MAE `encoder` (its frames and
    mel bins) from waveforms at `sample_rate`, normalised with the given statistics."""
    frames, bins = encoder.image_size
    return LogMelSpectrogram(sample_rate=sample_rate, num_mel_bins=bins, num_frames=frames, mean=spectrogram_mean,
                             std=spectrogram_std)


@keras.saving.register_keras_serializable(package="keras_mim")
class AudioMAE(MaskedAutoencoder):
    """MAE on log-mel spectrograms with Audio-MAE's masking and local-window decoder.

    The encoder is a `ViTEncoder` on one-channel spectrograms `(B, T, F, 1)` (T frames, F
    mel bins; Audio-MAE: 1024 x 128 in 16 x 16 patches, a 64 x 8 token grid, time
    first, as the official `patchify`). Masking hides 0.8 of the tokens at random, or
    whole time rows and frequency columns (`mask_generator="time_frequency"`, the
    paper's ablation, time 0.6 and frequency 0.5). The decoder puts mask tokens in the
    hidden places as MAE's does, then runs Swin V2 blocks whose attention stays inside
    4 x 4 windows, shifted by (2, 0) in every second block (`decoder={"window_size":
    None}` for MAE's global decoder, the official `decoder_mode=0`); the loss is the MSE
    on hidden patches against per-patch normalised spectrogram values.

    Waveforms become spectrograms in the data pipeline with the model's front-end,
    `model.frontend()` (a `keras_mim.layers.LogMelSpectrogram` with `num_frames=T`,
    `num_mel_bins=F` and the model's `sample_rate` and normalisation statistics), or
    `model.spectrograms(waveforms, sample_rate)`; `keras-mim pretrain --method audiomae`
    does it, with the statistics of the training set (as Audio-MAE per dataset).

    Args:
        encoder: a `ViTEncoder` on `(T, F)` spectrograms with one channel.
        decoder: as `MaskedAutoencoder`; Audio-MAE's: 512 wide, 16 window blocks of 16 heads.
        mask_generator: `"random"` (default) or `"time_frequency"`, or any `MaskGenerator`.
        mask_ratio: fraction of hidden tokens (0.8; the time-frequency generator derives
            its own from `time_ratio` and `freq_ratio`).
        norm_pix_loss: per-patch normalised targets (default True, as the official
            pretraining script).
        norm_pix_eps: epsilon of that normalisation (1e-6).
        target: None (spectrogram values) or a `keras_mim.targets.Target`.
        sample_rate: the waveforms' sample rate in Hz (16000).
        spectrogram_mean: mean of the log-mel values used to normalise (AudioSet's).
        spectrogram_std: their std (AudioSet's); inputs are `(x - mean) / (2 * std)`.
        seed: optional int seed of the mask generator.
        **kwargs: standard model arguments (name, dtype).

    Examples:
        >>> import numpy as np
        >>> model = AudioMAE.from_preset("audiomae_vit_test", seed=0)
        >>> out = model(np.random.rand(2, 32, 16, 1).astype("float32"))
        >>> tuple(out["pred"].shape), int(keras.ops.sum(out["mask"][0]))  # 8 x 4 tokens of 4 x 4, 0.75 hidden
        ((2, 32, 16), 24)
    """

    def __init__(self, encoder, decoder=None, mask_generator="random", mask_ratio=0.8, norm_pix_loss=None,
                 norm_pix_eps=None, target=None, sample_rate=16000, spectrogram_mean=AUDIOSET_MEAN,
                 spectrogram_std=AUDIOSET_STD, seed=None, **kwargs):
        if getattr(encoder, "num_frames", None) is not None or getattr(encoder, "num_channels", 1) != 1:
            raise ValueError(
                "AudioMAE pretrains on one-channel spectrograms (batch, frames, mel_bins, 1): `encoder` must "
                f"be an image ViTEncoder with num_channels=1, got num_channels={encoder.num_channels}"
                f"{' and num_frames=' + str(encoder.num_frames) if getattr(encoder, 'num_frames', None) else ''}."
            )
        if mask_generator == "time_frequency":  # hides 1 - (1 - 0.6) * (1 - 0.5) = 0.8; `mask_ratio` does not apply
            mask_generator = get_mask_generator("time_frequency", seed=seed)
        if kwargs.pop("decoder_mask_generator", None) is not None:
            raise ValueError("AudioMAE decodes every token (its decoder's windows need the whole grid); "
                             "`decoder_mask_generator` must be None.")
        kwargs.pop("decoder_mask_ratio", None)
        super().__init__(encoder, decoder=decoder, mask_generator=mask_generator, mask_ratio=mask_ratio,
                         norm_pix_loss=norm_pix_loss, norm_pix_eps=norm_pix_eps, target=target, seed=seed, **kwargs)
        self.sample_rate = sample_rate
        self.spectrogram_mean, self.spectrogram_std = float(spectrogram_mean), float(spectrogram_std)
        self.frontend()  # checks the settings now

    def frontend(self):
        """The `LogMelSpectrogram` that makes this model's inputs from waveforms."""
        return spectrogram_frontend(self.encoder, self.sample_rate, self.spectrogram_mean, self.spectrogram_std)

    def min_samples(self):
        """The fewest samples that make one patch of frames (shorter clips are refused)."""
        return self.frontend().num_samples(self.patch_size[0])

    def spectrograms(self, waveforms, sample_rate):
        """Waveforms `(B, samples)` at `sample_rate` Hz -> this model's inputs `(B, T, F, 1)`
        (numpy). Raises ValueError when `sample_rate` is not the model's (resample first,
        `keras_mim.data.audio_folder.resample`) or a clip is shorter than one patch."""
        import numpy as np

        if sample_rate != self.sample_rate:
            raise ValueError(f"`sample_rate`={sample_rate!r} Hz, but this model takes {self.sample_rate} Hz audio; "
                             "resample first (keras_mim.data.audio_folder.resample).")
        waveforms = np.asarray(waveforms, "float32")
        if waveforms.ndim != 2:
            raise ValueError(f"`waveforms` must be (batch, samples), got shape {waveforms.shape}.")
        if waveforms.shape[1] < self.min_samples():
            raise ValueError(f"Clips of {waveforms.shape[1]} samples ({waveforms.shape[1] / sample_rate:.3f} s) are "
                             f"shorter than one patch of {self.patch_size[0]} frames ({self.min_samples()} samples).")
        return keras.ops.convert_to_numpy(self.frontend()(waveforms))

    def get_config(self):
        config = super().get_config()
        config.update(sample_rate=self.sample_rate, spectrogram_mean=self.spectrogram_mean,
                      spectrogram_std=self.spectrogram_std)
        for key in ("decoder_mask_generator", "decoder_mask_ratio"):
            config.pop(key, None)
        return config


def audio_vit(num_frames, num_mel_bins, patch_size, embed_dim, depth, num_heads):
    """ViTEncoder arguments for `(num_frames, num_mel_bins, 1)` spectrograms."""
    return vit((num_frames, num_mel_bins), patch_size, embed_dim, depth, num_heads, num_channels=1)


def window_decoder(decoder_dim, depth, num_heads, window_size=(4, 4), shift_size=(2, 0)):
    """Decoder arguments of Audio-MAE's local-window decoder."""
    return decoder(decoder_dim, depth, num_heads, window_size=window_size, shift_size=shift_size)


register_method(MethodSpec(
    name="audiomae", model=AudioMAE, family="audio", data="audio", pixels=True,
    description="Audio-MAE: MAE on log-mel spectrograms, 0.8 masked, local-window decoder.",
    paper="Huang et al., NeurIPS 2022", code="facebookresearch/AudioMAE", cli_preset="audiomae_vit_tiny_patch8",
    presets={
        # 10 s at 16 kHz: 1024 frames x 128 mel bins, 16 x 16 patches (64 x 8 tokens); the official
        # decoder: 16 Swin V2 blocks of 16 heads, 512 wide, 4 x 4 windows shifted (2, 0) every second block.
        "audiomae_vit_base_patch16": dict(
            description="Audio-MAE ViT-B/16 on 1024 x 128 log-mel spectrograms (10 s), ratio 0.8, local-window "
                        "decoder 512 x 16 x 16.",
            encoder=audio_vit(1024, 128, 16, 768, 12, 12), decoder=window_decoder(512, 16, 16)),
        "audiomae_vit_tiny_patch8": dict(
            description="Audio-MAE 64 x 4 x 4 on 96 x 64 spectrograms (~1 s), patch 8 (12 x 8 tokens), decoder "
                        "64 x 2 x 4 in 4 x 4 windows: trains on a CPU.",
            encoder=audio_vit(96, 64, 8, 64, 4, 4), decoder=window_decoder(64, 2, 4)),
        "audiomae_vit_test": dict(
            description="Audio-MAE on 32 x 16 spectrograms, patch 4 (8 x 4 tokens), ratio 0.75, window decoder: "
                        "for tests.",
            encoder=audio_vit(32, 16, 4, 32, 2, 2), decoder=window_decoder(32, 2, 2), kwargs={"mask_ratio": 0.75}),
    },
))
