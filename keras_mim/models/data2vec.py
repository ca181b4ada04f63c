"""data2vec (Baevski et al., 2022) for images: regress an EMA teacher's contextual features.

Reference code: facebookresearch/fairseq, examples/data2vec (`models/data2vec_vision.py`
for data2vec 1.0 images, `models/data2vec2.py` for 2.0). The student sees all N tokens,
the hidden ones replaced by a mask token (BEiT block masks, 60% hidden); a linear head
regresses, at hidden positions, the teacher's target computed on the full image.
"""

import math

import keras
from keras import ops

from keras_mim.losses import masked_mean
from keras_mim.masking import get_mask_generator
from keras_mim.models.methods import MethodSpec, register_method
from keras_mim.models.presets import TEST_VIT, VIT_BASE_16
from keras_mim.models.pretraining_model import PretrainingModel, check_encoder
from keras_mim.targets.ema_teacher import EMATeacher, check_teacher
from keras_mim.utils import check_mask_ratio

def regression_per_token(pred, target, beta=0.0, scale=None):
    """data2vec's regression loss per token, float32: `(B, N, D) -> (B, N)`.

    Elementwise smooth L1 with `beta` (torch's `F.smooth_l1_loss`: `0.5 d^2 / beta`
    below `beta`, `|d| - 0.5 beta` above), or the squared error when `beta` is 0, summed
    over the D features and multiplied by `scale` (default `1 / sqrt(D)`).
    """
    diff = ops.cast(pred, "float32") - ops.cast(target, "float32")
    if beta > 0:
        a = ops.abs(diff)
        elementwise = ops.where(a < beta, 0.5 * diff * diff / beta, a - 0.5 * beta)
    else:
        elementwise = diff * diff
    scale = 1.0 / math.sqrt(diff.shape[-1]) if scale is None else scale
    return ops.sum(elementwise, axis=-1) * scale


