"""data2vec's target: the averaged, normalised top blocks of an EMA teacher."""

import keras
from keras import ops

from keras_mim.ema import check_same_variables, ema_update, frozen_copy, momentum_schedule

LAYER_NORMS = ("instance", "layer", None)
SOURCES = ("blocks", "output")
ENCODER_NEEDS = ("forward_features", "depth", "num_prefix_tokens")
DEFAULT_TOP_K = 8  # data2vec's ViT-B default (`average_top_k_layers`)


def standardize(x, axis, epsilon):
    """`(x - mean) / sqrt(var + epsilon)` over `axis` (population variance), no affine."""
    mean, var = ops.moments(x, axes=[axis], keepdims=True)
    return (x - mean) / ops.sqrt(var + epsilon)


def _check_momentum(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"`{name}` must be a float in [0, 1], got {value!r}.")
    return float(value)


@keras.saving.register_keras_serializable(package="keras_mim")
class EMATeacher(keras.layers.Layer):
    """An exponential-moving-average copy of a student encoder and the data2vec target.

    `teacher(images)` runs the teacher on the full image (no mask, `training=False`)
    and returns `(B, N, D)` float32 patch tokens (the cls token dropped), without
    gradient. With `source="blocks"` (data2vec): the mean of the outputs of its top
    `top_k` blocks (end of block, before the encoder's final norm), each first
    normalised per `layer_norm`, then optionally layer-normalised once more
    (`final_layer_norm`). With `source="output"` (I-JEPA's target encoder): the
    encoder's own output (after its final norm), then optionally layer-normalised
    (`final_layer_norm`; `top_k` and `layer_norm` do not apply). Normalisations have no affine
    parameters and use `epsilon` (torch's `F.instance_norm` / `F.layer_norm`).

    `update(student)` moves every teacher variable towards the student's,
    `t <- m * t + (1 - m) * s`, and counts the update; it is safe inside a traced
    `compute_loss`. `m` follows data2vec's schedule, `momentum_at(num_updates)`: a linear
    ramp from `momentum` to `final_momentum` over `momentum_steps` updates, then
    constant (or give `momentum=` to `update`). The teacher counts its own updates
    (`num_updates`, saved with the model) instead of reading the optimizer's iteration
    count: under `fit` the two are equal, but the optimizer's variables cannot be read
    inside a JAX-traced `compute_loss` (Keras maps only the model's variables there).

    Normalisation in the reference code (facebookresearch/fairseq, examples/data2vec):
    data2vec 2.0 for images (`config/v2/base_images_only_task.yaml`,
    `models/data2vec2.py` `make_targets`) instance-normalises every block output over
    the tokens (`instance_norm_target_layer`), averages the top 10 of 12 and
    layer-normalises the mean (`layer_norm_targets`), with momentum 0.9998 -> 0.99999
    over 100k updates: the defaults here. data2vec 1.0 for images
    (`config/vision/pretraining/base_imagenet_d2v1.yaml`) used no per-block norm
    (`layer_norm=None`), the final layer norm, top 6 blocks and 0.999 -> 0.9998 over
    all updates. Both normalise after dropping the cls token.

    The teacher's encoder is a frozen copy made at construction; it is serialised in
    this layer's config and its weights travel in the `.keras` file of the model
    holding it. It never trains: `trainable` stays False whatever is set.

    Args:
        encoder: the student encoder to copy (a `ViTEncoder`, or an encoder with
            `forward_features`, `depth` and `num_prefix_tokens`).
        top_k: how many top blocks to average; None: min(8, depth) (data2vec's ViT-B
            default 8).
        layer_norm: per-block normalisation: `"instance"` (each feature over the tokens
            of a sample, data2vec 2.0), `"layer"` (each token over its features) or None.
        final_layer_norm: layer-normalise the averaged target (data2vec 1.0 and 2.0).
        momentum: EMA momentum at step 0, in [0, 1].
        final_momentum: EMA momentum after `momentum_steps`, in [0, 1].
        momentum_steps: updates (training steps) of the linear ramp (0: `final_momentum`
            always).
        epsilon: epsilon of the normalisations (torch's default 1e-5).
        source: `"blocks"` (data2vec's averaged blocks) or `"output"` (the encoder's
            final output, I-JEPA).
        copy: copy `encoder` (default); False adopts it as the teacher itself (used
            when deserialising).
        **kwargs: standard layer arguments.

    Examples:
        >>> import numpy as np
        >>> from keras_mim.models.vit_encoder import ViTEncoder
        >>> student = ViTEncoder(image_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2)
        >>> teacher = EMATeacher(student, top_k=2)
        >>> tuple(teacher(np.zeros((2, 16, 16, 3), "float32")).shape), teacher.layers_used
        ((2, 16, 32), [0, 1])
        >>> teacher.update(student)  # momentum 0.9998 at update 0
        >>> int(teacher.num_updates)
        1
    """

    def __init__(self, encoder, top_k=None, layer_norm="instance", final_layer_norm=True,
                 momentum=0.9998, final_momentum=0.99999, momentum_steps=100_000, epsilon=1e-5,
                 source="blocks", copy=True, **kwargs):
        super().__init__(**kwargs)
        if isinstance(encoder, dict):
            encoder = keras.saving.deserialize_keras_object(encoder)
        missing = [a for a in ENCODER_NEEDS if not hasattr(encoder, a)]
        if not isinstance(encoder, keras.Model) or missing:
            raise TypeError(
                f"`encoder` must be an encoder model such as ViTEncoder (with {', '.join(ENCODER_NEEDS)}), "
                f"got {type(encoder).__name__}."
            )
        self.encoder = frozen_copy(encoder) if copy else encoder
        self.encoder.trainable = False
        depth = self.encoder.depth
        if top_k is None:
            top_k = min(DEFAULT_TOP_K, depth)
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= depth:
            raise ValueError(
                f"`top_k` must be an int in [1, depth={depth}] (blocks of the teacher to average), "
                f"got {top_k!r}."
            )
        self.top_k = top_k
        if layer_norm not in LAYER_NORMS:
            raise ValueError(f"`layer_norm` must be one of {list(LAYER_NORMS)}, got {layer_norm!r}.")
        self.layer_norm = layer_norm
        self.final_layer_norm = bool(final_layer_norm)
        self.momentum = _check_momentum(momentum, "momentum")
        self.final_momentum = _check_momentum(final_momentum, "final_momentum")
        if isinstance(momentum_steps, bool) or not isinstance(momentum_steps, int) or momentum_steps < 0:
            raise ValueError(f"`momentum_steps` must be an int >= 0, got {momentum_steps!r}.")
        self.momentum_steps = momentum_steps
        if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not epsilon > 0:
            raise ValueError(f"`epsilon` must be a float > 0, got {epsilon!r}.")
        self.epsilon = float(epsilon)
        if source not in SOURCES:
            raise ValueError(f"`source` must be one of {list(SOURCES)}, got {source!r}.")
        self.source = source
        # Updates made so far: the step of the momentum schedule, saved with the model.
        self.num_updates = self.add_weight(shape=(), dtype="int32", initializer="zeros",
                                           trainable=False, name="num_updates")
        self.built = True  # the copied encoder arrives built

    # The teacher only ever changes through `update`.
    @property
    def trainable(self):
        return False

    @trainable.setter
    def trainable(self, value):
        keras.layers.Layer.trainable.fset(self, False)

    @property
    def layers_used(self):
        """Indices of the averaged blocks (the top `top_k`)."""
        depth = self.encoder.depth
        return list(range(depth - self.top_k, depth))

    def normalize_layer(self, x):
        """One block output `(B, N, D)` float32, normalised per `layer_norm`."""
        if self.layer_norm == "instance":
            return standardize(x, 1, self.epsilon)  # each feature over the tokens (BTC -> BCT)
        if self.layer_norm == "layer":
            return standardize(x, -1, self.epsilon)  # each token over its features
        return x

    def call(self, images):
        p = self.encoder.num_prefix_tokens
        if self.source == "output":
            target = ops.cast(self.encoder(images, training=False)[:, p:], "float32")  # (B, N, D)
            if self.final_layer_norm:
                target = standardize(target, -1, self.epsilon)
            return ops.stop_gradient(target)
        _, blocks = self.encoder.forward_features(images, self.layers_used, training=False)
        p = self.encoder.num_prefix_tokens
        layers = [self.normalize_layer(ops.cast(b[:, p:], "float32")) for b in blocks]  # K x (B, N, D)
        target = ops.mean(ops.stack(layers, axis=0), axis=0)  # (B, N, D)
        if self.final_layer_norm:
            target = standardize(target, -1, self.epsilon)
        return ops.stop_gradient(target)

    def momentum_at(self, step):
        """The momentum at update `step` (int or scalar tensor), float32."""
        return momentum_schedule(step, self.momentum, self.final_momentum, self.momentum_steps)

    def update(self, student, momentum=None):
        """`t <- momentum * t + (1 - momentum) * s` for every variable (float32 math).

        `momentum` None: the schedule's value at `num_updates`, the number of updates
        made so far (one per training step: the optimizer's iteration count during
        `fit`). Every call counts one update.
        """
        check_same_variables(self.encoder, student)
        if momentum is None:
            momentum = self.momentum_at(self.num_updates)
        ema_update(self.encoder, student, momentum)
        self.num_updates.assign(self.num_updates + 1)

    def get_config(self):
        config = super().get_config()
        config.update(
            encoder=keras.saving.serialize_keras_object(self.encoder),
            top_k=self.top_k,
            layer_norm=self.layer_norm,
            final_layer_norm=self.final_layer_norm,
            momentum=self.momentum,
            final_momentum=self.final_momentum,
            momentum_steps=self.momentum_steps,
            epsilon=self.epsilon,
            source=self.source,
        )
        config.pop("trainable", None)  # always frozen
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        return cls(copy=False, **config)


