"""What every module shares: argument checks (errors name the argument, value and expectation)
and `copy_model`."""


def to_2tuple(value, name):
    """Return `value` as a pair of positive ints, or raise naming `name`."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if (
        not isinstance(value, (tuple, list))
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        raise ValueError(f"`{name}` must be a positive int or a pair of positive ints, got {value!r}.")
    return tuple(int(v) for v in value)


def check_image_batch(images, num_channels, name="images", clips=False):
    """Raise unless `images` is a float batch `(B, H, W, C)` (`(B, T, H, W, C)` with `clips`)
    with `num_channels` channels; returns its shape as a tuple."""
    import keras  # here, not at the top: the CLI imports this module before Keras

    shape = tuple(images.shape)
    rank = 5 if clips else 4
    if len(shape) != rank:
        layout = "clips (B, T, H, W, C)" if clips else "images (B, H, W, C)"
        raise ValueError(f"`{name}` must be a batch of {layout}, got rank {len(shape)} shape {shape}.")
    dtype = keras.backend.standardize_dtype(images.dtype)
    if "float" not in dtype:
        raise TypeError(
            f"`{name}` must be a float tensor (scaled pixels), got dtype {dtype}; "
            "cast it, e.g. `images.astype('float32') / 255`."
        )
    if shape[-1] != num_channels:
        raise ValueError(f"`{name}` has {shape[-1]} channels but the encoder expects `num_channels`={num_channels}.")
    return shape


def to_patch_shape(value, name="patch_size"):
    """A patch shape: `(ph, pw)` for images or `(t, ph, pw)` for clips (a tubelet).

    An int `p` means `(p, p)`; a pair or triple of positive ints is kept as a tuple.
    """
    if isinstance(value, (tuple, list)) and len(value) == 3:
        if all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
            return tuple(int(v) for v in value)
        raise ValueError(f"`{name}` must be positive ints (t, ph, pw) for clips, got {value!r}.")
    return to_2tuple(value, name)


def check_clip_size(clip_size, patch_shape, name="clip size"):
    """Token grid of a `(T, H, W)` clip cut into `(t, ph, pw)` tubelets: `(T/t, H/ph, W/pw)`.

    Raises naming `name` if a side is not static or not divisible by its tubelet side.
    """
    frames, t = clip_size[0], patch_shape[0]
    if frames is None:
        raise ValueError(f"The {name} must be static, got T={frames}.")
    if frames % t:
        raise ValueError(
            f"The {name} has T={frames} frames, which is not divisible by the tubelet size {t}; "
            f"use clips of a multiple of {t} frames (e.g. {max(t, frames - frames % t)})."
        )
    return (frames // t,) + check_image_size(clip_size[1:], patch_shape[1:], name)


def check_image_size(image_size, patch_size, name="image size"):
    """Raise if an `(H, W)` image size is not divisible by the `(ph, pw)` patch size."""
    h, w = image_size
    ph, pw = patch_size
    if h is None or w is None:
        raise ValueError(f"The {name} must be static, got (H, W)={(h, w)}.")
    if h % ph or w % pw:
        raise ValueError(
            f"The {name} (H, W)={(h, w)} is not divisible by the patch size {(ph, pw)}; "
            "crop or resize the images to a multiple of the patch size."
        )
    return h // ph, w // pw


def visible_count(num_tokens, mask_ratio):
    """Tokens left visible when `mask_ratio` of `num_tokens` are hidden: `int(N * (1 - r))`, as
    the official MAE, plus 1e-9 before truncating, so that a ratio keeps what it says where
    float round-off alone would lose a token (5/6 of 588 hidden: 98 visible, not
    97.99999999999998 -> 97; 0.9 of 20: 2, not 1)."""
    return int(num_tokens * (1.0 - mask_ratio) + 1e-9)


def check_mask_ratio(mask_ratio, num_tokens=None, name="mask_ratio"):
    """Raise unless `0 <= mask_ratio < 1` and (if `num_tokens` is given) a token stays visible."""
    if isinstance(mask_ratio, bool) or not isinstance(mask_ratio, (int, float)):
        raise TypeError(f"`{name}` must be a float in [0, 1), got {mask_ratio!r}.")
    if not 0.0 <= float(mask_ratio) < 1.0:
        raise ValueError(f"`{name}` must be in [0, 1), got {mask_ratio!r}.")
    if num_tokens is not None and visible_count(num_tokens, mask_ratio) < 1:
        raise ValueError(
            f"`{name}`={mask_ratio!r} leaves no visible token out of {num_tokens}; "
            f"use a ratio below {1.0 - 1.0 / num_tokens:.4f}."
        )
    return float(mask_ratio)


def check_mask_ratio_range(mask_ratio, num_tokens=None, name="mask_ratio"):
    """`(low, high)` from a ratio (`(r, r)`) or a pair of ratios, each as `check_mask_ratio`,
    `low <= high`; raise naming `name` otherwise."""
    pair = tuple(mask_ratio) if isinstance(mask_ratio, (tuple, list)) else (mask_ratio, mask_ratio)
    if len(pair) != 2:
        raise ValueError(f"`{name}` must be a float or a pair (low, high), got {mask_ratio!r}.")
    low, high = (check_mask_ratio(r, num_tokens, name=name) for r in pair)
    if low > high:
        raise ValueError(f"`{name}` must be (low, high) with low <= high, got {mask_ratio!r}.")
    return low, high


def block_indices(layers, depth):
    """Block indices `layers` (an int or a list; negative count from the end) of an encoder
    of `depth` blocks, normalised to `[0, depth)`; ValueError on an index out of range."""
    if isinstance(layers, int):
        layers = [layers]
    out = []
    for i in layers:
        if isinstance(i, bool) or not isinstance(i, int) or not -depth <= i < depth:
            raise ValueError(
                f"Block index {i!r} is out of range for an encoder of depth {depth}; "
                f"expected ints in [{-depth}, {depth - 1}]."
            )
        out.append(i % depth)
    return out


def check_positive_int(value, name):
    """`value` if it is a positive int; a ValueError naming `name` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive int, got {value!r}.")
    return value


def copy_model(model, name=None, **overrides):
    """A new model of `model`'s class with its config (plus `overrides`) and its weights.

    Args:
        model: a built Keras model whose class rebuilds from `get_config()`.
        name: the copy's name (default: the original's).
        **overrides: config entries to change, e.g. `drop_path_rate=0.1`.
    """
    config = dict(model.get_config(), **overrides)
    if name is not None:
        config["name"] = name
    copy = model.__class__.from_config(config)
    if not copy.built:
        copy.build()
    copy.set_weights(model.get_weights())
    return copy


def modality_specs(modalities):
    """`modalities` as an ordered dict name -> `{"channels": C}` (float images) or
    `{"classes": K}` (int class maps); an int is a channel count."""
    if not isinstance(modalities, dict) or not modalities:
        raise ValueError(f"`modalities` must be a non-empty dict name -> channels or spec, got {modalities!r}.")
    specs = {}
    for name, spec in modalities.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"`modalities` names must be identifiers, got {name!r}.")
        spec = {"channels": spec} if isinstance(spec, int) and not isinstance(spec, bool) else spec
        if not isinstance(spec, dict) or len(spec) != 1 or not set(spec) <= {"channels", "classes"}:
            raise ValueError(f"`modalities[{name!r}]` must be a channel count, {{'channels': C}} or "
                             f"{{'classes': K}}, got {spec!r}.")
        ((kind, value),) = spec.items()
        specs[name] = {kind: check_positive_int(value, f"modalities[{name!r}][{kind!r}]")}
    return specs
