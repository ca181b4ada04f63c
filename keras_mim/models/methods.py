"""The registry of pretraining methods: each method module declares itself once.

A method is a pretraining model class plus what makes it the published method (MaskFeat
is `SimMIM` with a HOG target), the data it trains on and its presets. Its module ends
with one `register_method(MethodSpec(...))`; everything that lists methods reads the
registry: `keras-mim pretrain --method` (choices, help, which options apply, the default
preset), `list_presets()`, the README's methods table (`tools/readme_methods.py`) and the
generic test suite (`tests/models/test_method_suite.py`). See CONTRIBUTING.md.

Importing `keras_mim.models` imports every module of the package, so every method that
ships with keras_mim is registered; a method defined elsewhere registers itself when
its module is imported.
"""

import dataclasses
import inspect
import re
import types
import warnings

#: What a method trains on: single images, clips `(B, T, H, W, C)`, the single images /
#: clips its view recipe turns into `{"reference": ..., "target": ...}` pairs, or audio
#: (log-mel spectrograms `(B, frames, mel_bins, 1)` made from waveforms), or point clouds `(B, N, 3)`,
#: or paired modalities (a dict name -> `(B, H, W, C)` images or `(B, H, W)` class maps), or
#: multispectral images `(B, H, W, bands)` (band stacks normalised per band by the model).
DATA_KINDS = ("images", "clips", "audio", "points", "paired", "multispectral")

#: How methods learn (DESIGN.md's families), in the order the README lists them.
FAMILIES = {
    "pixels": "visible-only encoder, light decoder, pixel loss on hidden patches",
    "corrupted": "the encoder sees every token, hidden content replaced; a light head",
    "features": "feature targets (frozen or EMA teacher)",
    "two-view": "a masked view rebuilt from a visible reference view",
    "self-distillation": "two block-masked views; a student matches an EMA teacher's prototype distributions",
    "video": "clips of tubelets",
    "convnets": "sparse convolutional encoders on visible 32 px cells; convolutional decoders",
    "hierarchical": "hierarchical ViTs on visible mask units; stages fused into one light decoder",
    "audio": "log-mel spectrograms as one-channel images",
    "points": "point clouds cut into local groups of points",
    "multimodal": "several inputs (paired modalities, band groups) masked together, each predicted by its own decoder or head",
}


