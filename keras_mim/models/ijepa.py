"""I-JEPA: Self-Supervised Learning from Images with a Joint-Embedding Predictive
Architecture (Assran et al., CVPR 2023).

Official code: facebookresearch/ijepa (`src/train.py`, `src/masks/multiblock.py`,
`src/models/vision_transformer.py`); this module follows its training step: masks from
the collator, `forward_target` (EMA target encoder on the full image, layer-normed, the
target blocks gathered), `forward_context` (context encoder on the context block, then
the predictor), `loss_fn` (smooth L1), then the momentum update.
"""

import keras
from keras import ops

from keras_mim.layers.token_ops import gather_tokens, hidden_mask
from keras_mim.masking import MultiBlockMaskGenerator, get_mask_generator
from keras_mim.models.jepa_predictor import JEPAPredictor
from keras_mim.models.methods import MethodSpec, register_method
from keras_mim.models.presets import TEST_VIT, VIT_BASE_16, VIT_HUGE_14, vit
from keras_mim.models.pretraining_model import PretrainingModel, check_encoder
from keras_mim.targets.ema_teacher import EMATeacher, check_teacher

#: The official target encoder: momentum 0.996 -> 1.0, linear over the whole run.
MOMENTUM, FINAL_MOMENTUM = 0.996, 1.0


def smooth_l1(pred, target, beta=1.0):
    """Mean elementwise smooth L1 (torch's `F.smooth_l1_loss`, mean reduction), float32."""
    diff = ops.abs(ops.cast(pred, "float32") - ops.cast(target, "float32"))
    return ops.mean(ops.where(diff < beta, 0.5 * diff * diff / beta, diff - 0.5 * beta))


