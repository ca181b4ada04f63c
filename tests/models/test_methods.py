"""The method registry: what every record must hold, and what reads it."""

import warnings

import keras
import pytest

from keras_mim.models import METHODS, MethodSpec, get_method, get_method_spec, list_methods, register_method
from keras_mim.models.masked_autoencoder import MaskedAutoencoder
from keras_mim.models.presets import PRESETS, list_presets, preset_method, preset_model_class

pytestmark = pytest.mark.backend_independent


def test_every_method_has_a_registered_class_and_its_own_test_preset():
    for name, spec in METHODS.items():
        assert spec.name == name and issubclass(spec.model, keras.Model)
        assert keras.saving.get_registered_object(f"keras_mim>{spec.model.__name__}") is spec.model
        assert spec.test_preset in spec.presets and preset_method(spec.test_preset) == name
        assert preset_model_class(spec.test_preset) is spec.model
        assert spec.description and spec.paper and spec.year >= 2020
        assert all(spec.takes(k) or k in spec.kwargs for k in spec.kwargs)  # the class takes them


def test_presets_are_the_union_of_the_records():
    assert set(PRESETS) == {p for spec in METHODS.values() for p in spec.presets}
    assert sum(len(spec.presets) for spec in METHODS.values()) == len(PRESETS)  # no name twice
    assert set(list_presets()) == set(PRESETS)


def test_list_methods_groups_by_family_and_year():
    names = list(list_methods())
    assert sorted(names) == sorted(METHODS) and names[0] == "mae"
    assert names.index("videomae") < names.index("videomaev2")


def test_cli_choices_and_help_come_from_the_registry():
    from keras_mim.cli import build_parser

    parser = build_parser().subparsers["pretrain"]
    help_text = "".join(parser.format_help().split())  # argparse wraps lines (also at hyphens)
    assert "{" + ",".join(list_methods()) + "}" in help_text  # the choices, in list_methods() order
    for name, description in list_methods().items():
        assert parser.parse_args(["--method", name]).method == name
        assert "".join(f"{name}: {description}".split())[:40] in help_text


def test_get_method_keeps_its_old_form_and_unknown_names_are_refused():
    cls, kwargs = get_method("maskfeat")
    assert cls.__name__ == "SimMIM" and kwargs["target"] == "hog"
    with pytest.raises(ValueError, match="Unknown method 'beit'; expected one of"):
        get_method("beit")


def test_old_dict_access_still_works_with_a_deprecation_warning():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert METHODS["videomae"]["model"] == "VideoMAE" and METHODS["videomae"]["video"]
        assert METHODS["cropmae"]["views"] == "cropmae"
    assert caught and all(issubclass(w.category, DeprecationWarning) for w in caught)


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(name="Bad Name"), ValueError, "lowercase identifier"),
    (dict(model="MaskedAutoencoder"), TypeError, "model class"),
    (dict(data="smells"), ValueError, "`data` must be one of"),
    (dict(family="magic"), ValueError, "`family` must be one of"),
    (dict(test_preset="nope"), ValueError, "'nope' is not among its `presets`"),
    (dict(presets={"x_vit_test": {"encoder": {}}}), ValueError, "lacks \\['description'\\]"),
])
def test_bad_records_are_refused(kwargs, error, match):
    base = dict(name="x", model=MaskedAutoencoder, description="x",
                presets={"x_vit_test": {"description": "x", "encoder": {}}})
    with pytest.raises(error, match=match):
        MethodSpec(**{**base, **kwargs})


def test_names_and_presets_cannot_be_taken_twice():
    mae = get_method_spec("mae")
    with pytest.raises(ValueError, match="already registered by MaskedAutoencoder"):
        register_method(MethodSpec(name="mae", model=keras.Model, description="x", presets=mae.presets))
    with pytest.raises(ValueError, match="already belong to 'mae'"):
        register_method(MethodSpec(name="mae2", model=MaskedAutoencoder, description="x",
                                   test_preset="mae_vit_test", presets={"mae_vit_test": mae.presets["mae_vit_test"]}))
    assert "mae2" not in METHODS
