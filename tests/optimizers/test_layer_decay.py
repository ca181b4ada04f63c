"""MAE's layer table, weight-decay exclusions and fine-tuning schedule, each checked
against the official rules re-implemented here on torch-style parameter names."""

import math
import re

import keras
import pytest

from keras_mim.optimizers import (
    LayerDecayAdamW,
    finetune_optimizer,
    layer_decay_multipliers,
    layer_ids,
    no_weight_decay_paths,
    warmup_cosine_schedule,
)
from tests.optimizers.standin import StandInClassifier, tiny_encoder


def official_name(path, model):
    """Our variable path -> the parameter name in MAE's `models_vit.VisionTransformer`."""
    parts = path.split("/")
    prefix = model.encoder.name if hasattr(model, "encoder") else model.name
    if parts[0] in (prefix, model.name):
        parts = parts[1:]
    name = ".".join(parts)
    name = re.sub(r"^block_(\d+)\.", r"blocks.\1.", name)
    return "pos_embed" if name.startswith("pos_embed") else name


def official_layer_id(name, num_layers):
    """MAE `util/lr_decay.py` `get_layer_id_for_vit` (num_layers = len(blocks) + 1)."""
    if name in ("cls_token", "pos_embed", "mask_token"):  # mask token: layer 0 as cls (brief)
        return 0
    if name.startswith("patch_embed"):
        return 0
    if name.startswith("blocks"):
        return int(name.split(".")[1]) + 1
    return num_layers


def official_no_decay(name, ndim):
    """`param_groups_lrd`: ndim == 1 or in `no_weight_decay()` (timm: pos_embed, cls_token,
    dist_token; plus the mask token here)."""
    return ndim == 1 or name in ("pos_embed", "cls_token", "dist_token", "mask_token")


@pytest.mark.parametrize("depth", [2, 12])
def test_layer_table_matches_official_rule(depth):
    encoder = tiny_encoder(depth=depth, embed_dim=16, pos_embed="learned", mask_token=True)
    model = StandInClassifier(encoder)
    decay = 0.75
    ids, scales = layer_ids(model), layer_decay_multipliers(model, decay)
    skip = set(no_weight_decay_paths(model))
    variables = model.trainable_variables
    assert list(ids) == [v.path for v in variables] and len(ids) == 4 + 12 * depth + 2 + 4 + 1
    num_layers = depth + 1
    layer_scales = [decay ** (num_layers - i) for i in range(num_layers + 1)]  # official list
    for v in variables:
        name = official_name(v.path, model)
        assert ids[v.path] == official_layer_id(name, num_layers), name
        assert scales[v.path] == pytest.approx(layer_scales[official_layer_id(name, num_layers)], rel=1e-12)
        assert (v.path in skip) == official_no_decay(name, len(v.shape)), name
    # spot checks: the stem, a block, the head
    assert ids[encoder.pos_embed.pos_embed.path] == ids[encoder.mask_token.path] == 0
    assert ids[encoder.blocks[-1].mlp.fc2.kernel.path] == depth
    assert scales[model.head.kernel.path] == 1.0 and ids[model.fc_norm.gamma.path] == depth + 1
    assert scales[encoder.patch_embed.proj.kernel.path] == pytest.approx(decay ** (depth + 1))


def test_encoder_alone_and_frozen_layers():
    encoder = tiny_encoder()
    ids = layer_ids(encoder)
    assert ids[encoder.norm.gamma.path] == 3 and ids[encoder.cls_token.path] == 0
    assert encoder.pos_embed.pos_embed.path not in ids  # the fixed sin-cos table does not train
    model = StandInClassifier(encoder)
    encoder.norm.trainable = False  # e.g. MAE's global-pool classifier drops the final norm
    assert encoder.norm.gamma.path not in layer_ids(model)
    assert encoder.norm.gamma.path not in no_weight_decay_paths(model)


