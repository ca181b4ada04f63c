"""Optimizers for fine-tuning: per-variable learning-rate multipliers on Keras optimizers,
MAE's layer-wise lr decay and its warmup + cosine schedule."""

from keras_mim.optimizers.layer_decay import (
    finetune_optimizer,
    layer_decay_multipliers,
    layer_ids,
    no_weight_decay_paths,
    warmup_cosine_schedule,
)
from keras_mim.optimizers.multipliers import LayerDecayAdamW, LearningRateMultiplierMixin