@keras.saving.register_keras_serializable(package="keras_mim")
class Data2Vec(PretrainingModel):
    """data2vec-style pretraining: a masked student regresses an EMA teacher's features.

    `call(images, noise=None)` returns a dict: `pred` `(B, N, D)` (the student's
    patch tokens through a linear head) and `mask` `(B, N)` (1 = hidden). The student
    encodes all N tokens in mask-token mode. The target is an `EMATeacher`'s output on
    the full, unmasked image: the mean of its top `top_k` blocks, normalised (see
    `EMATeacher`). The loss, in `compute_loss`, is data2vec's: per token, smooth L1
    with `loss_beta` (squared error when 0) summed over D and scaled by `loss_scale`
    (default `1 / sqrt(D)`), averaged over hidden tokens, in float32.

    At every training step `compute_loss` first moves the teacher towards the student
    (`t <- m t + (1 - m) s`, before this step's gradient is applied, so the target uses
    the student's current weights as data2vec's does), with `m` from the teacher's
    schedule at its update count (the optimizer's iteration count under `fit`), then
    computes the target. The teacher
    is never trained by gradient and its weights are saved with the model.

    Defaults follow data2vec for images: BEiT block masks hiding 60% (1.0 and the
    paper), smooth L1 with beta 2 (1.0, `base_imagenet_d2v1.yaml`), and from data2vec 2.0
    (`v2/base_images_only_task.yaml`) instance-normalised blocks, a final layer norm and
    momentum 0.9998 -> 0.99999 over 100k steps. The teacher is an EMA of the whole
    encoder, patch embedding included, as data2vec 2.0 (`ema_encoder_only: false`);
    data2vec 1.0 averaged only the transformer blocks and fed them the student's patch
    embeddings. Targets are end-of-block outputs, as data2vec 1.0 (2.0 takes the
    blocks' feed-forward outputs before the residual sum).

    Args:
        encoder: an encoder with a mask token (`ViTEncoder(mask_token=True)`; presets
            build it so). After pretraining, this object is what downstream models reuse.
        teacher: None (an `EMATeacher` copy of `encoder` made now, configured by the
            arguments below), an `EMATeacher`, or its serialized config.
        top_k: blocks averaged into the target; None: min(8, depth).
        momentum: EMA momentum at step 0, in [0, 1] (default 0.9998).
        final_momentum: EMA momentum after `momentum_steps` (default 0.99999).
        momentum_steps: training steps of the linear momentum ramp (default 100000).
        target_layer_norm: per-block normalisation, `"instance"` (default), `"layer"`
            or None (the teacher's `layer_norm`).
        final_layer_norm: layer-normalise the averaged target (default True).
        mask_generator: a name of `keras_mim.masking.MASK_GENERATORS` (default
            `"block"`, BEiT's) or a `MaskGenerator`.
        mask_ratio: fraction hidden when `mask_generator` is a name (data2vec: 0.6).
        loss_beta: smooth-L1 beta (data2vec 1.0 images: 2); 0 for the squared error.
        loss_scale: factor on each token's summed loss; None: `1 / sqrt(D)`.
        seed: optional int seed of the mask generator when built from a name.
        **kwargs: standard model arguments (name, dtype).

    Examples:
        >>> import numpy as np, keras
        >>> model = Data2Vec.from_preset("data2vec_vit_test", seed=0)
        >>> model.compile(optimizer=keras.optimizers.AdamW(1e-3))
        >>> history = model.fit(np.random.rand(8, 16, 16, 3).astype("float32"), epochs=1, verbose=0)
        >>> out = model.predict(np.zeros((2, 16, 16, 3), "float32"), verbose=0)
        >>> out["pred"].shape, out["mask"].shape
        ((2, 16, 32), (2, 16))
    """

    encoder_defaults = {"mask_token": True}  # ViTEncoder arguments this method needs (see presets)

    def __init__(self, encoder, teacher=None, top_k=None, momentum=None, final_momentum=None,
                 momentum_steps=None, target_layer_norm=None, final_layer_norm=None,
                 mask_generator="block", mask_ratio=0.6, loss_beta=2.0, loss_scale=None, seed=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.encoder = check_encoder(encoder, "Data2Vec", mask_token=True)
        if tuple(encoder.output_grid_shape) != tuple(encoder.grid_shape):
            raise ValueError(
                f"Data2Vec regresses one target per patch, but the encoder's output grid "
                f"{encoder.output_grid_shape} differs from its patch grid {encoder.grid_shape}."
            )
        teacher_kw = dict(top_k=top_k, momentum=momentum, final_momentum=final_momentum,
                          momentum_steps=momentum_steps, layer_norm=target_layer_norm,
                          final_layer_norm=final_layer_norm)
        self.teacher = self.make_teacher(teacher, teacher_kw)
        self.mask_generator = get_mask_generator(
            mask_generator, mask_ratio=mask_ratio, seed=seed, patch_size=encoder.patch_size[0]
        )
        # The generator's own ratio rules; fail now if it leaves no token visible.
        self.mask_ratio = check_mask_ratio(self.mask_generator.mask_ratio, encoder.num_patches)
        self.mask_generator.num_visible(encoder.grid_shape)
        if isinstance(loss_beta, bool) or not isinstance(loss_beta, (int, float)) or loss_beta < 0:
            raise ValueError(f"`loss_beta` must be a float >= 0 (0: squared error), got {loss_beta!r}.")
        self.loss_beta = float(loss_beta)
        if loss_scale is not None and (isinstance(loss_scale, bool) or not isinstance(loss_scale, (int, float))
                                       or not loss_scale > 0):
            raise ValueError(f"`loss_scale` must be None (1 / sqrt(D)) or a float > 0, got {loss_scale!r}.")
        self.loss_scale = None if loss_scale is None else float(loss_scale)
        self.head = keras.layers.Dense(encoder.output_dim, dtype=self.dtype_policy, name="head")
        self.seed = seed

    def make_teacher(self, teacher, teacher_kw):
        """The `EMATeacher`: a copy of the encoder now, or the one given (checked)."""
        given = {k: v for k, v in teacher_kw.items() if v is not None}
        if teacher is None:
            return EMATeacher(self.encoder, name="teacher", **given)
        if given:
            names = ", ".join("target_layer_norm" if k == "layer_norm" else k for k in given)
            raise ValueError(
                f"`{names}` configure the teacher Data2Vec makes; with `teacher` given, set them on "
                "the EMATeacher instead."
            )
        return check_teacher(teacher, self.encoder)

    # The teacher's settings, read through.
    top_k = property(lambda self: self.teacher.top_k)
    momentum = property(lambda self: self.teacher.momentum)
    final_momentum = property(lambda self: self.teacher.final_momentum)
    momentum_steps = property(lambda self: self.teacher.momentum_steps)

    def build(self, images_shape=None):
        # Sub-models deserialised from a `.keras` file (or shared) arrive already built.
        if not self.encoder.built:
            self.encoder.build()
        if not self.head.built:
            self.head.build((None, self.encoder.num_patches, self.encoder.output_dim))
        self.built = True

    # ------------------------------------------------------------------ the method
    def forward_encoder(self, images, mask, training=None):
        return self.encoder(images, token_mask=mask, training=training)  # (B, prefix + N, D)

    def forward_head(self, latent):
        return self.head(latent[:, self.encoder.num_prefix_tokens :])  # (B, N, D)

    def forward_targets(self, images):
        """The teacher's target on the full image `(B, N, D)` float32, no gradient."""
        return self.teacher(images)

    def update_teacher(self):
        """EMA step, momentum scheduled at the teacher's update count (= training steps)."""
        self.teacher.update(self.encoder)

    def forward_loss(self, pred, target, mask):
        loss = regression_per_token(pred, target, self.loss_beta, self.loss_scale)  # (B, N)
        if self.mask_generator.num_visible(self.encoder.grid_shape) == self.encoder.num_patches:
            mask = ops.ones_like(mask)  # nothing hidden (ratio 0): score every token
        return masked_mean(loss, mask)

    def call(self, images, noise=None, training=None):
        self.encoder.check_images(images)
        mask = self.random_masking(images, noise=noise)["mask"]  # (B, N)
        latent = self.forward_encoder(images, mask, training=training)
        return {"pred": self.forward_head(latent), "mask": mask}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if y_pred is None:
            y_pred = self(x, training=training)
        if training:
            self.update_teacher()  # before the target: it then holds the current student
        target = self.forward_targets(x)
        loss = self.forward_loss(y_pred["pred"], target, y_pred["mask"])
        return self.add_layer_losses(loss)

    def get_config(self):
        config = super().get_config()
        config.update(
            encoder=keras.saving.serialize_keras_object(self.encoder),
            teacher=keras.saving.serialize_keras_object(self.teacher),
            mask_generator=keras.saving.serialize_keras_object(self.mask_generator),
            mask_ratio=self.mask_ratio,
            loss_beta=self.loss_beta,
            loss_scale=self.loss_scale,
            seed=self.seed,
        )
        return config


register_method(MethodSpec(
    name="data2vec", model=Data2Vec, family="features",
    description="data2vec-style: mask tokens, regress top-K layers of an EMA teacher.",
    paper="Baevski et al., ICML 2022", code="facebookresearch/fairseq",
    presets={
        "data2vec_vit_base_patch16": dict(
            description="data2vec-style ViT-B/16: mask tokens, target = mean of the top-8 normalised "
                        "EMA-teacher layers.",
            encoder=VIT_BASE_16, kwargs={"top_k": 8, "mask_ratio": 0.6}),
        "data2vec_vit_test": dict(description="data2vec-style on the test ViT: top-2 EMA-teacher layers.",
                                  encoder=TEST_VIT, kwargs={"top_k": 2}),
    },
))
