"""The contract every registered mask generator keeps, on every backend."""

import math

import keras
import numpy as np
import pytest

from keras_mim import MaskedAutoencoder
from keras_mim.masking import MASK_GENERATORS, get_mask_generator
from tests.conftest import inference_outputs, to_numpy

# name -> (constructor kwargs for the contract, grid, fewest distinct masks in a batch of 8)
CASES = {
    "random": ({}, (6, 6), 7),
    "block": ({}, (6, 6), 6),
    "simmim": ({"mask_patch_size": 8, "model_patch_size": 4}, (8, 8), 6),
    "grid": ({}, (4, 4), 2),
    "red": ({}, (6, 6), 6),
    "blue": ({}, (6, 6), 6),
    "green": ({}, (6, 6), 6),
    "purple": ({}, (6, 6), 6),
    "tube": ({}, (2, 4, 4), 6),
    "running_cell": ({}, (2, 4, 4), 2),
    "disjoint": ({}, (6, 6), 7),
    "guided": ({}, (6, 6), 7),
    "easy_to_hard": ({}, (6, 6), 7),
    "multi_block": ({}, (6, 6), 6),
    "time_frequency": ({}, (8, 4), 6),
    "dirichlet": ({}, (3, 4, 4), 7),
}


def make(name, seed=0):
    kwargs, _, _ = CASES[name]
    return get_mask_generator(name, seed=seed, **kwargs)


def draw(gen, grid, batch=8):
    return {k: to_numpy(v) for k, v in gen(np.zeros((batch, 1), "float32"), grid_shape=grid).items()}


def test_every_registered_generator_is_under_contract():
    assert sorted(CASES) == sorted(MASK_GENERATORS)


@pytest.mark.parametrize("name", sorted(CASES))
def test_contract(name):
    _, grid, min_distinct = CASES[name]
    n = math.prod(grid)
    gen = make(name)
    k = gen.num_visible(grid)
    assert isinstance(k, int) and 0 < k < n
    first, second = draw(gen, grid), draw(gen, grid)
    for out in (first, second):
        assert out["ids_keep"].shape == (8, k) and out["ids_restore"].shape == (8, n)
        assert out["mask"].shape == (8, n) and out["mask"].dtype == np.float32
        assert "int" in str(out["ids_keep"].dtype)
        np.testing.assert_array_equal(out["mask"].sum(1), n - k)  # exact count in every sample
        for b in range(8):  # kept ids are exactly the visible positions
            np.testing.assert_array_equal(np.sort(out["ids_keep"][b]), np.flatnonzero(out["mask"][b] == 0))
    # different masks across the batch and across steps
    assert len({m.tobytes() for m in first["mask"]}) >= min_distinct
    assert not np.array_equal(first["mask"], second["mask"])
    # determinism under a seed, and a serialization round trip that keeps it
    np.testing.assert_array_equal(draw(make(name), grid)["mask"], first["mask"])
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(gen))
    assert type(again) is type(gen) and again.get_config() == gen.get_config()
    np.testing.assert_array_equal(draw(again, grid)["mask"], draw(make(name), grid)["mask"])


class ToyMaskedModel(keras.Model):
    """Scores a Dense projection of the visible tokens only: a mask inside fit."""

    def __init__(self, generator, grid, **kwargs):
        super().__init__(**kwargs)
        self.generator, self.grid = generator, grid
        self.proj = keras.layers.Dense(1)

    def call(self, tokens):
        masking = self.generator(tokens, grid_shape=self.grid)
        visible = keras.ops.take_along_axis(tokens, keras.ops.expand_dims(masking["ids_keep"], -1), axis=1)
        return {"pred": self.proj(visible), "mask": masking["mask"]}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        return keras.ops.mean(keras.ops.square(y_pred["pred"] - 1.0)) + 0.0 * keras.ops.sum(y_pred["mask"])


@pytest.mark.parametrize("name", sorted(CASES))
def test_works_inside_fit_with_jit(name):
    _, grid, _ = CASES[name]
    model = ToyMaskedModel(make(name), grid)
    model.compile(optimizer="sgd", jit_compile=keras.backend.backend() in ("jax", "tensorflow"))
    tokens = np.random.default_rng(0).random((8, math.prod(grid), 3)).astype("float32")
    history = model.fit(tokens, batch_size=4, epochs=1, verbose=0).history["loss"]
    assert np.isfinite(history[0])


@pytest.mark.parametrize("name", sorted(n for n in CASES if len(CASES[n][1]) == 2))
def test_mae_accepts_every_image_generator(name):
    _, (gh, gw), _ = CASES[name]
    model = MaskedAutoencoder.from_preset("mae_vit_test", image_size=(4 * gh, 4 * gw), mask_generator=make(name))
    out = inference_outputs(model, np.zeros((4, 4 * gh, 4 * gw, 3), "float32"))
    k = model.mask_generator.num_visible(model.encoder.grid_shape)
    np.testing.assert_array_equal(to_numpy(out["mask"]).sum(1), gh * gw - k)


def test_mae_builds_generators_by_name():
    model = MaskedAutoencoder.from_preset("mae_vit_test", image_size=64, mask_generator="simmim", mask_ratio=0.6)
    # 32 px cells over the model's 4 px patches: 4 cells of 8x8 tokens, ceil(4 * 0.6) = 3 hidden
    assert model.mask_generator.model_patch_size == 4
    assert model.mask_generator.num_visible(model.encoder.grid_shape) == 16 * 16 - 3 * 64
    green = MaskedAutoencoder.from_preset("mae_vit_test", mask_generator="green", mask_ratio=0.5)
    assert green.mask_generator.color == "green" and green.mask_ratio == 0.5


def test_video_generators_refuse_image_grids():
    with pytest.raises(ValueError, match="rank 3"):
        make("tube")(np.zeros((2, 1)), grid_shape=(4, 4))


def test_unknown_name():
    with pytest.raises(ValueError, match="Unknown `mask_generator` 'chessboard'.*green"):
        get_mask_generator("chessboard")
