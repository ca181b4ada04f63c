"""keras_mim without the keras-hub extra (the backend passes): converting asks for it by
name, and what a keras-hub ViTBackbone lacks is refused before keras-hub is needed. The
conversions themselves are tested in the keras-hub tier (tests/keras_hub)."""

import sys

import pytest

from keras_mim import ViTEncoder, to_keras_hub

pytestmark = pytest.mark.backend_independent


def tiny(**kwargs):
    return ViTEncoder(image_size=8, patch_size=4, embed_dim=16, depth=1, num_heads=2, **kwargs)


def test_without_keras_hub_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "keras_hub", None)  # import keras_hub -> ImportError
    with pytest.raises(ImportError, match=r"keras-mim\[keras-hub\]"):
        to_keras_hub(tiny())
    with pytest.raises(ImportError, match="keras-hub is not installed"):
        ViTEncoder.from_keras_hub(object())


def test_parts_a_vit_backbone_lacks_are_named_before_keras_hub_is_imported(monkeypatch):
    monkeypatch.setitem(sys.modules, "keras_hub", None)
    with pytest.raises(ValueError, match="LayerScale.*qkv_bias"):
        to_keras_hub(tiny(layer_scale=0.1, qkv_bias=False))
    with pytest.raises(TypeError, match="must be a keras_mim ViTEncoder"):
        to_keras_hub(object())
