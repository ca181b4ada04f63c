"""Layer-wise learning-rate decay for fine-tuning a ViT, as MAE's `util/lr_decay.py`
(after BEiT / ELECTRA), and MAE's fine-tuning optimizer and schedule.

Layer ids, found by object identity through the encoder protocol (not by names):
the patch embedding, the position embedding and the cls / mask tokens are layer 0,
`encoder.blocks[i]` is layer `i + 1`, everything else (the encoder's final norm, a
classifier's `fc_norm` and head) is layer `L + 1` with `L = len(encoder.blocks)`.
An encoder with its own table (`encoder.layer_groups()`: a list of lists of layers,
group `i` = layer id `i`, e.g. `ConvNeXtEncoder`'s official ConvNeXt V2 grouping)
uses it instead; everything outside it is layer `len(groups)`.
A variable of layer `i` trains with `layer_decay ** (L + 1 - i)` times the learning rate.
Weight decay skips every variable with at most one axis (biases, norm scales, LayerScale)
and the tokens and position embeddings (the official `ndim == 1 or in no_weight_decay()`).
"""

import math

import keras

from keras_mim.optimizers.multipliers import LayerDecayAdamW

#: Encoder attributes holding token variables that sit in layer 0 and get no weight decay.
TOKEN_ATTRIBUTES = ("cls_token", "mask_token", "dist_token")


def _encoder(model):
    """`model` if it is an encoder (has `blocks`), else `model.encoder`; checks the parts
    the layer table reads."""
    encoder = model if hasattr(model, "blocks") else getattr(model, "encoder", None)
    needed = ("blocks",) if hasattr(encoder, "layer_groups") else ("blocks", "patch_embed", "pos_embed")
    missing = [a for a in needed if not hasattr(encoder, a)] if encoder is not None else list(needed)
    if missing:
        raise TypeError(
            "Layer-wise lr decay needs a ViT encoder (attributes `blocks`, `patch_embed`, "
            "`pos_embed`) or a model holding one in `.encoder`, got "
            f"{type(model).__name__} missing {', '.join(missing)}."
        )
    return encoder


def _variables(obj):
    """The variables of a layer, or `[obj]` for a variable, or `[]`."""
    if isinstance(obj, keras.Variable):
        return [obj]
    if isinstance(obj, keras.layers.Layer):
        return list(obj.weights)
    return []


def _stem(encoder):
    """Variables of layer 0 `(all, tokens and position embeddings)`."""
    tokens = [v for a in TOKEN_ATTRIBUTES for v in _variables(getattr(encoder, a, None))]
    pos = _variables(getattr(encoder, "pos_embed", None))
    return _variables(getattr(encoder, "patch_embed", None)) + tokens + pos, tokens + pos


def _groups(encoder):
    """Layer id -> list of layers: the encoder's own `layer_groups()`, or MAE's (stem, blocks)."""
    if hasattr(encoder, "layer_groups"):
        return [list(group) for group in encoder.layer_groups()]
    return [[]] + [[block] for block in encoder.blocks]


def _trainable(model):
    """`model.trainable_variables`, checked to have one path each (the tables key on it)."""
    variables = list(model.trainable_variables)
    paths = [v.path for v in variables]
    duplicates = sorted({p for p in paths if paths.count(p) > 1})
    if duplicates:
        raise ValueError(
            f"Trainable variables share the path(s) {duplicates}; give the layers unique names "
            "so each variable can be told apart in the optimizer's table."
        )
    return variables


def layer_ids(model):
    """MAE's layer id of every trainable variable.

    Args:
        model: a ViT encoder (`blocks`, `patch_embed`, `pos_embed`, optional
            `cls_token` / `mask_token`), or a model holding one in `.encoder`
            (a classifier, a pretraining model).

    Returns:
        dict `{variable.path: layer id}` in `model.trainable_variables` order: 0 for
        the patch embedding, position embedding and tokens, `i + 1` for block `i`,
        `len(blocks) + 1` for everything else.

    Examples:
        >>> from keras_mim import ViTEncoder
        >>> enc = ViTEncoder(image_size=8, patch_size=4, embed_dim=8, depth=2, num_heads=2)
        >>> ids = layer_ids(enc)
        >>> sorted(set(ids.values()))
        [0, 1, 2, 3]
        >>> ids[enc.cls_token.path], ids[enc.blocks[1].norm1.gamma.path], ids[enc.norm.gamma.path]
        (0, 2, 3)
    """
    encoder = _encoder(model)
    table = {id(v): 0 for v in _stem(encoder)[0]}
    groups = _groups(encoder)
    for i, layers in enumerate(groups):
        for v in (v for layer in layers for v in _variables(layer)):
            table.setdefault(id(v), i)
    top = len(groups)
    return {v.path: table.get(id(v), top) for v in _trainable(model)}