def test_bad_models_and_arguments():
    with pytest.raises(TypeError, match="blocks"):
        layer_ids(keras.Sequential([keras.layers.Dense(2)]))
    for bad in (0.0, 1.5, -0.1, True, "0.7"):
        with pytest.raises(ValueError, match="layer_decay"):
            layer_decay_multipliers(tiny_encoder(depth=1), bad)


def official_lr(epoch, lr, min_lr, warmup_epochs, epochs):
    """MAE `util/lr_sched.py` `adjust_learning_rate` at a (fractional) epoch."""
    if epoch < warmup_epochs:
        return lr * epoch / warmup_epochs
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * (epoch - warmup_epochs) / (epochs - warmup_epochs)))


def test_schedule_matches_official_per_iteration_formula():
    steps_per_epoch, epochs, warmup_epochs, peak, floor = 7, 10, 2, 4e-3, 1e-6
    schedule = warmup_cosine_schedule(peak, epochs * steps_per_epoch, warmup_epochs * steps_per_epoch, floor)
    # MAE calls adjust_learning_rate(data_iter_step / len(loader) + epoch) every iteration
    for step in [0, 1, 6, 13, 14, 15, 30, 41, 55, 69, 70]:
        expected = official_lr(step / steps_per_epoch, peak, floor, warmup_epochs, epochs)
        assert float(schedule(step)) == pytest.approx(expected, rel=1e-5, abs=1e-10), step
    assert float(schedule(100)) == pytest.approx(floor, rel=1e-5)  # held after the end
    # no warmup: a plain cosine from the peak
    plain = warmup_cosine_schedule(peak, 10, 0, floor)
    assert float(plain(0)) == pytest.approx(peak)
    assert float(plain(5)) == pytest.approx(official_lr(5, peak, floor, 0, 10))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(total_steps=10, warmup_steps=10), "warmup_steps"),
        (dict(total_steps=0), "total_steps"),
        (dict(total_steps=10, warmup_steps=-1), "warmup_steps"),
        (dict(total_steps=10, min_learning_rate=1.0), "min_learning_rate"),
        (dict(peak_learning_rate=0.0, total_steps=10), "peak_learning_rate"),
    ],
)
def test_schedule_errors(kwargs, match):
    kwargs.setdefault("peak_learning_rate", 1e-3)
    with pytest.raises(ValueError, match=match):
        warmup_cosine_schedule(**kwargs)


def test_finetune_optimizer_recipe():
    encoder = tiny_encoder()
    model = StandInClassifier(encoder)
    opt = finetune_optimizer(model, total_steps=200, batch_size=64, base_learning_rate=1e-3, layer_decay=0.65)
    assert isinstance(opt, LayerDecayAdamW)
    schedule = keras.optimizers.schedules.deserialize(opt.get_config()["learning_rate"])
    assert isinstance(schedule, keras.optimizers.schedules.CosineDecay)
    assert schedule.warmup_target == pytest.approx(1e-3 * 64 / 256) and schedule.warmup_steps == 10  # 5%
    assert schedule.alpha * schedule.warmup_target == pytest.approx(1e-6)
    assert (opt.weight_decay, opt.beta_1, opt.beta_2, opt.epsilon) == (0.05, 0.9, 0.999, 1e-8)
    assert opt.lr_multipliers == layer_decay_multipliers(model, 0.65)
    assert list(opt.no_weight_decay) == no_weight_decay_paths(model)
    absolute = finetune_optimizer(model, total_steps=50, warmup_steps=0, learning_rate=2e-3, global_clipnorm=1.0)
    assert float(absolute.learning_rate) == pytest.approx(2e-3) and absolute.global_clipnorm == 1.0
    with pytest.raises(ValueError, match="base_learning_rate"):
        finetune_optimizer(model, total_steps=10, base_learning_rate=-1.0)
    with pytest.raises(ValueError, match="weight_decay"):
        finetune_optimizer(model, total_steps=10, weight_decay=-0.1)
