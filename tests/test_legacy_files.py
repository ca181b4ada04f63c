"""`.keras` files saved by keras_mim 2ffb770 (before the method registry) still load, on
every backend, and give the outputs they gave then (tests/fixtures/keras_2ffb770)."""

import pathlib

import keras
import numpy as np
import pytest

import keras_mim  # noqa: F401  (registers every class)
from tests.conftest import to_numpy

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "keras_2ffb770"
OUTPUTS = np.load(FIXTURES / "outputs.npz")
CLASSES = {"mae": "MaskedAutoencoder", "simmim": "SimMIM", "maskfeat": "SimMIM", "mfm": "MFM",
           "maskalign": "MaskAlign", "mrmae": "MRMAE", "data2vec": "Data2Vec", "hpm": "HPM",
           "cropmae": "SiameseMAE", "videomaev2": "VideoMAE", "classifier": "ImageClassifier",
           "linear_probe": "LinearProbe"}


def run(model, name):
    """The call the fixture script made, with its fixed masks."""
    images, noise = OUTPUTS["images"], OUTPUTS["noise"]
    if name in ("classifier", "linear_probe"):
        return {"out": model(images, training=False)}
    if name == "cropmae":
        return model({"reference": images, "target": images[::-1]}, noise=noise, training=False)
    if name == "videomaev2":
        return model(OUTPUTS["clips"], noise=OUTPUTS["videomaev2_noise"],
                     decoder_noise=OUTPUTS["videomaev2_decoder_noise"], training=False)
    if name == "mfm":
        return model(images, low_pass=np.array([1.0, 0.0], "float32"), training=False)
    return model(images, noise=noise, training=False)


def test_every_fixture_is_checked():
    assert {p.stem for p in FIXTURES.glob("*.keras")} == set(CLASSES)


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_file_saved_by_2ffb770_loads_with_the_same_outputs(name):
    model = keras.saving.load_model(FIXTURES / f"{name}.keras")
    assert type(model).__name__ == CLASSES[name]
    out = run(model, name)
    keys = [k for k in OUTPUTS.files if k.startswith(name + "/")]
    assert keys
    for key in keys:
        _, field, *index = key.split("/")
        value = out[field][int(index[0])] if index else out[field]
        np.testing.assert_allclose(to_numpy(value), OUTPUTS[key], atol=2e-5, err_msg=key)
