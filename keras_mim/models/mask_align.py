"""MaskAlign: Stare at What You See: Masked Image Modeling without Reconstruction
(Xue et al., CVPR 2023; official code OpenPerceptionX/maskalign, `models_pretrain.py`)."""

import keras
import numpy as np
from keras import ops

from keras_mim.masking import GuidedMaskGenerator, get_mask_generator
from keras_mim.models.methods import MethodSpec, register_method
from keras_mim.models.presets import TEST_VIT, VIT_BASE_16
from keras_mim.models.pretraining_model import PretrainingModel, check_encoder
from keras_mim.targets.teacher_features import get_teacher, is_block_encoder, teacher_guided_masking
from keras_mim.utils import check_mask_ratio

TOP_K_TEACHER_LAYERS = 5  # the official recipe aligns the top 5 teacher layers (`--loss_weights top5`)


def smooth_l1(pred, target, beta=1.0):
    """Mean smooth-L1 (`F.smooth_l1_loss`) over all values, float32:
    `0.5 e^2 / beta` where `|e| < beta`, else `|e| - 0.5 beta`.

    Examples:
        >>> import numpy as np
        >>> round(float(smooth_l1(np.array([[0.5, 3.0]]), np.zeros((1, 2)))), 4)
        1.3125
    """
    pred, target = ops.cast(pred, "float32"), ops.cast(target, "float32")
    return ops.mean(keras.losses.huber(target, pred, delta=beta)) / beta  # Huber / beta = smooth-L1


def dynamic_alignment_init(num_teacher_layers, num_student_layers):
    """Initial layer-mixing matrix `(T, S)`: identity + 0.01, the identity aligned at the
    top layers (teacher layer `t` of the last `T` starts on student block `S - T + t`),
    as the official `torch.eye(depth) + 0.01` restricted to the top-`T` rows."""
    t, s = num_teacher_layers, num_student_layers
    return np.eye(t, s, k=s - t, dtype="float32") + 0.01


