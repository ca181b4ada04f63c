"""Per-variable learning-rate multipliers and weight-decay exclusion on Keras optimizers:
the Keras counterpart of torch parameter groups with an `lr_scale` (BEiT / MAE layer decay).

Variables are named by their `variable.path` (e.g. `"vi_t_encoder/block_0/attn/qkv/kernel"`),
which Keras keeps when a model is saved to `.keras` and loaded, so the table travels in the
optimizer's config and a loaded model trains on exactly as before.
"""

import math
from types import MappingProxyType

import keras
from keras import ops

from keras_mim.compat import OptimizerUpdateHooks


def _check_table(lr_multipliers, no_weight_decay, default_lr_multiplier):
    """Validate and freeze the tables: `({path: float}, (paths...), float | None)`."""
    if lr_multipliers is None:
        lr_multipliers = {}
    if not isinstance(lr_multipliers, dict):
        raise TypeError(
            "`lr_multipliers` must be a dict {variable path: float multiplier}, "
            f"got {type(lr_multipliers).__name__}."
        )
    table = {}
    for path, scale in lr_multipliers.items():
        if not isinstance(path, str):
            raise TypeError(f"`lr_multipliers` keys must be variable paths (str), got {path!r}.")
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale >= 0 or math.isinf(scale):
            raise ValueError(
                f"`lr_multipliers[{path!r}]` must be a finite float >= 0, got {scale!r}."
            )
        table[path] = float(scale)
    if no_weight_decay is None:
        no_weight_decay = ()
    if isinstance(no_weight_decay, str) or not all(isinstance(p, str) for p in no_weight_decay):
        raise TypeError(
            f"`no_weight_decay` must be a list of variable paths (str), got {no_weight_decay!r}."
        )
    if default_lr_multiplier is not None:
        if isinstance(default_lr_multiplier, bool) or not isinstance(default_lr_multiplier, (int, float)) or not (
            default_lr_multiplier >= 0
        ):
            raise ValueError(
                f"`default_lr_multiplier` must be None or a float >= 0, got {default_lr_multiplier!r}."
            )
        default_lr_multiplier = float(default_lr_multiplier)
    return MappingProxyType(table), tuple(sorted(set(no_weight_decay))), default_lr_multiplier


class LearningRateMultiplierMixin(OptimizerUpdateHooks):
    """Mix into any Keras optimizer class to give each variable its own learning-rate
    multiplier and to switch weight decay off per variable.

    A variable `p` with multiplier `s` is updated with learning rate `s * lr(t)`
    (`lr(t)` the optimizer's float or schedule), and, when decayed, with decoupled weight
    decay `p -= s * lr(t) * weight_decay * p`, as a torch parameter group with
    `lr = s * lr(t)` (timm / MAE `param_groups_lrd`). Variables sharing a multiplier go
    through the optimizer's own (backend-specific) update in one group.

    The mixin overrides the two steps of `apply` that `keras_mim.compat.OptimizerUpdateHooks`
    exposes: `update_variables(grads, variables, learning_rate)` (the base optimizer's own
    update, run once per multiplier group with the scaled rate) and
    `decay_variables(variables)`. So it works for any optimizer whose variable update is
    driven by the `learning_rate` it is given (all of Keras' built-in ones), with gradient
    clipping, accumulation and EMA of the base class, inside `model.fit` on TensorFlow,
    JAX and PyTorch, jit-compiled or not. Not supported: `tf.distribute` strategies (the
    weight decay is applied in the replica context).

    Put the mixin first: `class MySGD(LearningRateMultiplierMixin, keras.optimizers.SGD)`,
    and register the class with `keras.saving.register_keras_serializable` to save it.

    Args:
        *args: the base optimizer's arguments.
        lr_multipliers: dict `{variable.path: multiplier}`; see `layer_decay_multipliers`.
        no_weight_decay: list of variable paths that get no weight decay (on top of any
            excluded with Keras' `exclude_from_weight_decay`).
        default_lr_multiplier: multiplier of variables missing from `lr_multipliers`;
            None (default) makes a missing variable an error when the optimizer is
            built, so a table that does not fit the model cannot pass silently.
        **kwargs: the base optimizer's keyword arguments.
    """

    def __init__(self, *args, lr_multipliers=None, no_weight_decay=None, default_lr_multiplier=None, **kwargs):
        super().__init__(*args, **kwargs)
        tables = _check_table(lr_multipliers, no_weight_decay, default_lr_multiplier)
        self._lr_multipliers, self._no_weight_decay, self.default_lr_multiplier = tables

    @property
    def lr_multipliers(self):
        """`{variable path: multiplier}` (read-only)."""
        return self._lr_multipliers

    @property
    def no_weight_decay(self):
        """Sorted tuple of the variable paths without weight decay."""
        return self._no_weight_decay

    def build(self, variables):
        if self.built:
            return
        scales, missing = {}, []
        for variable in variables:
            scale = self._lr_multipliers.get(variable.path, self.default_lr_multiplier)
            if scale is None:
                missing.append(variable.path)
            scales[variable.path] = scale
        if missing:
            raise ValueError(
                f"{type(self).__name__} has no learning-rate multiplier for the trainable "
                f"variable(s) {missing}; `lr_multipliers` covers {len(self._lr_multipliers)} "
                "paths. Build the optimizer for this model (e.g. `finetune_optimizer(model)` "
                "after freezing or unfreezing layers), or pass `default_lr_multiplier`."
            )
        # Frozen mappings: the trackers of Keras (and TF's AutoTrackable) leave them alone.
        self._scale_by_path = MappingProxyType(scales)
        self._no_decay_paths = frozenset(self._no_weight_decay)
        super().build(variables)

    def lr_multiplier(self, variable):
        """The learning-rate multiplier of `variable` (the optimizer must be built)."""
        self._check_built("lr_multiplier")
        return self._scale_by_path[variable.path]

    def uses_weight_decay(self, variable):
        """Whether `variable` gets weight decay (False when `weight_decay` is None)."""
        self._check_built("uses_weight_decay")
        return self.weight_decay is not None and self._decays(variable)

    def _check_built(self, what):
        if not self.built:
            raise ValueError(
                f"`{what}` needs a built optimizer: call `optimizer.build(model.trainable_variables)` "
                "or train once."
            )

    def _decays(self, variable):
        """Weight decay on `variable`: not in `no_weight_decay`, nor excluded the Keras way."""
        return variable.path not in self._no_decay_paths and self.keras_uses_weight_decay(variable)

    def _groups(self, grads, variables):
        """`{multiplier: (grads, variables)}` in first-seen order."""
        groups = {}
        for grad, variable in zip(grads, variables):
            pair = groups.setdefault(self._scale_by_path[variable.path], ([], []))
            pair[0].append(grad)
            pair[1].append(variable)
        return groups

    def update_variables(self, grads, variables, learning_rate):
        for scale, (group_grads, group_vars) in self._groups(grads, variables).items():
            rate = learning_rate if scale == 1.0 else ops.multiply(learning_rate, scale)
            super().update_variables(group_grads, group_vars, rate)

    def decay_variables(self, variables):
        if self.weight_decay is None:
            return
        learning_rate = self.learning_rate
        for variable in variables:
            if not self._decays(variable):
                continue
            scale = self._scale_by_path[variable.path]
            rate = ops.cast(learning_rate, variable.dtype) * ops.cast(self.weight_decay * scale, variable.dtype)
            self.assign_sub(variable, ops.multiply(variable, rate))  # p -= s * lr * wd * p

    def get_config(self):
        config = super().get_config()
        config.update(
            lr_multipliers=dict(self._lr_multipliers),
            no_weight_decay=list(self._no_weight_decay),
            default_lr_multiplier=self.default_lr_multiplier,
        )
        return config


