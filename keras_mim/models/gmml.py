"""GMML: group masked model learning (Atito et al., "SiT: Self-supervised vIsion
Transformer", 2021; "GMML is All you Need", 2022).

Official code: Sara-Ahmed/GMML (`datasets/datasets_utils.py` `GMML_drop_rand_patches`
and `GMML_replace_list`, `main.py`, `vision_transformer.py` `RECHead`). Groups of
connected patches are corrupted, not replaced by a learned token: filled with noise, or
with the same region of another image of the batch. The encoder sees the whole
corrupted image, a light head rebuilds every patch, and the loss is L1 on the corrupted
pixels only.
"""

import math

import keras
from keras import ops

from keras_mim.layers.patching import unpatchify
from keras_mim.losses import masked_mean
from keras_mim.masking import get_mask_generator
from keras_mim.models.methods import MethodSpec, register_method
from keras_mim.models.presets import TEST_VIT, VIT_SMALL_16
from keras_mim.models.pretraining_model import PretrainingModel, check_encoder
from keras_mim.models.reconstruction import pixel_reconstruction
from keras_mim.targets import PixelTarget
from keras_mim.utils import check_mask_ratio, check_positive_int


@keras.saving.register_keras_serializable(package="keras_mim")
class GMML(PretrainingModel):
    """GMML pretraining: corrupt groups of patches with noise or another image, rebuild them.

    `call(images, noise=None)` returns a dict: `pred` `(B, N, ph*pw*C)` (every patch
    rebuilt), `mask` `(B, N)` (1 = corrupted) and `corrupted` `(B, H, W, C)` (what the
    encoder saw). Which patches to corrupt is the mask generator's choice (default
    `"block"`: groups of connected patches, as GMML's blocks); how they are corrupted is
    this model's: per image, with probability `replace_probability` the corrupted
    patches take the pixels of another image of the batch (the previous one), else
    Gaussian noise with the image's own per-channel mean and std. The head is the
    official `RECHead`: `head_depth` Dense + GELU layers of the encoder's width, then a
    per-token Dense to `ph * pw * C` values (the official transposed convolution with
    kernel = stride = patch size is exactly that). The loss is the mean absolute error
    over the corrupted pixels (official `drop_only=1`), in float32.

    Differences from the official code, and why:
    - Blocks are aligned with the patch grid and hide a fixed number of tokens (static
      shapes for XLA); the official draws rectangles of any pixel size until 50-75% of the
      pixels are covered (`mask_ratio` 0.6 is the middle of that range).
    - Noise follows each image's channel statistics: the official draws N(0, 1) in
      ImageNet-normalised space; keras_mim images are in [0, 1] and not normalised.
    - The official picks the replacing image at random (itself included) and decides
      noise-or-replace once per image with probability 1/2, as here by default.
    - The head reads the encoder's final output; the official can also sum several
      blocks' outputs (`--recons_blocks`).

    Args:
        encoder: a `ViTEncoder` (no mask token needed); after pretraining, this object is
            what downstream models reuse.
        mask_generator: which patches to corrupt: a `MaskGenerator` or a name from
            `keras_mim.masking.MASK_GENERATORS` (default `"block"`).
        mask_ratio: fraction of patches corrupted when `mask_generator` is a name.
        replace_probability: chance, per image, that the corrupted patches come from
            another image of the batch instead of noise (official: 0.5).
        head_depth: Dense + GELU layers of the head before its output layer (official: 3).
        seed: optional int seed of the masks and the corruption.
        **kwargs: standard model arguments (name, dtype).

    Examples:
        >>> import numpy as np, keras
        >>> model = GMML.from_preset("gmml_vit_test", seed=0)
        >>> model.compile(optimizer=keras.optimizers.AdamW(1e-3))
        >>> history = model.fit(np.random.rand(8, 16, 16, 3).astype("float32"), epochs=1, verbose=0)
        >>> out = model(np.zeros((2, 16, 16, 3), "float32"))
        >>> tuple(out["pred"].shape), tuple(out["corrupted"].shape)
        ((2, 16, 48), (2, 16, 16, 3))
    """

    def __init__(self, encoder, mask_generator="block", mask_ratio=0.6, replace_probability=0.5, head_depth=3,
                 seed=None, **kwargs):
        super().__init__(**kwargs)
        self.encoder = check_encoder(encoder, "GMML")
        self.patch_size = encoder.patch_shape
        self.mask_generator = get_mask_generator(mask_generator, mask_ratio=mask_ratio, seed=seed,
                                                 patch_size=encoder.patch_size[0])
        self.mask_ratio = check_mask_ratio(self.mask_generator.mask_ratio, encoder.num_patches)
        self.mask_generator.num_visible(encoder.grid_shape)  # raises if it cannot mask this grid
        p = replace_probability
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ValueError(f"`replace_probability` must be a number in [0, 1], got {p!r}.")
        self.replace_probability = float(p)
        self.head_depth = check_positive_int(head_depth, "head_depth") if head_depth else 0
        self.target = PixelTarget(normalize=False)  # raw pixels: the figures and viz read it
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        width, policy = encoder.output_dim, self.dtype_policy
        self.head = [keras.layers.Dense(width, activation="gelu", dtype=policy, name=f"head_{i}")
                     for i in range(self.head_depth)]
        output_dim = self.target.output_dim(self.patch_size, encoder.num_channels)
        self.decoder = keras.layers.Dense(output_dim, dtype=policy, name="decoder")

    def build(self, images_shape=None):
        if not self.encoder.built:
            self.encoder.build()
        shape = (None, self.encoder.num_patches, self.encoder.output_dim)
        for layer in self.head + [self.decoder]:
            if not layer.built:
                layer.build(shape)
        self.built = True

    # ------------------------------------------------------------------ the method
    def corrupt(self, images, mask):
        """Fill the patches where `mask` `(B, N)` is 1 with noise or another image's
        pixels: the corrupted images `(B, H, W, C)`."""
        x = ops.cast(images, "float32")
        values = math.prod(self.patch_size) * x.shape[-1]  # P = ph * pw * C per token
        tokens = ops.repeat(ops.expand_dims(ops.cast(mask, "float32"), -1), values, axis=-1)  # (B, N, P)
        pixel_mask = unpatchify(tokens, self.patch_size, self.encoder.input_size + (x.shape[-1],))  # (B, H, W, C)
        mean = ops.mean(x, axis=(1, 2), keepdims=True)  # (B, 1, 1, C)
        std = ops.std(x, axis=(1, 2), keepdims=True)
        noise = mean + std * keras.random.normal(ops.shape(x), seed=self.seed_generator)
        other = ops.roll(x, 1, axis=0)  # the previous image of the batch
        draw = keras.random.uniform((ops.shape(x)[0], 1, 1, 1), seed=self.seed_generator)
        fill = ops.where(draw < self.replace_probability, other, noise)
        return ops.cast(x * (1.0 - pixel_mask) + fill * pixel_mask, images.dtype)

    def forward_encoder(self, corrupted, training=None):
        return self.encoder(corrupted, training=training)  # (B, prefix + N, D): every token

    def forward_decoder(self, latent):
        x = latent[:, self.encoder.num_prefix_tokens:]  # (B, N, D)
        for layer in self.head:
            x = layer(x)
        return self.decoder(x)  # (B, N, ph * pw * C)

    def forward_loss(self, images, pred, mask):
        target = self.target(images, patch_size=self.patch_size)  # (B, N, P) float32
        l1 = ops.mean(ops.abs(ops.cast(pred, "float32") - target), axis=-1)  # (B, N)
        return masked_mean(l1, mask)  # = the mean over every corrupted pixel value

    def call(self, images, noise=None, training=None):
        self.encoder.check_images(images)
        mask = self.random_masking(images, noise=noise)["mask"]  # (B, N), 1 = corrupted
        corrupted = self.corrupt(images, mask)
        pred = self.forward_decoder(self.forward_encoder(corrupted, training=training))
        return {"pred": pred, "mask": mask, "corrupted": corrupted}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if y_pred is None:
            y_pred = self(x, training=training)
        return self.add_layer_losses(self.forward_loss(x, y_pred["pred"], y_pred["mask"]))

    def reconstruct(self, images, noise=None):
        """Rebuilt images `(B, H, W, C)`, the corrupted-pixel mask `(B, H, W, 1)` and the
        token mask: `(reconstruction, pixel_mask, mask)`."""
        out = self(images, noise=noise, training=False)
        rec, pixel_mask = pixel_reconstruction(self.target, images, out["pred"], out["mask"], self.patch_size)
        return rec, pixel_mask, out["mask"]

    def get_config(self):
        config = super().get_config()
        config.update(
            encoder=keras.saving.serialize_keras_object(self.encoder),
            mask_generator=keras.saving.serialize_keras_object(self.mask_generator),
            mask_ratio=self.mask_ratio,
            replace_probability=self.replace_probability,
            head_depth=self.head_depth,
            seed=self.seed,
        )
        return config


register_method(MethodSpec(
    name="gmml", model=GMML, family="corrupted", pixels=True,
    description="GMML: groups of patches corrupted by noise or another image, L1 on the corrupted pixels.",
    paper="Atito et al., 2021 (SiT; GMML)", code="Sara-Ahmed/GMML",
    presets={
        "gmml_vit_small_patch16": dict(
            description="GMML ViT-S/16: block corruption of 60% of the patches, noise or another image.",
            encoder=VIT_SMALL_16),
        "gmml_vit_test": dict(description="GMML on the test ViT (16 px, patch 4), block corruption at 0.5.",
                              encoder=TEST_VIT, kwargs={"mask_ratio": 0.5}),
    },
))