@dataclasses.dataclass(frozen=True)
class MethodSpec:
    """One pretraining method, as `register_method` records it.

    Args:
        name: the method's name (`keras-mim pretrain --method NAME`), lowercase.
        model: the pretraining model class (a registered Keras-serializable
            `PretrainingModel` subclass).
        description: one line for the CLI help and the README's methods table.
        data: what the training data holds: `"images"`, `"clips"`, `"audio"` or `"points"`.
        views: None, or the recipe that makes `{"reference", "target"}` view pairs of
            the data (`keras_mim.data.view_dataset(method=...)`: `"cropmae"`, `"siammae"`,
            `"ibot"`).
        teacher: whether the model needs a frozen `teacher` model.
        pixels: whether the model predicts pixels (reconstruction figures, pixel metrics).
        kwargs: model arguments that make the class this method, applied when it is
            built on another method's preset (MaskFeat: `{"target": "hog", ...}`).
        presets: preset name -> `dict(description=..., encoder=..., [decoder=...],
            [kwargs=...], [encoder_class=...], [augmentation=...])`: encoder arguments (of
            `ViTEncoder` unless `encoder_class` names another encoder class), decoder
            arguments, this method's own model arguments tuned to that size, and the
            pretraining augmentation `keras-mim pretrain --data` uses by default (`"mae"`,
            `"medical"`; default `"mae"`).
        test_preset: the tiny preset of the generic test suite (default `NAME_vit_test`).
        cli_preset: the preset `keras-mim pretrain --method NAME` trains when no
            `--preset` is given; None: the dataset's default preset.
        schedule_steps: model arguments that are lengths of schedules spanning the whole
            run (I-JEPA's momentum ramp): `keras-mim pretrain` sets each to the run's
            training steps unless the preset sets it.
        family: how it learns, for the README's grouping (`FAMILIES`).
        paper: the reference (authors, year) for the docs.
        code: the official repository (`owner/name`), where there is one.

    Examples:
        >>> spec = get_method_spec("mae")
        >>> spec.model.__name__, spec.data, spec.test_preset
        ('MaskedAutoencoder', 'images', 'mae_vit_test')
    """

    name: str
    model: type
    description: str
    data: str = "images"
    views: str = None
    teacher: bool = False
    pixels: bool = False
    kwargs: dict = dataclasses.field(default_factory=dict)
    presets: dict = dataclasses.field(default_factory=dict)
    test_preset: str = None
    cli_preset: str = None
    schedule_steps: tuple = ()
    family: str = "pixels"
    paper: str = ""
    code: str = ""

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.isidentifier() or self.name != self.name.lower():
            raise ValueError(f"`name` must be a lowercase identifier, got {self.name!r}.")
        if not isinstance(self.model, type):
            raise TypeError(f"`model` must be a model class, got {self.model!r}.")
        if self.family not in FAMILIES:
            raise ValueError(f"`family` must be one of {sorted(FAMILIES)}, got {self.family!r}.")
        if self.data not in DATA_KINDS:
            raise ValueError(f"`data` must be one of {DATA_KINDS}, got {self.data!r}.")
        if self.test_preset is None:
            object.__setattr__(self, "test_preset", f"{self.name}_vit_test")  # frozen dataclass default
        for preset in (self.test_preset, self.cli_preset):
            if preset is not None and preset not in self.presets:
                raise ValueError(f"Method {self.name!r}: preset {preset!r} is not among its `presets`.")
        for argument in self.schedule_steps:
            if argument not in inspect.signature(self.model.__init__).parameters:
                raise ValueError(f"Method {self.name!r}: `schedule_steps` names {argument!r}, which "
                                 f"{self.model.__name__} does not take.")
        for preset, spec in self.presets.items():
            missing = {"description", "encoder"} - set(spec)
            if missing:
                raise ValueError(f"Preset {preset!r} of method {self.name!r} lacks {sorted(missing)}.")

    @property
    def year(self):
        """Publication year read from `paper` (0 if it names none)."""
        found = re.search(r"(19|20)\d\d", self.paper)
        return int(found.group()) if found else 0

    @property
    def two_views(self):
        """Whether the model trains on view pairs."""
        return self.views is not None

    def takes(self, argument):
        """Whether the model class takes `argument` (and this method leaves it free)."""
        return argument in inspect.signature(self.model.__init__).parameters and argument not in self.kwargs

    def __getitem__(self, key):
        # Deprecated: `METHODS[name]` was a dict of strings before the registry.
        warnings.warn("`METHODS[name][key]` is deprecated; read the MethodSpec's attributes.",
                      DeprecationWarning, stacklevel=2)
        legacy = {"model": self.model.__name__, "video": self.data == "clips" and not self.views}
        if key in legacy:
            return legacy[key]
        return getattr(self, key)


_REGISTRY = {}

#: name -> `MethodSpec` of every registered method (read-only view of the registry).
METHODS = types.MappingProxyType(_REGISTRY)


def register_method(spec):
    """Add a method to the registry; returns its model class (so it reads as a footer).

    Raises ValueError if the name or one of its presets is taken by another method.
    """
    if not isinstance(spec, MethodSpec):
        raise TypeError(f"`spec` must be a MethodSpec, got {type(spec).__name__}.")
    old = _REGISTRY.get(spec.name)
    if old is not None and old.model.__qualname__ != spec.model.__qualname__:
        raise ValueError(f"Method name {spec.name!r} is already registered by {old.model.__name__}.")
    for other in _REGISTRY.values():
        taken = set(other.presets) & set(spec.presets)
        if other.name != spec.name and taken:
            raise ValueError(f"Preset(s) {sorted(taken)} of method {spec.name!r} already belong to {other.name!r}.")
    _REGISTRY[spec.name] = spec  # a module re-imported (e.g. by doctest) replaces its own record
    return spec.model


def get_method_spec(name):
    """The `MethodSpec` registered under `name`."""
    if name not in _REGISTRY:
        raise ValueError(f"Unknown method {name!r}; expected one of {sorted(_REGISTRY)}.")
    return _REGISTRY[name]


def get_method(name):
    """`(model_class, kwargs)` of a method name: the class and the arguments that make
    it that method."""
    spec = get_method_spec(name)
    return spec.model, dict(spec.kwargs)


def list_methods():
    """Method names with their one-line descriptions, by family, then year, then name."""
    order = list(FAMILIES)
    specs = sorted(_REGISTRY.values(), key=lambda s: (order.index(s.family), s.year, s.name))
    return {spec.name: spec.description for spec in specs}
