"""Argument checks shared by every module (errors name the argument, value and expectation)."""


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


def check_mask_ratio(mask_ratio, num_tokens=None, name="mask_ratio"):
    """Raise unless `0 <= mask_ratio < 1` and (if `num_tokens` is given) a token stays visible."""
    if isinstance(mask_ratio, bool) or not isinstance(mask_ratio, (int, float)):
        raise TypeError(f"`{name}` must be a float in [0, 1), got {mask_ratio!r}.")
    if not 0.0 <= float(mask_ratio) < 1.0:
        raise ValueError(f"`{name}` must be in [0, 1), got {mask_ratio!r}.")
    if num_tokens is not None and int(num_tokens * (1.0 - mask_ratio)) < 1:
        raise ValueError(
            f"`{name}`={mask_ratio!r} leaves no visible token out of {num_tokens}; "
            f"use a ratio below {1.0 - 1.0 / num_tokens:.4f}."
        )
    return float(mask_ratio)


def check_positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive int, got {value!r}.")
    return value