@keras.saving.register_keras_serializable(package="keras_mim")
class MaskAlign(PretrainingModel):
    """MaskAlign pretraining: align visible student features with a frozen teacher's; no decoder.

    The student encoder sees only the visible tokens; a frozen teacher (CLIP, DINO, any
    Keras model, through `keras_mim.targets.teacher_features.TeacherFeatures`) sees the
    whole image. The outputs of the student blocks `student_layers` (before the final
    norm) are mixed by the learnable "Dynamic Alignment" matrix `(T, S)` (init identity
    + 0.01), projected per teacher layer by a Dense head, and aligned with the teacher
    features of `T` layers (LayerNorm without affine) at the visible positions, plus
    the [CLS] token when both have one, by smooth-L1 (`2 * F.smooth_l1_loss`, beta 1,
    mean over tokens and features, then over layers), as the official code.

    Masks are guided by the teacher's attention: the default `GuidedMaskGenerator(sample=
    "visible")` keeps `K` tokens drawn without replacement in proportion to the teacher's
    last-block [CLS] attention (official `attention_masking`). A teacher without
    attention (anything but a ViTEncoder with a cls token) gets uniformly random masks.

    As in the official code, the student's final norm gets no gradient here (Keras
    warns about it on TensorFlow and PyTorch); it is trained when fine-tuning. The
    official recipe also keeps the alignment matrix out of weight decay: with AdamW, call
    `optimizer.exclude_from_weight_decay(var_names=["mixing"])` before compiling.

    `call(images, noise=None)` returns a dict: `pred` (list of `(B, [1 +] K, D_t)`, one
    per teacher layer), `mask` `(B, N)` (1 = hidden), `ids_keep` `(B, K)` and
    `ids_restore` `(B, N)`; `noise` `(B, N)` fixes the mask (lowest kept).

    Args:
        encoder: the student `ViTEncoder` (or an encoder with its `forward_features`).
        teacher: a Keras model (wrapped as `TeacherFeatures(teacher, teacher_layers,
            normalize="layer_norm")`, frozen) or a `TeacherFeatures`.
        teacher_layers: teacher layers when `teacher` is a model; for a ViTEncoder the
            default is its last 5 blocks (official `top5`), for a functional model
            layer names (default: its outputs).
        student_layers: student block indices mixed by the alignment matrix (default:
            all blocks, as the official code).
        mask_generator: None (teacher-guided, `GuidedMaskGenerator(sample="visible")`), a
            name from `keras_mim.masking.MASK_GENERATORS` or a `MaskGenerator`.
        mask_ratio: fraction of hidden tokens (default 0.7) when the generator is built here.
        beta: smooth-L1 beta (default 1.0).
        align_cls: also align the student's [CLS] with the teacher's when both have one
            (official: yes).
        seed: optional int seed of the mask generator built here.
        **kwargs: standard model arguments (name, dtype).

    Examples:
        >>> import numpy as np, keras
        >>> from keras_mim.models import ViTEncoder
        >>> teacher = ViTEncoder(image_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2)
        >>> model = MaskAlign.from_preset("maskalign_vit_test", teacher=teacher)
        >>> model.compile(optimizer=keras.optimizers.AdamW(1e-3))
        >>> history = model.fit(np.random.rand(8, 16, 16, 3).astype("float32"), epochs=1, verbose=0)
        >>> [tuple(p.shape) for p in model(np.zeros((2, 16, 16, 3), "float32"))["pred"]]
        [(2, 5, 32), (2, 5, 32)]
    """

    def __init__(self, encoder, teacher=None, teacher_layers=None, student_layers=None, mask_generator=None,
                 mask_ratio=0.7, beta=1.0, align_cls=True, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.encoder = check_encoder(encoder, "MaskAlign", features=True)  # aligns its blocks' outputs
        top = list(range(-min(TOP_K_TEACHER_LAYERS, teacher.depth), 0)) if is_block_encoder(teacher) else None
        self.teacher = get_teacher(teacher, teacher_layers, normalize="layer_norm", default_vit_layers=top,
                                   student=encoder)
        # Before any training: same token grid, known widths (raises otherwise).
        self.teacher_dims = self.teacher.check_compatible(
            encoder.image_size + (encoder.num_channels,), encoder.num_patches
        )
        layers = list(range(encoder.depth)) if student_layers is None else student_layers
        try:
            self.student_layers = encoder.layer_indices(layers)
        except ValueError as e:
            raise ValueError(f"Bad `student_layers`={student_layers!r}: {e}") from None
        self.align_cls = bool(align_cls)
        self.aligns_cls = self.align_cls and encoder.num_prefix_tokens >= 1 and self.teacher.has_cls
        self.mask_generator = self.make_mask_generator(mask_generator, mask_ratio, seed)
        self.mask_ratio = check_mask_ratio(self.mask_generator.mask_ratio, encoder.num_patches)
        self.mask_generator.num_visible(encoder.grid_shape)
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not beta > 0:
            raise ValueError(f"`beta` (smooth-L1) must be a float > 0, got {beta!r}.")
        self.beta = float(beta)
        self.seed = seed
        p = self.dtype_policy
        self.heads = [keras.layers.Dense(d, dtype=p, name=f"head_{i}") for i, d in enumerate(self.teacher_dims)]

    @staticmethod
    def make_mask_generator(mask_generator, mask_ratio, seed):
        """Teacher-guided by default: keep tokens in proportion to the teacher's attention."""
        if mask_generator is None or mask_generator == "guided":
            return GuidedMaskGenerator(mask_ratio, seed=seed, sample="visible")
        return get_mask_generator(mask_generator, mask_ratio=mask_ratio, seed=seed)

    def build(self, images_shape=None):
        # Sub-models deserialised from a `.keras` file (or shared) arrive already built.
        if not self.encoder.built:
            self.encoder.build()
        for head in self.heads:
            if not head.built:
                head.build((None, None, self.encoder.embed_dim))
        if not self.built:
            init = dynamic_alignment_init(len(self.teacher_dims), len(self.student_layers))
            self.mixing = self.add_weight(  # official `distill_weights`
                shape=init.shape, initializer=lambda shape, dtype=None: ops.convert_to_tensor(init, dtype),
                name="mixing",
            )
        self.built = True

    # ------------------------------------------------------------------ the method
    def random_masking(self, images, noise=None):
        """Decide which tokens to hide, guided by the teacher's [CLS] attention: dict of
        `ids_keep`, `ids_restore`, `mask`."""
        return teacher_guided_masking(self.mask_generator, self.teacher, images, self.encoder.grid_shape, noise)

    def forward_encoder(self, images, ids_keep, training=None):
        """Outputs of the student blocks on the visible tokens: S x `(B, 1 + K, D)`."""
        _, hidden = self.encoder.forward_features(images, self.student_layers, ids_keep=ids_keep, training=training)
        return hidden

    def forward_alignment(self, hidden):
        """Dynamic Alignment: mix the S student layers into T, then a Dense head per
        teacher layer: T x `(B, [1 +] K, D_t)`."""
        x = ops.stack(hidden, axis=0)  # (S, B, 1 + K, D)
        if not self.aligns_cls:
            x = x[:, :, self.encoder.num_prefix_tokens:]  # (S, B, K, D)
        mixed = ops.einsum("ts,sbkd->tbkd", ops.cast(self.mixing, x.dtype), x)  # (T, B, [1 +] K, D)
        return [head(mixed[t]) for t, head in enumerate(self.heads)]

    def forward_teacher(self, images, ids_keep):
        """Normalised teacher features at the visible positions: T x `(B, [1 +] K, D_t)`."""
        return self.teacher.features(images, ids_keep=ids_keep, with_cls=self.aligns_cls)

    def forward_loss(self, images, preds, ids_keep):
        targets = self.forward_teacher(images, ids_keep)
        per_layer = [2.0 * smooth_l1(p, t, self.beta) for p, t in zip(preds, targets)]
        return ops.mean(ops.stack(per_layer))  # official `mean` weights over the aligned layers

    def call(self, images, noise=None, training=None):
        self.encoder.check_images(images)
        masking = self.random_masking(images, noise=noise)
        hidden = self.forward_encoder(images, masking["ids_keep"], training=training)
        return {
            "pred": self.forward_alignment(hidden),
            "mask": masking["mask"],
            "ids_keep": masking["ids_keep"],
            "ids_restore": masking["ids_restore"],
        }

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if y_pred is None:
            y_pred = self(x, training=training)
        loss = self.forward_loss(x, y_pred["pred"], y_pred["ids_keep"])
        return self.add_layer_losses(loss)

    def get_config(self):
        config = super().get_config()
        config.update(
            encoder=keras.saving.serialize_keras_object(self.encoder),
            teacher=keras.saving.serialize_keras_object(self.teacher),
            student_layers=self.student_layers,
            mask_generator=keras.saving.serialize_keras_object(self.mask_generator),
            mask_ratio=self.mask_ratio,
            beta=self.beta,
            align_cls=self.align_cls,
            seed=self.seed,
        )
        return config


register_method(MethodSpec(
    name="maskalign", model=MaskAlign, family="features", teacher=True,
    description="MaskAlign: visible tokens aligned with a frozen teacher's features, no decoder.",
    paper="Xue et al., CVPR 2023", code="OpenPerceptionX/maskalign",
    presets={
        "maskalign_vit_base_patch16": dict(
            description="MaskAlign ViT-B/16 student (no decoder), attention-guided masks at 0.7; give a teacher.",
            encoder=VIT_BASE_16, kwargs={"mask_ratio": 0.7}),
        "maskalign_vit_test": dict(description="MaskAlign student on the test ViT; give a teacher.", encoder=TEST_VIT),
    },
))
