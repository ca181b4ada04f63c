"""MILAN-style pretraining: MILAN: Masked Image Pretraining on Language Assisted Representation
(Hou et al., 2022; official code zejiangh/MILAN, `models_milan.py`, `engine_pretrain.py`).

MAE's visible-only encoder and decoder, predicting a frozen teacher's features (CLIP in the
paper) instead of pixels, with masks guided by the teacher's attention.
"""

import keras

from keras_mim.masking import GuidedMaskGenerator
from keras_mim.models.masked_autoencoder import MaskedAutoencoder
from keras_mim.models.methods import MethodSpec, register_method
from keras_mim.models.presets import MAE_DECODER, TEST_DECODER, TEST_VIT, VIT_BASE_16
from keras_mim.targets.teacher_features import teacher_guided_masking, teacher_target


@keras.saving.register_keras_serializable(package="keras_mim")
class MILAN(MaskedAutoencoder):
    """MILAN-style pretraining: MAE whose decoder predicts a frozen teacher's features at
    the hidden tokens.

    The encoder sees the visible tokens only; the MAE decoder (mask tokens, all N
    positions) ends in a Dense to the teacher's width `D`. The teacher
    (`TeacherFeatures`, frozen, no gradient) sees the whole image; the loss is
    `1 - cos(pred, target)` averaged over hidden tokens, in float32. MILAN is
    `MaskedAutoencoder(encoder, target=TeacherFeatures(teacher, loss="cosine"))` with the
    official attention-guided masks, built from a `teacher` model and recorded as a
    method of its own.

    Masks (official `--attn_mask`): the default `GuidedMaskGenerator(sample="visible")`
    keeps `K = int(N * (1 - mask_ratio))` tokens drawn without replacement in
    proportion to the teacher's last-block [CLS] attention (mean over heads), so what
    the teacher attends to tends to stay visible; a teacher without attention (anything
    but a ViTEncoder with a cls token) gets uniformly random masks. Ratio 0.75.

    Differences from the official code, and why:
      - the decoder is MAE's: every decoder block updates all tokens. MILAN's
        "prompting decoder" keeps the visible tokens fixed (they only serve as keys and
        values of the mask tokens' attention); it is NOT implemented here;
      - the loss covers the hidden tokens only; the official `2 - 2 cos` of L2-normalised
        vectors is averaged over ALL tokens, the [CLS] and the visible ones included.
        `1 - cos` is half of it (the same direction of the gradient);
      - the teacher features: the official regresses CLIP's output after its final
        norm and projection; a `ViTEncoder` teacher gives its last block's output
        before the final norm, standardised per token without affine
        (`normalize="layer_norm"`). Pass `TeacherFeatures(clip, layers=[...],
        normalize=None, loss="cosine")` to regress a CLIP-like output as it is;
      - MILAN's optional prototype (clustering) loss is not implemented.

    `call(images, noise=None)` returns MAE's dict: `pred` `(B, N, D)`, `mask` `(B, N)`
    (1 = hidden) and `ids_restore` `(B, N)`; `noise` fixes the mask (lowest kept).

    Args:
        encoder: a `ViTEncoder`.
        teacher: a Keras model (a `ViTEncoder`, a functional model such as a keras-hub
            backbone, ...; wrapped as `TeacherFeatures(teacher, teacher_layers,
            loss=loss)`, frozen), a `TeacherFeatures` of one layer, or its config.
        decoder: as `MaskedAutoencoder` (a `MAEDecoder`, a dict of its arguments, or
            None for 512 x 8 blocks x 16 heads).
        teacher_layers: the ONE teacher layer to predict, when `teacher` is a model
            (ViTEncoder: a block index, default the last; functional: a layer name,
            default its output).
        loss: `"cosine"` (default) or `"mse"`; a `TeacherFeatures` keeps its own.
        mask_generator: None (teacher-guided, `GuidedMaskGenerator(sample="visible")`),
            a name from `keras_mim.masking.MASK_GENERATORS` or a `MaskGenerator`.
        mask_ratio: fraction of hidden tokens (MILAN: 0.75).
        seed: optional int seed of the mask generator built here.
        **kwargs: standard model arguments (name, dtype).

    Examples:
        >>> import numpy as np, keras
        >>> from keras_mim.models import ViTEncoder
        >>> teacher = ViTEncoder(image_size=16, patch_size=4, embed_dim=24, depth=1, num_heads=2)
        >>> model = MILAN.from_preset("milan_vit_test", teacher=teacher, seed=0)
        >>> model.compile(optimizer=keras.optimizers.AdamW(1e-3))
        >>> history = model.fit(np.random.rand(8, 16, 16, 3).astype("float32"), epochs=1, verbose=0)
        >>> tuple(model(np.zeros((2, 16, 16, 3), "float32"))["pred"].shape)
        (2, 16, 24)
    """

    def __init__(self, encoder, teacher=None, decoder=None, teacher_layers=None, loss=None, mask_generator=None,
                 mask_ratio=0.75, seed=None, **kwargs):
        target = teacher_target(teacher, teacher_layers, loss, encoder)
        if mask_generator is None or (isinstance(mask_generator, str) and mask_generator == "guided"):
            mask_generator = GuidedMaskGenerator(mask_ratio, seed=seed, sample="visible")
        super().__init__(encoder, decoder=decoder, mask_generator=mask_generator, mask_ratio=mask_ratio,
                         target=target, seed=seed, **kwargs)

    @property
    def teacher(self):
        """The frozen teacher's features (`TeacherFeatures`): the target."""
        return self.target

    def random_masking(self, images, noise=None):
        """MAE masking; a `GuidedMaskGenerator` follows the teacher's [CLS] attention."""
        return teacher_guided_masking(self.mask_generator, self.target, images, self.encoder.grid_shape, noise)

    def get_config(self):
        config = super().get_config()
        for key in ("target", "decoder_mask_generator", "decoder_mask_ratio"):  # the teacher is the target
            config.pop(key)
        config.update(teacher=keras.saving.serialize_keras_object(self.target), loss=self.target.loss)
        return config


register_method(MethodSpec(
    name="milan", model=MILAN, family="features", teacher=True,
    description="MILAN-style: visible-only encoder and MAE decoder predicting a frozen teacher's features at "
                "hidden tokens, attention-guided masks.",
    paper="Hou et al., 2022 (MILAN)", code="zejiangh/MILAN",
    presets={
        "milan_style_vit_base_patch16": dict(
            description="MILAN-style ViT-B/16, decoder 512 x 8 x 16 (MAE's, not MILAN's prompting decoder), "
                        "teacher-attention masks at 0.75, cosine loss; give a teacher on the same 14 x 14 grid.",
            encoder=VIT_BASE_16, decoder=MAE_DECODER, kwargs={"mask_ratio": 0.75}),
        "milan_vit_test": dict(description="MILAN-style on the test ViT; give a teacher.", encoder=TEST_VIT,
                               decoder=TEST_DECODER),
    },
))
