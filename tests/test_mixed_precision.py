"""The mixed_bfloat16 policy end to end: bfloat16 compute, float32 weights and losses, training."""

import keras
import numpy as np
import pytest

from keras_mim.models.presets import preset_model_class
from tests.training import assert_loss_falls, digits

IMAGE_PRESETS = ["mae_vit_test", "simmim_vit_test", "maskfeat_vit_test", "mfm_vit_test", "data2vec_vit_test",
                 "hpm_vit_test"]


@pytest.fixture
def bfloat16_policy():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


def build(preset):
    return preset_model_class(preset).from_preset(preset, seed=0)


@pytest.mark.parametrize("preset", IMAGE_PRESETS)
def test_bfloat16_compute_float32_weights_and_loss(preset, bfloat16_policy):
    model = build(preset)
    x = digits(8, channels=3)
    y_pred = model(x)
    assert model.compute_dtype == "bfloat16" and model.encoder.compute_dtype == "bfloat16"
    assert {v.dtype for v in model.weights if "float" in v.dtype} == {"float32"}  # (step counters: int)
    loss = model.compute_loss(x=x, y_pred=y_pred)
    assert keras.backend.standardize_dtype(loss.dtype) == "float32"
    assert np.isfinite(float(keras.ops.convert_to_numpy(keras.ops.stop_gradient(loss))))


@pytest.mark.parametrize("preset", ["mae_vit_test", "simmim_vit_test"])
def test_bfloat16_training_loss_is_finite_and_falls(preset, bfloat16_policy):
    keras.utils.set_random_seed(0)
    assert_loss_falls(build(preset), digits(256, channels=3), factor=0.8)
