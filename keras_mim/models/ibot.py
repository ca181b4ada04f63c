"""iBOT (Zhou et al., ICLR 2022): masked image modeling as self-distillation from an online
tokenizer, an EMA teacher.

Official code: bytedance/ibot. This module follows its training step (`main_ibot.py`):
the teacher scores the two unmasked global views, the student the block-masked ones
(`loader.py` `ImageFolderMask`), both through a projection head (`models/head.py`
`iBOTHead`, here `keras_mim.layers.ProjectionHead`), then `iBOTLoss`: [CLS]
self-distillation across views, masked-patch self-distillation within a view, teacher
centering and sharpening, and the centers' EMA; then the teacher's momentum update.
"""

import keras
from keras import ops

from keras_mim.ema import check_same_variables, cosine_schedule, ema_update, frozen_copy, momentum_schedule
from keras_mim.layers.projection_head import ProjectionHead
from keras_mim.masking import get_mask_generator
from keras_mim.models.methods import MethodSpec, register_method
from keras_mim.models.presets import TEST_VIT, VIT_BASE_16, vit
from keras_mim.models.pretraining_model import PretrainingModel, check_encoder
from keras_mim.models.view_pairs import ViewPairInputs
from keras_mim.targets.ema_teacher import EMATeacher, check_teacher
from keras_mim.utils import check_mask_ratio_range

#: The official head (`main_ibot.py` defaults, `--out_dim 8192`, `--norm_last_layer` True for ViT-B).
HEAD = dict(out_dim=8192, hidden_dim=2048, bottleneck_dim=256, num_layers=3, norm_last_layer=True)
#: The teacher's momentum: 0.996 -> 1.0 with a cosine over the run (`--momentum_teacher`).
MOMENTUM, FINAL_MOMENTUM, MOMENTUM_STEPS = 0.996, 1.0, 100_000
#: 30 warm-up epochs of the teacher temperature (`--warmup_teacher_temp_epochs 30`) at 1251
#: steps an epoch (ImageNet-1k at batch 1024).
TEACHER_TEMP_STEPS = 30 * 1251


def distillation_loss(teacher_probs, student_scores):
    """Cross-entropy `sum_k -p_k log softmax(s)_k` over the last axis, float32."""
    log_q = ops.log_softmax(ops.cast(student_scores, "float32"), axis=-1)
    return -ops.sum(ops.cast(teacher_probs, "float32") * log_q, axis=-1)


def by_view(x):
    """`(2B, ...)` view-major (the official `chunk` order) -> `(2, B, ...)`."""
    return ops.reshape(x, (2, -1) + tuple(x.shape[1:]))


def _number(value, name, low=0.0, high=None, low_open=False):
    bad = isinstance(value, bool) or not isinstance(value, (int, float))
    if bad or value < low or (low_open and value == low) or (high is not None and value > high):
        interval = f"{'(' if low_open else '['}{low}, {'inf)' if high is None else str(high) + ']'}"
        raise ValueError(f"`{name}` must be a number in {interval}, got {value!r}.")
    return float(value)


