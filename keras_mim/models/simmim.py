"""SimMIM: a Simple Framework for Masked Image Modeling (Xie et al., 2022).

Official code: microsoft/SimMIM, `models/simmim.py`. The encoder sees all N tokens, the
hidden ones replaced by a learned mask token; a 1x1 conv + pixel shuffle predicts the
image; the loss is L1 on hidden pixels. With `target=` (e.g. HOG) the same model is
MaskFeat-style (Wei et al., CVPR 2022; facebookresearch/SlowFast): a per-token linear
head and MSE on hidden tokens.
"""

import keras
from keras import ops

from keras_mim.layers.patching import unpatchify
from keras_mim.layers.pixel_shuffle import PixelShuffleHead
from keras_mim.losses import masked_mean
from keras_mim.masking import SimMIMMaskGenerator, get_mask_generator
from keras_mim.models.methods import MethodSpec, register_method
from keras_mim.models.presets import TEST_VIT, VIT_BASE_16
from keras_mim.models.pretraining_model import PretrainingModel, check_encoder, encoder_stride, feature_map
from keras_mim.models.reconstruction import make_target
from keras_mim.targets import PixelTarget
from keras_mim.utils import check_mask_ratio

@keras.saving.register_keras_serializable(package="keras_mim")
class SimMIM(PretrainingModel):
    """SimMIM pretraining: mask tokens in the encoder, pixel-shuffle head, L1 on hidden pixels.

    `call(images, noise=None)` returns a dict: `pred` (the predicted image
    `(B, H, W, C)`; with a `target`, per-token predictions `(B, N, P)`) and `mask`
    `(B, N)` (1 = hidden). The encoder encodes all N tokens (plus its cls token), the
    hidden ones' patch embeddings replaced by its mask token before the position
    embedding. Its patch tokens form a `(gh, gw, D)` map on `output_grid_shape`; a 1x1
    conv to `s*s*C` and a pixel shuffle by the stride `s = image_size / output_grid_shape`
    give the image. Loss (official): `sum(|x - pred| * m) / (sum(m) + 1e-5) / C`, `m` the
    token mask repeated over each patch's pixels, in float32.

    With `target` (a `keras_mim.targets.Target` or a name such as `"hog"`), a Dense head
    maps each token to `target.output_dim` values, and the loss is the target's per-token
    loss (MSE; a `TeacherFeatures`' own, e.g. cosine) averaged over hidden tokens
    (MaskFeat; EVA-style with a frozen teacher's features, see `EVA`).

    Args:
        encoder: an encoder with a mask token (`ViTEncoder(mask_token=True)`; presets
            build it so). After pretraining, this object is what downstream models reuse.
        mask_generator: `"simmim"` (random `mask_patch_size` cells, count rounded up), any
            name of `keras_mim.masking.MASK_GENERATORS`, or a `MaskGenerator`.
        mask_ratio: fraction hidden when `mask_generator` is a name (SimMIM: 0.6).
        mask_patch_size: side in pixels of the `"simmim"` masking cells, a multiple of the
            patch size dividing the image; None: twice the patch size (32 for ViT/16, as
            the paper), or the patch size if that does not divide the image. Used only
            when `mask_generator` is the name `"simmim"`.
        target: None (pixels, the official SimMIM head and L1 loss), or a `Target` / name.
        seed: optional int seed of the mask generator when built from a name.
        **kwargs: standard model arguments (name, dtype).

    Examples:
        >>> import numpy as np, keras
        >>> model = SimMIM.from_preset("simmim_vit_test", seed=0)
        >>> model.compile(optimizer=keras.optimizers.AdamW(1e-3))
        >>> history = model.fit(np.random.rand(8, 16, 16, 3).astype("float32"), epochs=1, verbose=0)
        >>> out = model.predict(np.zeros((2, 16, 16, 3), "float32"), verbose=0)
        >>> out["pred"].shape, out["mask"].shape
        ((2, 16, 16, 3), (2, 16))
    """

    encoder_defaults = {"mask_token": True}  # ViTEncoder arguments this method needs (see presets)

    def __init__(self, encoder, mask_generator="simmim", mask_ratio=0.6, mask_patch_size=None,
                 target=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.encoder = check_encoder(encoder, "SimMIM", mask_token=True)
        self.patch_size = encoder.patch_size
        self.target = None if target is None else make_target(target, encoder=encoder)
        self.mask_generator = self.make_mask_generator(mask_generator, mask_ratio, mask_patch_size, seed)
        self.mask_patch_size = getattr(self.mask_generator, "mask_patch_size", None)
        # The generator's own ratio rules; fail now if it leaves no token visible.
        self.mask_ratio = check_mask_ratio(self.mask_generator.mask_ratio, encoder.num_patches)
        self.mask_generator.num_visible(encoder.grid_shape)
        self.decoder = self.make_decoder()
        self.seed = seed

    def default_mask_patch_size(self):
        """Twice the patch size if it divides the image, else the patch size."""
        (h, w), p = self.encoder.image_size, self.patch_size[0]
        return 2 * p if h % (2 * p) == 0 and w % (2 * p) == 0 else p

    def make_mask_generator(self, mask_generator, mask_ratio, mask_patch_size, seed):
        ph, pw = self.patch_size
        if isinstance(mask_generator, str) and mask_generator == "simmim":
            if ph != pw:
                raise ValueError(f"The 'simmim' mask generator needs square patches, got patch size {(ph, pw)}.")
            size = self.default_mask_patch_size() if mask_patch_size is None else mask_patch_size
            h, w = self.encoder.image_size
            if isinstance(size, bool) or not isinstance(size, int) or size < 1 or size % ph or h % size or w % size:
                raise ValueError(
                    f"`mask_patch_size`={mask_patch_size!r} must be a multiple of the patch size {ph} "
                    f"that divides the image size {(h, w)}."
                )
            return get_mask_generator("simmim", mask_ratio=mask_ratio, seed=seed, patch_size=ph,
                                      mask_patch_size=size)
        # `mask_patch_size` (e.g. from a preset) configures the "simmim" name only.
        generator = get_mask_generator(mask_generator, mask_ratio=mask_ratio, seed=seed, patch_size=ph)
        simmim = isinstance(generator, SimMIMMaskGenerator)
        if simmim and generator.model_patch_size != ph:
            raise ValueError(
                f"The SimMIMMaskGenerator's `model_patch_size`={generator.model_patch_size} must equal "
                f"the encoder's patch size {ph}."
            )
        return generator

    def make_decoder(self):
        """Pixel-shuffle head (pixels) or a per-token Dense to `target.output_dim` values."""
        enc = self.encoder
        if self.target is None:
            return PixelShuffleHead(encoder_stride(enc), enc.num_channels, dtype=self.dtype_policy, name="decoder")
        if tuple(enc.output_grid_shape) != tuple(enc.grid_shape):
            raise ValueError(
                f"A per-token `target` needs one output token per patch, but the encoder's output grid "
                f"{enc.output_grid_shape} differs from its patch grid {enc.grid_shape}; use `target=None`."
            )
        output_dim = self.target.output_dim(self.patch_size, enc.num_channels)  # raises if incompatible
        return keras.layers.Dense(output_dim, dtype=self.dtype_policy, name="decoder")

    def build(self, images_shape=None):
        # Sub-models deserialised from a `.keras` file (or shared) arrive already built.
        if not self.encoder.built:
            self.encoder.build()
        if not self.decoder.built:
            gh, gw = self.encoder.output_grid_shape
            d = self.encoder.output_dim
            self.decoder.build((None, gh, gw, d) if self.target is None else (None, gh * gw, d))
        self.built = True

    # ------------------------------------------------------------------ the method
    def forward_encoder(self, images, mask, training=None):
        return self.encoder(images, token_mask=mask, training=training)  # (B, prefix + N, D)

    def forward_decoder(self, latent):
        if self.target is not None:
            return self.decoder(latent[:, self.encoder.num_prefix_tokens :])  # (B, N, P)
        return self.decoder(feature_map(self.encoder, latent))  # (B, gh, gw, D) -> (B, H, W, C)

    def pixel_mask(self, mask):
        """Token mask `(B, N)` -> pixel mask `(B, H, W, 1)`, each token over its patch."""
        (gh, gw), (ph, pw) = self.encoder.grid_shape, self.patch_size
        m = ops.reshape(mask, (-1, gh, gw))
        m = ops.repeat(ops.repeat(m, ph, axis=1), pw, axis=2)  # (B, H, W)
        return ops.expand_dims(m, -1)

    def forward_loss(self, images, pred, mask):
        if self.mask_generator.num_visible(self.encoder.grid_shape) == self.encoder.num_patches:
            mask = ops.ones_like(mask)  # nothing hidden (ratio 0): score everything
        if self.target is not None:
            target = self.target(images, patch_size=self.patch_size)  # (B, N, P)
            return masked_mean(self.target.loss_per_token(pred, target), mask)
        m = ops.cast(self.pixel_mask(mask), "float32")  # (B, H, W, 1)
        l1 = ops.abs(ops.cast(images, "float32") - ops.cast(pred, "float32"))  # (B, H, W, C)
        return ops.sum(l1 * m) / (ops.sum(m) + 1e-5) / self.encoder.num_channels

    def call(self, images, noise=None, training=None):
        self.encoder.check_images(images)
        mask = self.random_masking(images, noise=noise)["mask"]  # (B, N)
        latent = self.forward_encoder(images, mask, training=training)
        return {"pred": self.forward_decoder(latent), "mask": mask}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if y_pred is None:
            y_pred = self(x, training=training)
        loss = self.forward_loss(x, y_pred["pred"], y_pred["mask"])
        return self.add_layer_losses(loss)

    def reconstruct(self, images, noise=None):
        """Predicted images `(B, H, W, C)`, the hidden-pixel mask `(B, H, W, 1)` and the
        token mask: `(reconstruction, pixel_mask, mask)`, as `MaskedAutoencoder.reconstruct`.

        Needs pixel predictions (`target=None`, or a `PixelTarget`, whose normalised
        predictions are mapped back with each patch's own statistics).
        """
        if self.target is not None and not isinstance(self.target, PixelTarget):
            raise ValueError(
                f"`reconstruct` needs pixel predictions; this model predicts {type(self.target).__name__} values."
            )
        out = self(images, noise=noise, training=False)
        pred = ops.cast(out["pred"], "float32")
        if self.target is not None:
            pred = self.target.denormalize(pred, images, self.patch_size)
            pred = unpatchify(pred, self.patch_size, self.encoder.image_size + (self.encoder.num_channels,))
        return pred, self.pixel_mask(out["mask"]), out["mask"]

    def get_config(self):
        config = super().get_config()
        config.update(
            encoder=keras.saving.serialize_keras_object(self.encoder),
            mask_generator=keras.saving.serialize_keras_object(self.mask_generator),
            mask_ratio=self.mask_ratio,
            mask_patch_size=self.mask_patch_size,
            target=None if self.target is None else keras.saving.serialize_keras_object(self.target),
            seed=self.seed,
        )
        return config


register_method(MethodSpec(
    name="simmim", model=SimMIM, family="corrupted", pixels=True,
    description="SimMIM: mask tokens, coarse masks, pixel-shuffle head, L1 on hidden pixels.",
    paper="Xie et al., CVPR 2022", code="microsoft/SimMIM",
    presets={
        "simmim_vit_base_patch16": dict(
            description="SimMIM ViT-B/16: mask tokens, 32 px mask cells at ratio 0.6, pixel-shuffle head, L1.",
            encoder=VIT_BASE_16, kwargs={"mask_ratio": 0.6, "mask_patch_size": 32}),
        "simmim_vit_test": dict(
            description="SimMIM on the test ViT (16 px, patch 4): 8 px mask cells.",
            encoder=TEST_VIT, kwargs={"mask_patch_size": 8}),
    },
))

MASKFEAT = {"target": "hog", "mask_generator": "block", "mask_ratio": 0.4}
register_method(MethodSpec(
    name="maskfeat", model=SimMIM, family="corrupted", kwargs=MASKFEAT, cli_preset="maskfeat_vit_test",
    description="MaskFeat: mask tokens, block masks, HOG features of hidden patches.",
    paper="Wei et al., CVPR 2022", code="facebookresearch/SlowFast",
    presets={
        "maskfeat_vit_base_patch16": dict(
            description="MaskFeat ViT-B/16: mask tokens, block masks at 0.4, HOG target (9 bins, 8 px cells).",
            encoder=VIT_BASE_16, kwargs=MASKFEAT),
        # HOG needs whole 4 px cells in a patch: the test ViT's 4 px patches, not the 2 px of the digits preset.
        "maskfeat_vit_test": dict(
            description="MaskFeat on the test ViT: HOG target with 4 px cells, block masks at 0.4.",
            encoder=TEST_VIT,
            kwargs={**MASKFEAT, "target": {"class_name": "keras_mim>HOGTarget", "config": {"cell_size": 4}}}),
    },
))
