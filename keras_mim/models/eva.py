"""EVA-style pretraining: EVA: Exploring the Limits of Masked Visual Representation Learning
at Scale (Fang et al., CVPR 2023; official code baaivision/EVA, `EVA-01/eva/modeling_pretrain.py`
and `engine_for_pretraining.py`).

SimMIM's mask-token student regressing a frozen teacher's features (CLIP in the paper) at
the hidden tokens with a negative cosine loss.
"""

import keras

from keras_mim.masking import BlockMaskGenerator
from keras_mim.models.methods import MethodSpec, register_method
from keras_mim.models.presets import TEST_VIT, VIT_BASE_16
from keras_mim.models.simmim import SimMIM
from keras_mim.targets.teacher_features import teacher_target


@keras.saving.register_keras_serializable(package="keras_mim")
class EVA(SimMIM):
    """EVA-style pretraining: mask tokens in the encoder, a linear head, negative cosine
    against a frozen teacher's features at the hidden tokens.

    The student encodes all N tokens, the hidden ones' patch embeddings replaced by its
    mask token (as `SimMIM`); a Dense head (the official `lm_head`) maps each output
    token to the teacher's width `D`. The teacher (`TeacherFeatures`, frozen, no
    gradient) sees the whole image; its features at the hidden tokens are the target,
    and the loss is `1 - cos(pred, target)` averaged over hidden tokens, in float32.
    Masks: BEiT-style blocks hiding 40% (official: 105 of 256 patches, at least 16 per
    block). EVA is `SimMIM(encoder, target=TeacherFeatures(teacher, loss="cosine"),
    mask_generator="block", mask_ratio=0.4)`, built from a `teacher` model and recorded
    as a method of its own.

    Differences from the official code, and why:
      - the loss is `1 - cos` where the official is `-cos`: the same gradients, shifted
        by one so that 0 is a perfect match and the loss stays positive;
      - the teacher features: the official regresses CLIP ViT-L/14's output after its
        final LayerNorm and projection (`encode_image`, [CLS] dropped). A `ViTEncoder`
        teacher gives its last block's output before the final norm, here standardised
        per token without affine (`normalize="layer_norm"`, the final norm without its
        scale and shift); to regress a CLIP-like model's output as it is, pass
        `TeacherFeatures(clip, layers=[...], normalize=None, loss="cosine")`;
      - the student is keras_mim's pre-norm ViT with a cls token and a fixed sin-cos
        position embedding, not EVA's (BEiT-style, with relative position bias options);
        teacher and student must cut the image into the same token grid (the official
        trains a patch-14 teacher against a patch-14 student, so the grids agree too).

    `call(images, noise=None)` returns `pred` `(B, N, D)` and `mask` `(B, N)` (1 = hidden).

    Args:
        encoder: an encoder with a mask token (`ViTEncoder(mask_token=True)`; presets
            build it so).
        teacher: a Keras model (a `ViTEncoder`, a functional model such as a keras-hub
            backbone, ...; wrapped as `TeacherFeatures(teacher, teacher_layers,
            loss=loss)`, frozen), a `TeacherFeatures` of one layer, or its config.
        teacher_layers: the ONE teacher layer to regress, when `teacher` is a model
            (ViTEncoder: a block index, default the last; functional: a layer name,
            default its output).
        loss: `"cosine"` (default, EVA) or `"mse"`; a `TeacherFeatures` keeps its own.
        mask_generator: `"block"` (BEiT blocks of at least `min_mask_patches` tokens),
            any name of `keras_mim.masking.MASK_GENERATORS`, or a `MaskGenerator`.
        mask_ratio: fraction hidden when the generator is built here (EVA: 0.4).
        min_mask_patches: smallest block, in tokens, of the `"block"` generator
            (EVA: 16).
        seed: optional int seed of the mask generator built here.
        **kwargs: standard model arguments (name, dtype).

    Examples:
        >>> import numpy as np, keras
        >>> from keras_mim.models import ViTEncoder
        >>> teacher = ViTEncoder(image_size=16, patch_size=4, embed_dim=24, depth=1, num_heads=2)
        >>> model = EVA.from_preset("eva_vit_test", teacher=teacher, seed=0)
        >>> model.compile(optimizer=keras.optimizers.AdamW(1e-3))
        >>> history = model.fit(np.random.rand(8, 16, 16, 3).astype("float32"), epochs=1, verbose=0)
        >>> tuple(model(np.zeros((2, 16, 16, 3), "float32"))["pred"].shape)
        (2, 16, 24)
    """

    def __init__(self, encoder, teacher=None, teacher_layers=None, loss=None, mask_generator="block", mask_ratio=0.4,
                 min_mask_patches=16, seed=None, **kwargs):
        target = teacher_target(teacher, teacher_layers, loss, encoder)
        if isinstance(mask_generator, str) and mask_generator == "block":
            mask_generator = BlockMaskGenerator(mask_ratio, min_num_patches=min_mask_patches, seed=seed)
        super().__init__(encoder, mask_generator=mask_generator, mask_ratio=mask_ratio, target=target, seed=seed,
                         **kwargs)
        self.min_mask_patches = min_mask_patches

    @property
    def teacher(self):
        """The frozen teacher's features (`TeacherFeatures`): the target."""
        return self.target

    def get_config(self):
        config = super().get_config()
        for key in ("target", "mask_patch_size"):  # the teacher is the target; no SimMIM cells
            config.pop(key)
        config.update(teacher=keras.saving.serialize_keras_object(self.target), loss=self.target.loss,
                      min_mask_patches=self.min_mask_patches)
        return config


register_method(MethodSpec(
    name="eva", model=EVA, family="features", teacher=True,
    description="EVA-style: mask tokens, block masks, negative cosine to a frozen teacher's features at hidden "
                "tokens.",
    paper="Fang et al., CVPR 2023", code="baaivision/EVA",
    presets={
        "eva_style_vit_base_patch16": dict(
            description="EVA-style ViT-B/16: mask tokens, block masks at 0.4 (blocks of 16+), negative cosine to "
                        "a frozen teacher's last layer; give a teacher on the same 14 x 14 grid.",
            encoder=VIT_BASE_16, kwargs={"mask_ratio": 0.4, "min_mask_patches": 16}),
        "eva_vit_test": dict(
            description="EVA-style on the test ViT: block masks at 0.4 (blocks of 2+); give a teacher.",
            encoder=TEST_VIT, kwargs={"mask_ratio": 0.4, "min_mask_patches": 2}),
    },
))