def layer_decay_multipliers(model, layer_decay=0.75):
    """Learning-rate multipliers of layer-wise decay: `layer_decay ** (L + 1 - layer_id)`.

    Args:
        model: an encoder or a model with `.encoder` (see `layer_ids`).
        layer_decay: decay per layer in (0, 1] (MAE: 0.65 ViT-B, 0.75 ViT-L/H; 1 = none).

    Returns:
        dict `{variable.path: multiplier}`: 1 for the head, `layer_decay ** (L + 1)`
        for the patch embedding.

    Examples:
        >>> from keras_mim import ViTEncoder
        >>> enc = ViTEncoder(image_size=8, patch_size=4, embed_dim=8, depth=2, num_heads=2)
        >>> scales = layer_decay_multipliers(enc, 0.5)
        >>> scales[enc.cls_token.path], scales[enc.blocks[0].norm1.gamma.path], scales[enc.norm.gamma.path]
        (0.125, 0.25, 1.0)
    """
    if isinstance(layer_decay, bool) or not isinstance(layer_decay, (int, float)) or not 0 < layer_decay <= 1:
        raise ValueError(f"`layer_decay` must be a float in (0, 1], got {layer_decay!r}.")
    ids = layer_ids(model)
    top = len(_groups(_encoder(model)))
    return {path: float(layer_decay) ** (top - i) for path, i in ids.items()}


def no_weight_decay_paths(model):
    """Paths of the trainable variables that get no weight decay: every variable with at
    most one axis (biases, norm parameters) plus the tokens and position embeddings.

    Args:
        model: an encoder or a model with `.encoder` (see `layer_ids`).

    Returns:
        sorted list of variable paths.

    Examples:
        >>> from keras_mim import ViTEncoder
        >>> enc = ViTEncoder(image_size=8, patch_size=4, embed_dim=8, depth=1, num_heads=2)
        >>> skip = no_weight_decay_paths(enc)
        >>> enc.cls_token.path in skip, enc.blocks[0].attn.qkv.bias.path in skip
        (True, True)
        >>> enc.blocks[0].attn.qkv.kernel.path in skip
        False
    """
    special = {id(v) for v in _stem(_encoder(model))[1]}
    return sorted(v.path for v in _trainable(model) if len(v.shape) <= 1 or id(v) in special)


def _check_steps(value, name, minimum):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"`{name}` must be an int >= {minimum}, got {value!r}.")
    return value


def _check_rate(value, name, allow_zero=False):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"`{name}` must be a finite float {'>=' if allow_zero else '>'} 0, got {value!r}.")
    return float(value)


def warmup_cosine_schedule(peak_learning_rate, total_steps, warmup_steps=0, min_learning_rate=0.0):
    """MAE's `adjust_learning_rate` as a Keras schedule of the optimizer step `t`:
    linear warmup `peak * t / warmup_steps`, then a half cosine from `peak` to
    `min_learning_rate` over the remaining steps (held there after `total_steps`).

    MAE evaluates its formula every iteration at the fractional epoch
    `t / steps_per_epoch`, so with `total_steps = epochs * steps_per_epoch` and
    `warmup_steps = warmup_epochs * steps_per_epoch` the values agree step by step;
    a per-epoch schedule (timm's default) would hold each value for a whole epoch.
    Keras evaluates the schedule at the optimizer's `iterations` before the update, so
    the first update uses `t = 0` (lr 0 with warmup), as MAE's first iteration does.

    Args:
        peak_learning_rate: learning rate at the end of warmup (MAE: `blr * batch / 256`).
        total_steps: optimizer steps of the whole run (warmup included).
        warmup_steps: linear warmup steps, `0 <= warmup_steps < total_steps`.
        min_learning_rate: floor of the cosine (MAE fine-tuning: 1e-6), at most the peak.

    Returns:
        `keras.optimizers.schedules.CosineDecay`.

    Examples:
        >>> s = warmup_cosine_schedule(1e-3, total_steps=10, warmup_steps=2, min_learning_rate=1e-6)
        >>> [round(float(s(t)), 7) for t in (0, 1, 2, 6, 10)]
        [0.0, 0.0005, 0.001, 0.0005005, 1e-06]
    """
    peak = _check_rate(peak_learning_rate, "peak_learning_rate")
    minimum = _check_rate(min_learning_rate, "min_learning_rate", allow_zero=True)
    total_steps = _check_steps(total_steps, "total_steps", 1)
    warmup_steps = _check_steps(warmup_steps, "warmup_steps", 0)
    if warmup_steps >= total_steps:
        raise ValueError(
            f"`warmup_steps`={warmup_steps} must be smaller than `total_steps`={total_steps}."
        )
    if minimum > peak:
        raise ValueError(
            f"`min_learning_rate`={min_learning_rate!r} is above the peak learning rate {peak!r}; "
            "the cosine would rise. Lower it or raise the learning rate."
        )
    decay = dict(decay_steps=total_steps - warmup_steps, alpha=minimum / peak)
    if warmup_steps == 0:
        return keras.optimizers.schedules.CosineDecay(peak, **decay)
    return keras.optimizers.schedules.CosineDecay(0.0, warmup_target=peak, warmup_steps=warmup_steps, **decay)