@keras.saving.register_keras_serializable(package="keras_mim")
class IBOT(ViewPairInputs, PretrainingModel):
    """iBOT pretraining: a masked student distils an EMA teacher's prototype distributions,
    for the [CLS] token across views and for the hidden patches within a view.

    Input to `call`, `fit`, `evaluate` and `predict`: two global crops of each image as
    `{"reference": (B, H, W, C), "target": (B, H, W, C)}` (the keys of every view-pair
    method; iBOT treats the two alike, `keras_mim.data.view_dataset(method="ibot")` makes
    them). The student (`encoder`, in mask-token mode, and `head`, a `ProjectionHead`
    shared by the [CLS] and patch tokens) sees each view with a block mask; the teacher,
    an EMA copy of both, sees the unmasked views. `call(views, masks=None)` returns
    `cls` `(B, 2, K)` and `pred` `(B, 2, N, K)`, the student's scores (view axis second),
    and `mask` `(B, 2, N)` (1 = hidden). Fix the masks with
    `masks={"reference": (B, N), "target": (B, N)}`.

    Masks, with static shapes: for every image and view, the mask generator's scores
    are drawn (default BEiT blocks with iBOT's smallest block `(min(gh, gw) // 3)^2`
    tokens and aspect 0.3-3.3); with probability `mask_probability` the view hides its
    `floor(r N)` highest-scoring tokens (whole blocks, then a random part of the next one),
    `r` uniform in `mask_ratio`, otherwise none.
    The official `--pred_ratio 0 0.3 --pred_ratio_var 0 0.2` is `mask_probability=0.5`,
    `mask_ratio=(0.1, 0.5)`, the defaults.

    The loss (`compute_loss`, float32): teacher probabilities `softmax((t - c) / tau_t)`
    (centers `center` for [CLS], `center2` for patches; `tau_t` ramps linearly from the
    warm-up temperature over `teacher_temp_steps`), student log-probabilities
    `log_softmax(s / student_temp)`; `cls_weight` x the cross-entropy of each view's teacher
    [CLS] against the other view's student [CLS], averaged over images and the two pairs,
    plus `patch_weight` x each view's teacher patches against its own student patches,
    averaged over the hidden patches of each image (0 without any), then over images and
    views. Each training step first moves the teacher (encoder and head),
    `t <- m t + (1 - m) s` with `m` on a cosine from `momentum` to `final_momentum` over
    `momentum_steps` (the teacher counts the steps), computes the loss with the current
    centers, then updates them, `c <- m_c c + (1 - m_c) mean(t)` over the batch (and the
    patches). On several devices the mean is over the global batch: JAX data parallel
    averages the sharded batch in one program; under `tf.distribute` the centers are
    variables with `aggregation="mean"`, so each replica's update (linear in its batch
    mean) is averaged over the replicas (equal per-replica batches, as `fit` makes them).

    Differences from the official code: no local crops (multi-crop) and no separate patch
    head (`shared_head`, the ViT-B setting); masks with exact counts as above instead of
    BEiT's rejection loop, and drawn in the model rather than the data loader; the
    temperature warm-up and the momentum cosine count steps (the official warm-up counts
    epochs); `pred_start_epoch`, freezing the last layer during the first epoch, gradient
    clipping and the weight-decay schedule are left to the caller; the teacher moves
    before the loss at each step (the official moves it after the optimizer step: the same
    sequence of teachers, since the teacher starts as a copy of the student).

    Args:
        encoder: a `ViTEncoder` with a cls token and a mask token (`from_preset` builds it
            so); after pretraining this object is what downstream models reuse.
        head: the student's `ProjectionHead`, a dict of its arguments (`out_dim`,
            `hidden_dim`, `bottleneck_dim`, `num_layers`, `norm_last_layer`; the rest
            official: 8192, 2048, 256, 3, True), or None for the official head.
        teacher: None (an `EMATeacher` copy of `encoder` made now, with the momentum
            settings below), an `EMATeacher` or its config.
        teacher_head: None (a frozen copy of `head` made now), a `ProjectionHead` or its config.
        mask_generator: a name of `keras_mim.masking.MASK_GENERATORS` (`"block"`, official;
            `"random"`, the official `--pred_shape rand`) or a `MaskGenerator`; only its
            scores are used.
        mask_ratio: hidden fraction of a masked view, a float or a range `(low, high)` drawn
            uniformly per image (default `(0.1, 0.5)`).
        mask_probability: share of the views that are masked (default 0.5).
        momentum: teacher momentum at step 0 (default 0.996).
        final_momentum: teacher momentum at the end of the cosine (default 1.0).
        momentum_steps: steps of the cosine (default 100000; `keras-mim pretrain` sets the
            run's steps, as the official spans the run).
        student_temp: student temperature (0.1).
        teacher_temp: [CLS] teacher temperature after the warm-up (0.07).
        warmup_teacher_temp: [CLS] teacher temperature at step 0 (0.04).
        teacher_patch_temp: patch teacher temperature after the warm-up (0.07).
        warmup_teacher_patch_temp: patch teacher temperature at step 0 (0.04).
        teacher_temp_steps: steps of the linear temperature warm-up (default 37530: 30
            epochs of ImageNet-1k at batch 1024).
        center_momentum: EMA momentum of both centers (0.9).
        cls_weight: weight of the [CLS] term (official `lambda1`, 1.0).
        patch_weight: weight of the patch term (official `lambda2`, 1.0).
        seed: optional int seed of the masks.
        **kwargs: standard model arguments (name, dtype).

    Examples:
        >>> import numpy as np, keras
        >>> crops = np.random.default_rng(0).random((2, 8, 16, 16, 3), dtype="float32")  # 2 global crops of 8 images
        >>> views = dict(zip(("reference", "target"), crops))
        >>> model = IBOT.from_preset("ibot_vit_test", seed=0)
        >>> model.compile(optimizer=keras.optimizers.AdamW(1e-3))
        >>> model.fit(views, epochs=1, batch_size=4, verbose=0).history["loss"][0] > 0
        True
        >>> out = model.predict(views, verbose=0)
        >>> out["cls"].shape, out["pred"].shape, out["mask"].shape  # 64 prototypes, 16 patches
        ((8, 2, 64), (8, 2, 16, 64), (8, 2, 16))
    """

    encoder_defaults = {"mask_token": True}  # ViTEncoder arguments this method needs (see presets)

    def __init__(self, encoder, head=None, teacher=None, teacher_head=None, mask_generator="block",
                 mask_ratio=(0.1, 0.5), mask_probability=0.5, momentum=None, final_momentum=None,
                 momentum_steps=None, student_temp=0.1, teacher_temp=0.07, warmup_teacher_temp=0.04,
                 teacher_patch_temp=0.07, warmup_teacher_patch_temp=0.04, teacher_temp_steps=TEACHER_TEMP_STEPS,
                 center_momentum=0.9, cls_weight=1.0, patch_weight=1.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.encoder = check_encoder(encoder, "IBOT", mask_token=True)
        if encoder.num_prefix_tokens < 1 or tuple(encoder.output_grid_shape) != tuple(encoder.grid_shape):
            raise ValueError(
                "IBOT distils the [CLS] token and one token per patch: the encoder needs a cls token "
                f"(`cls_token=True`) and an output grid equal to its patch grid; got "
                f"{encoder.num_prefix_tokens} prefix tokens, output grid {encoder.output_grid_shape} "
                f"and patch grid {encoder.grid_shape}."
            )
        grid, n = tuple(encoder.grid_shape), encoder.num_patches
        self.mask_ratio = check_mask_ratio_range(mask_ratio, n)
        self.mask_probability = _number(mask_probability, "mask_probability", high=1.0)
        shape = {"min_num_patches": max(1, (min(grid) // 3) ** 2), "min_aspect": 0.3} if mask_generator == "block" else {}
        self.mask_generator = get_mask_generator(mask_generator, mask_ratio=self.mask_ratio[1], seed=seed,
                                                 patch_size=encoder.patch_size[0], **shape)
        self.mask_generator.num_visible(grid)  # raises if it cannot mask this grid
        self.head = self.make_head(head)
        self.teacher = self.make_teacher(teacher, dict(momentum=momentum, final_momentum=final_momentum,
                                                       momentum_steps=momentum_steps))
        self.teacher_head = self.make_teacher_head(teacher_head)
        self.student_temp = _number(student_temp, "student_temp", low_open=True)
        self.teacher_temp = _number(teacher_temp, "teacher_temp", low_open=True)
        self.warmup_teacher_temp = _number(warmup_teacher_temp, "warmup_teacher_temp", low_open=True)
        self.teacher_patch_temp = _number(teacher_patch_temp, "teacher_patch_temp", low_open=True)
        self.warmup_teacher_patch_temp = _number(warmup_teacher_patch_temp, "warmup_teacher_patch_temp",
                                                 low_open=True)
        if isinstance(teacher_temp_steps, bool) or not isinstance(teacher_temp_steps, int) or teacher_temp_steps < 0:
            raise ValueError(f"`teacher_temp_steps` must be an int >= 0, got {teacher_temp_steps!r}.")
        self.teacher_temp_steps = teacher_temp_steps
        self.center_momentum = _number(center_momentum, "center_momentum", high=1.0)
        self.cls_weight = _number(cls_weight, "cls_weight")
        self.patch_weight = _number(patch_weight, "patch_weight")
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        # The centers: EMAs of the teacher's mean scores. aggregation="mean": under
        # tf.distribute a replica's assignment is averaged over the replicas.
        k = self.head.out_dim
        self.center = self.add_weight(shape=(k,), initializer="zeros", trainable=False, dtype="float32",
                                      aggregation="mean", name="center")
        self.center2 = self.add_weight(shape=(k,), initializer="zeros", trainable=False, dtype="float32",
                                       aggregation="mean", name="center2")

    def make_head(self, head):
        """The student's `ProjectionHead` (built), from None, a dict of arguments, a config or one."""
        width = self.encoder.output_dim
        if isinstance(head, dict) and "class_name" in head:
            head = keras.saving.deserialize_keras_object(head)
        if head is None or isinstance(head, dict):
            unknown = sorted(set(head or {}) - set(HEAD))
            if unknown:
                raise ValueError(f"`head` takes the ProjectionHead arguments {sorted(HEAD)}, got {unknown}.")
            head = ProjectionHead(width, **{**HEAD, **(head or {})}, dtype=self.dtype_policy, name="head")
        if not isinstance(head, ProjectionHead):
            raise TypeError(f"`head` must be a ProjectionHead, a dict of its arguments or None, "
                            f"got {type(head).__name__}.")
        if head.input_dim != width:
            raise ValueError(f"`head` takes tokens of width {head.input_dim}, but the encoder's are {width} wide.")
        if not head.built:
            head.build()
        return head

    def make_teacher(self, teacher, settings):
        """The `EMATeacher` holding the teacher encoder, its momentum settings and update count."""
        given = {k: v for k, v in settings.items() if v is not None}
        if teacher is None:
            settings = {"momentum": MOMENTUM, "final_momentum": FINAL_MOMENTUM, "momentum_steps": MOMENTUM_STEPS,
                        **given}
            return EMATeacher(self.encoder, source="output", layer_norm=None, final_layer_norm=False, top_k=1,
                              name="teacher", **settings)
        if given:
            raise ValueError(f"`{', '.join(given)}` configure the teacher IBOT makes; with `teacher` given, "
                             "set them on that EMATeacher instead.")
        return check_teacher(teacher, self.encoder)

    def make_teacher_head(self, teacher_head):
        """The teacher's head: a frozen copy of `head` now, or the one given (checked, frozen)."""
        if teacher_head is None:
            return frozen_copy(self.head, name="teacher_head")
        if isinstance(teacher_head, dict):
            teacher_head = keras.saving.deserialize_keras_object(teacher_head)
        if not isinstance(teacher_head, ProjectionHead) or teacher_head is self.head:
            raise TypeError("`teacher_head` must be a ProjectionHead other than `head`, its config or None, "
                            f"got {teacher_head!r}.")
        if not teacher_head.built:
            teacher_head.build()
        check_same_variables(teacher_head, self.head)
        teacher_head.trainable = False
        return teacher_head

    # The teacher's momentum schedule, read through.
    momentum = property(lambda self: self.teacher.momentum)
    final_momentum = property(lambda self: self.teacher.final_momentum)
    momentum_steps = property(lambda self: self.teacher.momentum_steps)

    def build(self, views_shape=None):
        # Sub-models deserialised from a `.keras` file (or shared) arrive already built.
        if not self.encoder.built:
            self.encoder.build()
        self.built = True

    # ------------------------------------------------------------------ the method
    def random_masking(self, images, noise=None):
        """Masks `(B', N)` (1 = hidden) of a batch of views: a share `mask_probability` of
        them hide `floor(r N)` tokens, `r` uniform in `mask_ratio`, the highest-scoring ones
        of the mask generator (or of `noise`, `(B', N)` scores)."""
        grid, n = self.encoder.grid_shape, self.encoder.num_patches
        b = ops.shape(images)[0]
        scores = self.mask_generator.scores(b, grid) if noise is None else noise  # (B', N)
        u = keras.random.uniform((b, 2), seed=self.seed_generator)
        low, high = self.mask_ratio
        ratio = low + (high - low) * u[:, 0]  # (B',)
        count = ops.floor(ratio * n) * ops.cast(u[:, 1] < self.mask_probability, "float32")  # (B',)
        rank = ops.argsort(ops.argsort(-ops.cast(scores, "float32"), axis=1), axis=1)  # 0 = highest score
        return ops.cast(ops.cast(rank, "float32") < count[:, None], "float32")  # (B', N)

    def join_views(self, views, name="views"):
        """The two views stacked view-major `(2B, H, W, C)`."""
        reference, target = self.split_views(views, name=name)
        return ops.concatenate([reference, target], axis=0)

    def fixed_masks(self, masks):
        """Given masks `{"reference": (B, N), "target": (B, N)}` -> `(2B, N)` float32."""
        n = self.encoder.num_patches
        if not isinstance(masks, dict) or set(masks) != {"reference", "target"}:
            raise ValueError(f"`masks` must be a dict {{'reference': (B, {n}), 'target': (B, {n})}}, got {masks!r}.")
        for key, value in masks.items():
            if len(value.shape) != 2 or value.shape[1] != n:
                raise ValueError(f"`masks['{key}']` must have shape (B, {n}), got {tuple(value.shape)}.")
        return ops.cast(ops.concatenate([masks["reference"], masks["target"]], axis=0), "float32")

    def split_scores(self, scores):
        """Head scores `(B', P + N, K)` -> [CLS] `(B', K)` and patches `(B', N, K)`."""
        return scores[:, 0], scores[:, self.encoder.num_prefix_tokens :]

    def forward_student(self, images, mask, training=None):
        latent = self.encoder(images, token_mask=mask, training=training)  # (2B, P + N, D)
        return self.split_scores(self.head(latent))  # (2B, K), (2B, N, K)

    def forward_teacher(self, images):
        """The teacher's scores of the unmasked views, float32, no gradient."""
        latent = self.teacher.encoder(images, training=False)  # (2B, P + N, D)
        scores = ops.stop_gradient(ops.cast(self.teacher_head(latent), "float32"))
        return self.split_scores(scores)  # (2B, K), (2B, N, K)

    def update_teacher(self, step):
        """EMA step of the teacher encoder and head, momentum on the cosine at `step`."""
        m = cosine_schedule(step, self.momentum, self.final_momentum, self.momentum_steps)
        self.teacher.update(self.encoder, momentum=m)  # counts the step
        ema_update(self.teacher_head, self.head, m)

    def teacher_temperatures(self, step):
        """The [CLS] and patch teacher temperatures at `step` (linear warm-up)."""
        steps = self.teacher_temp_steps
        return (momentum_schedule(step, self.warmup_teacher_temp, self.teacher_temp, steps),
                momentum_schedule(step, self.warmup_teacher_patch_temp, self.teacher_patch_temp, steps))

    def forward_loss(self, student_cls, student_patch, teacher_cls, teacher_patch, mask, step):
        """iBOTLoss on view-major tensors: [CLS] `(2, B, K)`, patches `(2, B, N, K)`, mask `(2, B, N)`."""
        temp, temp2 = self.teacher_temperatures(step)
        t_cls = ops.softmax((teacher_cls - self.center) / temp, axis=-1)  # (2, B, K)
        t_patch = ops.softmax((teacher_patch - self.center2) / temp2, axis=-1)  # (2, B, N, K)
        s_cls = ops.cast(student_cls, "float32") / self.student_temp
        s_patch = ops.cast(student_patch, "float32") / self.student_temp
        # [CLS]: each view's teacher against the other view's student, mean over images and pairs.
        cls_loss = ops.mean(distillation_loss(t_cls, ops.flip(s_cls, axis=0)))
        # Patches: each view against itself, a mean over the hidden patches of each image.
        mask = ops.cast(mask, "float32")
        per_patch = distillation_loss(t_patch, s_patch)  # (2, B, N)
        per_image = ops.sum(per_patch * mask, axis=-1) / ops.maximum(ops.sum(mask, axis=-1), 1.0)  # (2, B)
        return self.cls_weight * cls_loss + self.patch_weight * ops.mean(per_image)

    def update_centers(self, teacher_cls, teacher_patch):
        """`c <- m c + (1 - m) mean(t)`: the [CLS] scores over the batch, the patch scores
        over the batch and the patches."""
        m = self.center_momentum
        self.center.assign(self.center * m + ops.mean(teacher_cls, axis=(0, 1)) * (1.0 - m))  # (K,)
        self.center2.assign(self.center2 * m + ops.mean(teacher_patch, axis=(0, 1, 2)) * (1.0 - m))

    def call(self, views, masks=None, training=None):
        images = self.join_views(views)  # (2B, H, W, C)
        mask = self.random_masking(images) if masks is None else self.fixed_masks(masks)  # (2B, N)
        cls, patches = self.forward_student(images, mask, training=training)  # (2B, K), (2B, N, K)
        # batch first (for predict): (B, 2, K), (B, 2, N, K), (B, 2, N)
        return {key: ops.moveaxis(by_view(x), 0, 1) for key, x in (("cls", cls), ("pred", patches), ("mask", mask))}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if y_pred is None:
            y_pred = self(x, training=training)
        step = ops.cast(self.teacher.num_updates, "float32")  # read before the update
        if training:
            self.update_teacher(step)  # before the targets: the teacher then holds the current student
        t_cls, t_patch = map(by_view, self.forward_teacher(self.join_views(x, name="x")))  # (2, B, K), (2, B, N, K)
        student = [ops.moveaxis(y_pred[key], 1, 0) for key in ("cls", "pred", "mask")]  # view-major
        loss = self.forward_loss(*student[:2], t_cls, t_patch, student[2], step)
        if training:
            self.update_centers(t_cls, t_patch)  # after the loss, as the official
        return self.add_layer_losses(loss)

    def get_config(self):
        config = super().get_config()
        config.update(
            encoder=keras.saving.serialize_keras_object(self.encoder),
            head=keras.saving.serialize_keras_object(self.head),
            teacher=keras.saving.serialize_keras_object(self.teacher),
            teacher_head=keras.saving.serialize_keras_object(self.teacher_head),
            mask_generator=keras.saving.serialize_keras_object(self.mask_generator),
            mask_ratio=list(self.mask_ratio),
            mask_probability=self.mask_probability,
            student_temp=self.student_temp,
            teacher_temp=self.teacher_temp,
            warmup_teacher_temp=self.warmup_teacher_temp,
            teacher_patch_temp=self.teacher_patch_temp,
            warmup_teacher_patch_temp=self.warmup_teacher_patch_temp,
            teacher_temp_steps=self.teacher_temp_steps,
            center_momentum=self.center_momentum,
            cls_weight=self.cls_weight,
            patch_weight=self.patch_weight,
            seed=self.seed,
        )
        return config


#: Small presets' head: one Dense layer to a 64-wide bottleneck. At this width the official three
#: layers (std 0.02 init) shrink their output to ~1e-4, the biases set its direction, and the
#: teacher collapses. Temperatures: the test ViT's [CLS] scores differ between digits by ~0.015,
#: near-uniform at 0.04-0.07; 0.02 sharpens them (without centering it collapses).
TEST_HEAD = dict(out_dim=64, bottleneck_dim=64, num_layers=1)
TEST_TEMPERATURES = dict(warmup_teacher_temp=0.02, teacher_temp=0.02, warmup_teacher_patch_temp=0.02,
                         teacher_patch_temp=0.02, teacher_temp_steps=0)

register_method(MethodSpec(
    name="ibot", model=IBOT, family="self-distillation", views="ibot", schedule_steps=("momentum_steps",),
    description="iBOT: self-distillation of an EMA teacher's prototypes, [CLS] across two views and "
                "block-masked patches within each.",
    paper="Zhou et al., ICLR 2022", code="bytedance/ibot", cli_preset="ibot_vit_test",
    presets={
        "ibot_vit_base_patch16": dict(
            description="iBOT ViT-B/16: shared head 2048-256 to 8192 weight-normalised prototypes, block masks "
                        "on half the views (ratio 0.1-0.5), teacher 0.996 -> 1, temperatures 0.04 -> 0.07.",
            encoder=dict(VIT_BASE_16, drop_path_rate=0.1), kwargs={"head": dict(HEAD)}),
        "ibot_vit_nano_patch2_16": dict(
            description="iBOT on the 64 x 4 x 4 nano ViT (16 px, patch 2: digits-sized images): the test "
                        "head widened to 256 prototypes, its temperatures and momentum.",
            encoder=vit(16, 2, 64, 4, 4), kwargs={"head": dict(TEST_HEAD, out_dim=256), "momentum": 0.99,
                                                   **TEST_TEMPERATURES}),
        "ibot_vit_test": dict(
            description="iBOT on the test ViT: a one-layer head to 64 prototypes, teacher temperatures 0.02, "
                        "teacher momentum 0.99.",
            encoder=TEST_VIT, kwargs={"head": TEST_HEAD, "momentum": 0.99, **TEST_TEMPERATURES}),
    },
))
