"""MR-MAE: Mimic before Reconstruct: Enhancing Masked Autoencoders with Feature Mimicking
(Gao et al., IJCV 2023)."""

import keras
from keras import ops

from keras_mim.losses import mse_per_token
from keras_mim.models.masked_autoencoder import MaskedAutoencoder
from keras_mim.models.methods import MethodSpec, register_method
from keras_mim.models.presets import TEST_DECODER, TEST_VIT, VIT_BASE_16, MAE_DECODER
from keras_mim.targets.teacher_features import get_teacher, teacher_guided_masking


@keras.saving.register_keras_serializable(package="keras_mim")
class MRMAE(MaskedAutoencoder):
    """MR-MAE: MAE's pixel loss on hidden tokens after the decoder, plus a mimic loss on
    the visible encoder tokens (before the decoder) against a frozen teacher.

    High-level targets (CLIP / DINO features) supervise the 25% visible tokens straight
    out of the encoder, low-level targets (normalised pixels) the 75% hidden ones after
    the decoder, so the two objectives act on different tokens. Each chosen teacher
    layer gets a Dense projection of the encoder's visible output tokens; the mimic
    term is the MSE against the teacher's features (LayerNorm without affine) at the
    same positions, averaged over tokens and layers:
    `loss = pixel + mimic_weight * mimic`.

    The official MR-MAE code is not public (its repository, Alpha-VL/ConvMAE, links only
    the paper), so the target normalisation (LayerNorm without affine, as MaskAlign by
    the same group), the default teacher layer (the last block) and weight (1.0) are
    this library's choices; all three are arguments.

    Everything else is `MaskedAutoencoder` (decoder, target, masking, `reconstruct`). A
    `GuidedMaskGenerator(sample="visible")` as `mask_generator` is fed the teacher's
    [CLS] attention (focused mimicking: salient tokens tend to stay visible).

    `call(images, noise=None)` returns MAE's dict (`pred`, `mask`, `ids_restore`) plus
    `ids_keep` `(B, K)` and `mimic`, a list of `(B, K, D_t)` projections, one per
    teacher layer.

    Args:
        encoder: a `ViTEncoder`.
        teacher: a Keras model (wrapped as `TeacherFeatures(teacher, teacher_layers,
            normalize="layer_norm")`, frozen) or a
            `keras_mim.targets.teacher_features.TeacherFeatures`.
        decoder: as `MaskedAutoencoder`.
        teacher_layers: teacher layers when `teacher` is a model (ViTEncoder: block
            indices, default its last block; functional: layer names, default its outputs).
        mimic_weight: weight of the mimic term (default 1.0).
        mask_generator: as `MaskedAutoencoder`.
        mask_ratio: as `MaskedAutoencoder`.
        norm_pix_loss: as `MaskedAutoencoder`.
        norm_pix_eps: as `MaskedAutoencoder`.
        target: as `MaskedAutoencoder`.
        seed: as `MaskedAutoencoder`.
        **kwargs: standard model arguments (name, dtype).

    Examples:
        >>> import numpy as np, keras
        >>> from keras_mim.models import ViTEncoder
        >>> teacher = ViTEncoder(image_size=16, patch_size=4, embed_dim=24, depth=1, num_heads=2)
        >>> model = MRMAE.from_preset("mrmae_vit_test", teacher=teacher)
        >>> model.compile(optimizer=keras.optimizers.AdamW(1e-3))
        >>> history = model.fit(np.random.rand(8, 16, 16, 3).astype("float32"), epochs=1, verbose=0)
        >>> [tuple(m.shape) for m in model(np.zeros((2, 16, 16, 3), "float32"))["mimic"]]
        [(2, 4, 24)]
    """

    def __init__(self, encoder, teacher=None, decoder=None, teacher_layers=None, mimic_weight=1.0,
                 mask_generator="random", mask_ratio=0.75, norm_pix_loss=None, norm_pix_eps=None, target=None,
                 seed=None, **kwargs):
        if isinstance(mimic_weight, bool) or not isinstance(mimic_weight, (int, float)) or not mimic_weight >= 0:
            raise ValueError(f"`mimic_weight` must be a float >= 0, got {mimic_weight!r}.")
        super().__init__(encoder, decoder=decoder, mask_generator=mask_generator, mask_ratio=mask_ratio,
                         norm_pix_loss=norm_pix_loss, norm_pix_eps=norm_pix_eps, target=target, seed=seed,
                         **kwargs)
        self.teacher = get_teacher(teacher, teacher_layers, normalize="layer_norm", default_vit_layers=[-1],
                                   student=encoder)
        # Before any training: same token grid, known widths (raises otherwise).
        self.teacher_dims = self.teacher.check_compatible(encoder.image_size + (encoder.num_channels,),
                                                          encoder.num_patches)
        self.mimic_heads = [keras.layers.Dense(d, dtype=self.dtype_policy, name=f"mimic_head_{i}")
                            for i, d in enumerate(self.teacher_dims)]
        self.mimic_weight = float(mimic_weight)

    def build(self, images_shape=None):
        super().build(images_shape)
        for head in self.mimic_heads:
            if not head.built:
                head.build((None, None, self.encoder.output_dim))

    # ------------------------------------------------------------------ the method
    def random_masking(self, images, noise=None):
        """MAE masking; a `GuidedMaskGenerator` follows the teacher's [CLS] attention."""
        return teacher_guided_masking(self.mask_generator, self.teacher, images, self.encoder.grid_shape, noise)

    def forward_mimic(self, latent):
        """Project the visible encoder tokens `(B, [1 +] K, D)` (cls dropped), one head
        per teacher layer: list of `(B, K, D_t)`."""
        visible = latent[:, self.encoder.num_prefix_tokens:]  # (B, K, D)
        return [head(visible) for head in self.mimic_heads]

    def forward_mimic_loss(self, images, mimic, ids_keep):
        """MSE against the teacher's normalised features at the visible positions,
        mean over tokens and teacher layers (float32)."""
        targets = self.teacher.features(images, ids_keep=ids_keep)  # T x (B, K, D_t)
        per_layer = [ops.mean(mse_per_token(m, t)) for m, t in zip(mimic, targets)]
        return ops.mean(ops.stack(per_layer))

    def call(self, images, noise=None, training=None):
        latent, masking = self.forward_encoder(images, noise=noise, training=training)  # (B, 1 + K, D)
        return {
            "pred": self.forward_decoder(latent, masking, training=training)["pred"],  # (B, N, P)
            "mask": masking["mask"],
            "ids_restore": masking["ids_restore"],
            "ids_keep": masking["ids_keep"],
            "mimic": self.forward_mimic(latent),
        }

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if y_pred is None:
            y_pred = self(x, training=training)
        pixel = super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)
        return pixel + self.mimic_weight * self.forward_mimic_loss(x, y_pred["mimic"], y_pred["ids_keep"])

    def get_config(self):
        config = super().get_config()
        config.update(teacher=keras.saving.serialize_keras_object(self.teacher), mimic_weight=self.mimic_weight)
        return config


register_method(MethodSpec(
    name="mrmae", model=MRMAE, family="features", teacher=True, pixels=True,
    description="MR-MAE: MAE plus mimicking a frozen teacher on visible tokens.",
    paper="Gao et al., 2023 (Mimic before Reconstruct)",
    presets={
        "mrmae_vit_base_patch16": dict(
            description="MR-MAE ViT-B/16: MAE pixel loss on hidden tokens + mimic loss on visible ones; give a "
                        "teacher.",
            encoder=VIT_BASE_16, decoder=MAE_DECODER),
        "mrmae_vit_test": dict(description="MR-MAE on the test ViT; give a teacher.", encoder=TEST_VIT,
                               decoder=TEST_DECODER),
    },
))
