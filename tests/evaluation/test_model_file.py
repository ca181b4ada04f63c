"""`load_encoder`: the encoder of every kind of keras_mim model saved as `.keras` (its bad
files are in tests/test_bad_inputs_eval.py)."""

import numpy as np
import pytest

from keras_mim import ImageClassifier, LinearProbe, MaskedAutoencoder, SimMIM, ViTEncoder
from keras_mim.evaluation import load_encoder


@pytest.mark.one_backend  # saving and loading are tested on every backend in tests/test_serialization.py
def test_every_kind_of_model_with_an_encoder_loads(tmp_path):
    encoder = ViTEncoder(image_size=16, patch_size=4, num_channels=1, embed_dim=32, depth=1, num_heads=2)
    mae = MaskedAutoencoder.from_preset("mae_vit_test", num_channels=1)
    models = {"encoder": encoder, "mae": mae, "simmim": SimMIM.from_preset("simmim_vit_test"),
              "classifier": ImageClassifier(encoder, 3), "probe": LinearProbe(mae, 3)}
    for name, model in models.items():
        model.save(tmp_path / f"{name}.keras")
        loaded = load_encoder(tmp_path / f"{name}.keras")
        assert type(loaded) is ViTEncoder, name
        own = model if model is encoder else model.encoder
        for a, b in zip(loaded.get_weights(), own.get_weights()):
            np.testing.assert_array_equal(a, b)
