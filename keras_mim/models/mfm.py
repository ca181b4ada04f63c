"""MFM: Masked Frequency Modeling for Self-Supervised Visual Pre-Training (Xie et al., 2022).

Official code: Jiahao000/MFM (`models/mfm.py`, `models/frequency_loss.py`,
`data/data_mfm.py`, `configs/vit_base/mfm_pretrain__vit_base__img224__300ep.yaml`).
Instead of hiding patches, MFM hides frequencies: each image is low- or high-pass
filtered in its centred Fourier spectrum, the encoder sees the whole corrupted image, and
the loss compares the spectra of prediction and original on the removed frequencies.
"""

import numbers

import keras
from keras import ops

from keras_mim.layers.pixel_shuffle import PixelShuffleHead
from keras_mim.models.methods import MethodSpec, register_method
from keras_mim.models.presets import TEST_VIT, VIT_BASE_16
from keras_mim.models.pretraining_model import PretrainingModel, check_encoder, encoder_stride, feature_map
from keras_mim.targets.fourier_target import centered_spectrum, frequency_radius, images_from_centered_spectrum


def check_radius(radius, image_size):
    """Raise unless the circular filter of `radius` both keeps and removes frequencies
    of `image_size` `(H, W)` images: `0 < radius < sqrt((H // 2)**2 + (W // 2)**2)`."""
    if isinstance(radius, bool) or not isinstance(radius, numbers.Real):
        raise TypeError(f"`radius` must be a positive number, got {radius!r}.")
    h, w = image_size
    top = float(frequency_radius(h, w).max())  # the corner: the image's half-diagonal
    if not 0 < radius < top:
        raise ValueError(
            f"`radius`={radius!r} must be in (0, {top:.2f}) for {h}x{w} images: at or below 0 the "
            "low-pass filter keeps nothing, at or beyond the half-diagonal it removes nothing."
        )
    return float(radius)