def check_teacher(teacher, student, name="teacher", source=None):
    """A teacher given to a model, checked against its `student` encoder: an `EMATeacher`
    (or its config; with `source`, of that source) holding a copy of `student` with the
    same variables. Raises TypeError / ValueError naming `name` otherwise.

    Examples:
        >>> from keras_mim.models.vit_encoder import ViTEncoder
        >>> student = ViTEncoder(image_size=8, patch_size=4, embed_dim=8, depth=1, num_heads=2)
        >>> config = keras.saving.serialize_keras_object(EMATeacher(student, top_k=1))  # as in a model's config
        >>> teacher = check_teacher(config, student)
        >>> type(teacher).__name__, teacher.encoder is student
        ('EMATeacher', False)
    """
    if isinstance(teacher, dict):
        teacher = keras.saving.deserialize_keras_object(teacher)
    if not isinstance(teacher, EMATeacher) or (source is not None and teacher.source != source):
        kind = "an EMATeacher" + (f" with source={source!r}" if source else "")
        raise TypeError(f"`{name}` must be {kind}, its config or None, got {type(teacher).__name__}.")
    if teacher.encoder is student:
        raise ValueError(f"The {name.replace('_', ' ')}'s encoder must be a copy, not the student `encoder` itself.")
    check_same_variables(teacher.encoder, student)
    return teacher