@keras.saving.register_keras_serializable(package="keras_mim")
class IJEPA(PretrainingModel):
    """I-JEPA pretraining: predict an EMA target encoder's features of target blocks
    from a context block, in representation space (no pixels, no decoder).

    Per image, a `MultiBlockMaskGenerator` draws M target blocks and one context block
    without them (static counts: C context tokens, T per target block; see there). The
    context encoder (`encoder`, what downstream models reuse) sees only the C context
    tokens; the `JEPAPredictor` gets them plus mask tokens at the positions of each
    target block and predicts `(B, M, T, D)`. The target encoder, an EMA copy of the
    encoder (`EMATeacher(source="output")`), runs on the whole image; its output is
    layer-normalised without affine (`F.layer_norm`, eps 1e-5) and gathered at the target
    blocks. The loss is smooth L1 (beta `loss_beta`), averaged over every feature of
    every target token of every block, in float32.

    `call(images, masks=None)` returns `pred` `(B, M, T, D)`, `mask` `(B, N)` (1 = not
    in the context), `context_ids` `(B, C)` and `target_ids` `(B, M, T)`. Fix the masks
    with `masks={"ids_keep": (B, C), "target_ids": (B, M, T)}` int tensors.

    At every training step `compute_loss` first moves the target encoder towards the
    encoder, `t <- m t + (1 - m) s`, with `m` ramping linearly from `momentum` to
    `final_momentum` over `momentum_steps` steps (counted by the target encoder), then
    computes the target. That equals the official order (momentum update after each
    optimizer step), since the target encoder starts as a copy of the encoder.

    Differences from the official code: the masks' static counts (see
    `MultiBlockMaskGenerator`); the ramp length is an argument (`keras-mim pretrain` sets
    it to the run's steps, as the official ramps over `epochs x iterations per epoch`);
    the predictor's init (see `JEPAPredictor`). The encoder has no cls token by default
    (`encoder_defaults`), as the official ViTs; with one, the cls token is encoded with
    the context and not predicted.

    Args:
        encoder: the context encoder (`ViTEncoder`, 2D token grid); after pretraining
            this object is what downstream models reuse.
        predictor: a `JEPAPredictor`, a dict of its arguments (`predictor_dim`, `depth`,
            `num_heads`, `mlp_ratio`; default 384 wide, 6 blocks, the encoder's heads), or
            None for those defaults.
        target_encoder: None (an EMA copy of `encoder` made now), or an `EMATeacher` with
            `source="output"` (or its config).
        mask_generator: a `MultiBlockMaskGenerator`, its serialized config, a dict of
            its arguments (`num_targets`, `target_scale`, ...), or `"multi_block"`
            (I-JEPA's: 4 target blocks of scale 0.15-0.2, aspect 0.75-1.5, context
            scale 0.85-1.0).
        momentum: EMA momentum at step 0 (default 0.996).
        final_momentum: EMA momentum at the end of the ramp (default 1.0).
        momentum_steps: steps of the linear ramp (default 100000; set it to the run's
            training steps, as the official does).
        loss_beta: smooth-L1 beta (torch's default 1.0, the official's).
        seed: optional int seed of the mask generator when built from a name.
        **kwargs: standard model arguments (name, dtype).

    Examples:
        >>> import numpy as np, keras
        >>> model = IJEPA.from_preset("ijepa_vit_test", seed=0)
        >>> model.compile(optimizer=keras.optimizers.AdamW(1e-3))
        >>> history = model.fit(np.random.rand(8, 16, 16, 3).astype("float32"), epochs=1, verbose=0)
        >>> out = model.predict(np.zeros((2, 16, 16, 3), "float32"), verbose=0)
        >>> out["pred"].shape, out["context_ids"].shape  # 2 target blocks of 4 tokens; 8 context tokens
        ((2, 2, 4, 32), (2, 8))
    """

    encoder_defaults = {"cls_token": False}  # the official ViTs have none

    def __init__(self, encoder, predictor=None, target_encoder=None, mask_generator="multi_block", momentum=None,
                 final_momentum=None, momentum_steps=None, loss_beta=1.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.encoder = check_encoder(encoder, "IJEPA")
        grid = tuple(encoder.grid_shape)
        if len(grid) != 2 or tuple(encoder.output_grid_shape) != grid:
            raise ValueError(
                f"IJEPA needs an image encoder with one output token per patch of a 2D grid, got grid "
                f"{encoder.grid_shape} and output grid {encoder.output_grid_shape}."
            )
        if isinstance(mask_generator, dict) and "class_name" not in mask_generator:  # its arguments
            mask_generator = MultiBlockMaskGenerator(seed=seed, **mask_generator)
        self.mask_generator = get_mask_generator(mask_generator, seed=seed)
        if not isinstance(self.mask_generator, MultiBlockMaskGenerator):
            raise TypeError(
                f"`mask_generator` must draw context and target blocks (a MultiBlockMaskGenerator or "
                f"'multi_block'), got {type(self.mask_generator).__name__}."
            )
        self.num_context = self.mask_generator.num_visible(grid)  # C; raises if the blocks cannot fit
        self.num_target_tokens = self.mask_generator.num_target_tokens(grid)  # T
        self.predictor = self.make_predictor(predictor)
        self.target_encoder = self.make_target_encoder(
            target_encoder, dict(momentum=momentum, final_momentum=final_momentum, momentum_steps=momentum_steps))
        if isinstance(loss_beta, bool) or not isinstance(loss_beta, (int, float)) or not loss_beta > 0:
            raise ValueError(f"`loss_beta` must be a float > 0, got {loss_beta!r}.")
        self.loss_beta = float(loss_beta)
        self.seed = seed

    def make_predictor(self, predictor):
        enc = self.encoder
        if isinstance(predictor, dict) and "class_name" in predictor:
            predictor = keras.saving.deserialize_keras_object(predictor)
        if predictor is None or isinstance(predictor, dict):
            args = {"num_heads": enc.num_heads, **(predictor or {})}
            return JEPAPredictor(enc.grid_shape, enc.output_dim, dtype=self.dtype_policy, name="predictor", **args)
        if not isinstance(predictor, JEPAPredictor):
            raise TypeError(f"`predictor` must be a JEPAPredictor, a dict of its arguments or None, "
                            f"got {type(predictor).__name__}.")
        if tuple(predictor.grid_shape) != tuple(enc.grid_shape) or predictor.output_dim != enc.output_dim:
            raise ValueError(
                f"The predictor works on grid {predictor.grid_shape} with output width {predictor.output_dim}, "
                f"but the encoder has grid {enc.grid_shape} and width {enc.output_dim}."
            )
        return predictor

    def make_target_encoder(self, target_encoder, settings):
        given = {k: v for k, v in settings.items() if v is not None}
        if target_encoder is None:
            settings = {"momentum": MOMENTUM, "final_momentum": FINAL_MOMENTUM, **given}
            return EMATeacher(self.encoder, source="output", layer_norm=None, final_layer_norm=True, top_k=1,
                              name="target_encoder", **settings)
        if given:
            raise ValueError(f"`{', '.join(given)}` configure the target encoder IJEPA makes; with "
                             "`target_encoder` given, set them on that EMATeacher instead.")
        return check_teacher(target_encoder, self.encoder, name="target_encoder", source="output")

    @property
    def mask_ratio(self):
        """Share of the tokens the context encoder does not see, `1 - C / N`."""
        return 1.0 - self.num_context / self.encoder.num_patches

    # The target encoder's schedule, read through.
    momentum = property(lambda self: self.target_encoder.momentum)
    final_momentum = property(lambda self: self.target_encoder.final_momentum)
    momentum_steps = property(lambda self: self.target_encoder.momentum_steps)

    def build(self, images_shape=None):
        if not self.encoder.built:
            self.encoder.build()
        if not self.predictor.built:
            self.predictor.build()
        self.built = True

    # ------------------------------------------------------------------ the method
    def random_masking(self, images, masks=None):
        """Context and target blocks: dict of `ids_keep` `(B, C)`, `mask` `(B, N)`,
        `target_ids` `(B, M, T)` (fixed by `masks` when given)."""
        if masks is None:
            return self.mask_generator(images, grid_shape=self.encoder.grid_shape)
        m, t, c = self.mask_generator.num_targets, self.num_target_tokens, self.num_context
        if not isinstance(masks, dict) or {"ids_keep", "target_ids"} - set(masks):
            raise ValueError("`masks` must be a dict with `ids_keep` (B, C) and `target_ids` (B, M, T).")
        context, targets = masks["ids_keep"], masks["target_ids"]
        if tuple(context.shape[1:]) != (c,) or tuple(targets.shape[1:]) != (m, t):
            raise ValueError(f"`masks` must hold ids_keep (B, {c}) and target_ids (B, {m}, {t}), got "
                             f"{tuple(context.shape)} and {tuple(targets.shape)}.")
        n = self.encoder.num_patches
        mask = hidden_mask(context, n)  # (B, N), 1 = not context
        return {"ids_keep": context, "target_ids": targets, "mask": mask}

    def forward_context(self, images, masking, training=None):
        """Encode the context block, predict the target blocks: `(B, M, T, D)`."""
        z = self.encoder(images, ids_keep=masking["ids_keep"], training=training)  # (B, P + C, D)
        z = z[:, self.encoder.num_prefix_tokens :]  # (B, C, D)
        return self.predictor(z, masking["ids_keep"], masking["target_ids"], training=training)

    def forward_target(self, images, target_ids):
        """Layer-normed target-encoder features at the target blocks `(B, M, T, D)`, no gradient."""
        h = self.target_encoder(images)  # (B, N, D) float32, layer-normed
        m, t = target_ids.shape[1], target_ids.shape[2]
        h = gather_tokens(h, ops.reshape(target_ids, (-1, m * t)))  # (B, M T, D)
        return ops.reshape(h, (-1, m, t, h.shape[-1]))

    def forward_loss(self, pred, target):
        return smooth_l1(pred, target, self.loss_beta)

    def call(self, images, masks=None, training=None):
        self.encoder.check_images(images)
        masking = self.random_masking(images, masks)
        pred = self.forward_context(images, masking, training=training)
        return {"pred": pred, "mask": masking["mask"], "context_ids": masking["ids_keep"],
                "target_ids": masking["target_ids"]}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if y_pred is None:
            y_pred = self(x, training=training)
        if training:
            self.target_encoder.update(self.encoder)  # before the target: it then holds the current encoder
        target = self.forward_target(x, y_pred["target_ids"])
        return self.add_layer_losses(self.forward_loss(y_pred["pred"], target))

    def get_config(self):
        config = super().get_config()
        config.update(
            encoder=keras.saving.serialize_keras_object(self.encoder),
            predictor=keras.saving.serialize_keras_object(self.predictor),
            target_encoder=keras.saving.serialize_keras_object(self.target_encoder),
            mask_generator=keras.saving.serialize_keras_object(self.mask_generator),
            loss_beta=self.loss_beta,
            seed=self.seed,
        )
        return config


def predictor(predictor_dim, depth, num_heads):
    """`JEPAPredictor` arguments of a preset."""
    return dict(predictor_dim=predictor_dim, depth=depth, num_heads=num_heads)


#: The test preset's blocks: 2 targets of 4 tokens and 8 context tokens on the 4 x 4 grid.
TEST_BLOCKS = {"num_targets": 2, "target_scale": (0.25, 0.35)}

register_method(MethodSpec(
    name="ijepa", model=IJEPA, family="features", schedule_steps=("momentum_steps",),
    description="I-JEPA: predict EMA target-encoder features of target blocks from a context block.",
    paper="Assran et al., CVPR 2023", code="facebookresearch/ijepa",
    presets={
        "ijepa_vit_base_patch16": dict(
            description="I-JEPA ViT-B/16, 224 px, no cls token; predictor 384 x 6 blocks x 12 heads "
                        "(the official `init_model` default).",
            encoder=VIT_BASE_16, kwargs={"predictor": predictor(384, 6, 12)}),
        "ijepa_vit_huge_patch14": dict(
            description="I-JEPA ViT-H/14, 224 px, no cls token; predictor 384 x 12 blocks x 16 heads "
                        "(official in1k_vith14_ep300.yaml).",
            encoder=VIT_HUGE_14, kwargs={"predictor": predictor(384, 12, 16)}),
        "ijepa_vit_nano_patch2_16": dict(
            description="64 x 4 x 4, 16 px, patch 2 (8 x 8 grid: 17 context tokens, 4 blocks of 8); "
                        "predictor 32 x 2 x 4: digits-sized images.",
            encoder=vit(16, 2, 64, 4, 4), kwargs={"predictor": predictor(32, 2, 4)}),
        "ijepa_vit_test": dict(
            description="I-JEPA on the test ViT: 2 target blocks of 4 tokens, 8 context tokens, predictor 16 x 1 x 2.",
            encoder=TEST_VIT, kwargs={"predictor": predictor(16, 1, 2), "mask_generator": TEST_BLOCKS}),
    },
    cli_preset="ijepa_vit_nano_patch2_16",
))