@keras.saving.register_keras_serializable(package="keras_mim")
class MFM(PretrainingModel):
    """Masked frequency modeling: predict the frequencies a low/high-pass filter removed.

    Per sample, the image's centred spectrum (`fftshift(fft2)` per channel) is filtered by
    a circle of `radius` (in frequency-index units, as the official code): low-pass keeps
    the frequencies at distance `< radius` from the centre, high-pass keeps the others;
    low-pass is drawn with probability `low_pass_probability`. The inverse FFT (real
    part) is the corrupted image; the encoder encodes all its tokens (no masking), and a
    1x1 conv + pixel shuffle (as SimMIM; the official ViT head) predicts the image.

    Loss (official ViT configuration: frequency loss with exponent 1 and no spectrum
    weight matrix, `RECOVER_TARGET_TYPE: masked`): with `F` the orthonormal centred 2D
    FFT, the mean over removed frequencies and channels of `|F(pred) - F(image)|`,
    i.e. `sum(sqrt(dRe**2 + dIm**2 + 1e-12) * removed) / sum(removed) / C`, in float32.
    The target is the uncorrupted image as given (the official code normalises images
    with ImageNet statistics first; do that in the data pipeline if wanted).

    `call(images, low_pass=None)` returns a dict: `pred` `(B, H, W, C)`, `corrupted`
    `(B, H, W, C)`, `freq_mask` `(B, H, W)` (1 = removed frequency, centred layout) and
    `low_pass` `(B,)` (1 = low-pass). Pass `low_pass` to fix the per-sample choice.

    Args:
        encoder: an encoder such as `ViTEncoder`; after pretraining, this object is what
            downstream models reuse.
        radius: filter radius in frequency-index units (paper: 16 at 224 px), in
            `(0, half-diagonal)` of the image.
        low_pass_probability: chance of a low-pass (rather than high-pass) filter, in [0, 1].
        clip_range: None (default) or `(low, high)`: clip the corrupted image, as the
            official code clips to `(0, 1)` (its images are in [0, 1] at that point).
            Clipping puts some energy back into removed frequencies.
        seed: optional int seed of the per-sample filter choice.
        **kwargs: standard model arguments (name, dtype).

    Examples:
        >>> import numpy as np, keras
        >>> model = MFM.from_preset("mfm_vit_test", seed=0)
        >>> model.compile(optimizer=keras.optimizers.AdamW(1e-3))
        >>> history = model.fit(np.random.rand(8, 16, 16, 3).astype("float32"), epochs=1, verbose=0)
        >>> out = model(np.zeros((2, 16, 16, 3), "float32"))
        >>> sorted(out), tuple(out["pred"].shape), tuple(out["freq_mask"].shape)
        (['corrupted', 'freq_mask', 'low_pass', 'pred'], (2, 16, 16, 3), (2, 16, 16))
    """

    def __init__(self, encoder, radius=16, low_pass_probability=0.5, clip_range=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.encoder = check_encoder(encoder, "MFM")
        self.radius = check_radius(radius, encoder.image_size)
        p = low_pass_probability
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= p <= 1.0:
            raise ValueError(f"`low_pass_probability` must be a number in [0, 1], got {p!r}.")
        self.low_pass_probability = float(p)
        if clip_range is not None:
            if (not isinstance(clip_range, (tuple, list)) or len(clip_range) != 2
                    or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in clip_range)
                    or not clip_range[0] < clip_range[1]):
                raise ValueError(f"`clip_range` must be None or a pair (low, high) with low < high, got {clip_range!r}.")
            clip_range = (float(clip_range[0]), float(clip_range[1]))
        self.clip_range = clip_range
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.decoder = PixelShuffleHead(
            encoder_stride(encoder), encoder.num_channels, dtype=self.dtype_policy, name="decoder"
        )

    def build(self, images_shape=None):
        # Sub-models deserialised from a `.keras` file (or shared) arrive already built.
        if not self.encoder.built:
            self.encoder.build()
        if not self.decoder.built:
            gh, gw = self.encoder.output_grid_shape
            self.decoder.build((None, gh, gw, self.encoder.output_dim))
        self.built = True

    # ------------------------------------------------------------------ the method
    def low_pass_filter(self, height, width):
        """Frequencies a low-pass filter keeps, centred layout: numpy `(H, W)`, 1 = kept."""
        check_radius(self.radius, (height, width))
        return (frequency_radius(height, width) < self.radius).astype("float32")

    def frequency_masking(self, images, low_pass=None):
        """Choose low/high-pass per sample: `(freq_mask (B, H, W), low_pass (B,))`,
        freq_mask 1 = removed."""
        _, h, w, _ = images.shape
        if low_pass is None:
            u = keras.random.uniform((ops.shape(images)[0],), seed=self.seed_generator)
            low_pass = ops.cast(u < self.low_pass_probability, "float32")  # (B,)
        elif len(ops.convert_to_tensor(low_pass).shape) != 1:
            raise ValueError(f"`low_pass` must have shape (batch,), got {tuple(low_pass.shape)}.")
        low_pass = ops.cast(low_pass, "float32")[:, None, None]  # (B, 1, 1)
        keep_low = ops.convert_to_tensor(self.low_pass_filter(h, w))[None]  # (1, H, W)
        # low-pass removes what it does not keep; high-pass removes what low-pass keeps
        freq_mask = low_pass * (1.0 - keep_low) + (1.0 - low_pass) * keep_low  # (B, H, W)
        return freq_mask, low_pass[:, 0, 0]

    def frequency_transform(self, images, freq_mask):
        """Zero the removed frequencies of each channel; back to a real image `(B, H, W, C)`."""
        real, imag = centered_spectrum(images)  # (B, H, W, C) each
        keep = 1.0 - freq_mask[..., None]  # (B, H, W, 1)
        corrupted = images_from_centered_spectrum(real * keep, imag * keep)
        if self.clip_range is not None:
            corrupted = ops.clip(corrupted, *self.clip_range)
        return ops.cast(corrupted, images.dtype)

    def forward_encoder(self, corrupted, training=None):
        return self.encoder(corrupted, training=training)  # (B, prefix + N, D): all tokens

    def forward_decoder(self, latent):
        return self.decoder(feature_map(self.encoder, latent))  # (B, gh, gw, D) -> (B, H, W, C)

    def forward_loss(self, images, pred, freq_mask):
        pred_re, pred_im = centered_spectrum(pred, norm="ortho")  # (B, H, W, C)
        true_re, true_im = centered_spectrum(images, norm="ortho")
        distance = ops.sqrt(ops.square(pred_re - true_re) + ops.square(pred_im - true_im) + 1e-12)
        removed = ops.cast(freq_mask, "float32")[..., None]  # (B, H, W, 1)
        return ops.sum(distance * removed) / ops.sum(removed) / self.encoder.num_channels

    def call(self, images, low_pass=None, training=None):
        self.encoder.check_images(images)
        freq_mask, low_pass = self.frequency_masking(images, low_pass)
        corrupted = self.frequency_transform(images, freq_mask)
        pred = self.forward_decoder(self.forward_encoder(corrupted, training=training))
        return {"pred": pred, "corrupted": corrupted, "freq_mask": freq_mask, "low_pass": low_pass}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if y_pred is None:
            y_pred = self(x, training=training)
        loss = self.forward_loss(x, y_pred["pred"], y_pred["freq_mask"])
        return self.add_layer_losses(loss)

    def get_config(self):
        config = super().get_config()
        config.update(
            encoder=keras.saving.serialize_keras_object(self.encoder),
            radius=self.radius,
            low_pass_probability=self.low_pass_probability,
            clip_range=self.clip_range,
            seed=self.seed,
        )
        return config


register_method(MethodSpec(
    name="mfm", model=MFM, family="corrupted", cli_preset="mfm_vit_test",
    description="MFM: low/high-pass filtered image in, loss on the removed frequencies.",
    paper="Xie et al., ICLR 2023", code="Jiahao000/MFM",
    presets={
        "mfm_vit_base_patch16": dict(
            description="MFM ViT-B/16: low/high-pass corrupted image in, loss on the removed frequencies.",
            encoder=VIT_BASE_16, kwargs={"radius": 16}),
        # The radius is set for the image size: the test preset's 16 px (radius 4), not the digits default.
        "mfm_vit_test": dict(description="MFM on the test ViT (16 px): radius 4.", encoder=TEST_VIT,
                             kwargs={"radius": 4}),
    },
))
