import keras
import pytest

from keras_mim.models import METHODS, get_method
from keras_mim.models.presets import PRESETS, preset_method, preset_model_class


def test_every_method_resolves_to_a_registered_class_with_a_test_preset():
    for name, spec in METHODS.items():
        cls, kwargs = get_method(name)
        assert cls.__name__ == spec["model"] and isinstance(kwargs, dict)
        assert issubclass(cls, keras.Model)
        assert f"{name}_vit_test" in PRESETS, name
        assert preset_method(f"{name}_vit_test") == name
        assert preset_model_class(f"{name}_vit_test") is cls


def test_every_preset_names_a_known_method():
    for preset in PRESETS:
        assert preset_method(preset) in METHODS


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="Unknown method 'beit'; expected one of"):
        get_method("beit")