@keras.saving.register_keras_serializable(package="keras_mim")
class LayerDecayAdamW(LearningRateMultiplierMixin, keras.optimizers.AdamW):
    """AdamW with a learning-rate multiplier per variable and per-variable weight-decay
    exclusion: the optimizer of MAE / BEiT fine-tuning with layer-wise lr decay.

    Everything else is `keras.optimizers.AdamW` (learning-rate schedules, clipping,
    gradient accumulation, EMA); see `LearningRateMultiplierMixin` for the update rule and
    `finetune_optimizer` for MAE's recipe built from a model. Keras' Adam puts `epsilon`
    on the un-bias-corrected `sqrt(v)` ("epsilon hat"), torch on the corrected one; the
    two agree except where `sqrt(v_hat)` is as small as `epsilon`.

    Args:
        learning_rate: float or `keras.optimizers.schedules.LearningRateSchedule`.
        weight_decay: decoupled weight decay (scaled by each variable's multiplier).
        lr_multipliers: dict `{variable.path: multiplier}`.
        no_weight_decay: list of variable paths without weight decay.
        default_lr_multiplier: multiplier of variables missing from `lr_multipliers`
            (None: a missing variable is an error at build time).
        **kwargs: `keras.optimizers.AdamW` arguments (beta_1, beta_2, epsilon, clipnorm, ...).

    Examples:
        >>> import keras, numpy as np
        >>> head = keras.layers.Dense(2, name="head")
        >>> head.build((None, 3))
        >>> opt = LayerDecayAdamW(0.1, weight_decay=0.05,
        ...                       lr_multipliers={"head/kernel": 0.5, "head/bias": 1.0},
        ...                       no_weight_decay=["head/bias"])
        >>> opt.build(head.trainable_variables)
        >>> opt.lr_multiplier(head.kernel), opt.uses_weight_decay(head.bias)
        (0.5, False)
        >>> before = keras.ops.convert_to_numpy(head.kernel)
        >>> opt.apply([np.ones((3, 2), "float32"), np.ones(2, "float32")], head.trainable_variables)
        >>> step = before - keras.ops.convert_to_numpy(head.kernel)  # 0.5 * 0.1 * (1 + 0.05 * p)
        >>> bool(np.allclose(step, 0.05 * (1 + 0.05 * before), atol=1e-5))
        True
    """

    def __init__(
        self,
        learning_rate=0.001,
        weight_decay=0.05,
        lr_multipliers=None,
        no_weight_decay=None,
        default_lr_multiplier=None,
        **kwargs,
    ):
        super().__init__(
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            lr_multipliers=lr_multipliers,
            no_weight_decay=no_weight_decay,
            default_lr_multiplier=default_lr_multiplier,
            **kwargs,
        )