def finetune_optimizer(
    model,
    total_steps,
    warmup_steps=None,
    batch_size=256,
    base_learning_rate=1e-3,
    learning_rate=None,
    min_learning_rate=1e-6,
    weight_decay=0.05,
    layer_decay=0.75,
    beta_1=0.9,
    beta_2=0.999,
    epsilon=1e-8,
    **kwargs,
):
    """MAE's fine-tuning optimizer for `model`: AdamW with layer-wise lr decay, no weight
    decay on biases / norms / tokens / position embeddings, and a warmup + cosine schedule.

    Build it after the model (and after freezing any layers): the tables cover
    `model.trainable_variables` by path.

    Args:
        model: an encoder or a model with `.encoder` (e.g. a classifier).
        total_steps: optimizer steps of the run, `epochs * steps_per_epoch`.
        warmup_steps: warmup steps; None takes 5% of `total_steps` (MAE: 5 of 100 epochs).
        batch_size: effective batch size, for the linear scaling rule.
        base_learning_rate: MAE's `blr` (1e-3 for fine-tuning; 5e-4 in the ViT-B recipe);
            the peak rate is `base_learning_rate * batch_size / 256`.
        learning_rate: absolute peak rate; overrides the scaling rule when given.
        min_learning_rate: floor of the cosine.
        weight_decay: decoupled weight decay (0.05).
        layer_decay: per-layer lr decay (0.65 ViT-B, 0.75 ViT-L/H).
        beta_1: Adam's beta 1 (torch's default 0.9, as MAE fine-tuning).
        beta_2: Adam's beta 2 (torch's default 0.999).
        epsilon: Adam epsilon (torch's 1e-8).
        **kwargs: further `keras.optimizers.AdamW` arguments (e.g. `global_clipnorm`).

    Returns:
        a `LayerDecayAdamW`.

    Examples:
        >>> from keras_mim import ViTEncoder
        >>> enc = ViTEncoder(image_size=8, patch_size=4, embed_dim=8, depth=2, num_heads=2)
        >>> opt = finetune_optimizer(enc, total_steps=100, batch_size=64, layer_decay=0.5)
        >>> float(opt.learning_rate), opt.lr_multipliers[enc.cls_token.path]
        (0.0, 0.125)
    """
    if learning_rate is None:
        _check_steps(batch_size, "batch_size", 1)
        learning_rate = _check_rate(base_learning_rate, "base_learning_rate") * batch_size / 256
    total_steps = _check_steps(total_steps, "total_steps", 1)
    if warmup_steps is None:
        warmup_steps = total_steps // 20
    schedule = warmup_cosine_schedule(learning_rate, total_steps, warmup_steps, min_learning_rate)
    return LayerDecayAdamW(
        learning_rate=schedule,
        weight_decay=_check_rate(weight_decay, "weight_decay", allow_zero=True),
        lr_multipliers=layer_decay_multipliers(model, layer_decay),
        no_weight_decay=no_weight_decay_paths(model),
        beta_1=beta_1,
        beta_2=beta_2,
        epsilon=epsilon,
        **kwargs,
    )
