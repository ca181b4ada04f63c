"""Which multi-device training kinds exist and where they run, and the checks of a
distribution's arguments (the kind on a backend, the global batch over the devices).

Backend-free: `keras_mim.distribute` re-exports every name, and its help explains the kinds.
"""

import keras

KINDS = ("none", "data", "model")
SUPPORTED = {"data": ("jax", "tensorflow"), "model": ("jax",)}


def check_kind(kind, backend=None, name="kind"):
    """Check that `kind` is one of `KINDS` and that `backend` (default: the running
    one) supports it; returns `kind`.

    Args:
        kind: `"none"`, `"data"` or `"model"`.
        backend: a Keras backend name; default `keras.backend.backend()`.
        name: how error messages name the argument (e.g. `"--distribute"`).

    Raises:
        ValueError: naming the value and what is supported.

    Examples:
        >>> check_kind("none")
        'none'
    """
    if kind not in KINDS:
        raise ValueError(f"`{name}` must be one of {KINDS}, got {kind!r}.")
    backend = backend or keras.backend.backend()
    if kind != "none" and backend not in SUPPORTED[kind]:
        what = "data-parallel" if kind == "data" else "model-parallel"
        hint = (
            "Keras 3 has no distribution support for the torch backend (keras.distribution covers "
            "JAX; on TensorFlow keras_mim uses tf.distribute.MirroredStrategy)"
            if backend == "torch"
            else f"Keras supports it only on {' and '.join(SUPPORTED[kind])}"
        )
        raise ValueError(
            f"{what} training (`{name}`={kind!r}) is not supported on the {backend!r} backend: {hint}. "
            f"Use the {' or '.join(SUPPORTED[kind])} backend (KERAS_BACKEND), or `{name}`='none'."
        )
    return kind


def check_global_batch(batch_size, num_devices, name="batch_size"):
    """Raise unless the global batch splits evenly over `num_devices`.

    Args:
        batch_size: the global batch (what `fit` gets as `batch_size`).
        num_devices: number of data-parallel replicas.
        name: how the error message names the batch size (e.g. `"--batch-size"`).

    Returns:
        the per-device batch, `batch_size // num_devices`.

    Examples:
        >>> check_global_batch(32, 4)
        8
    """
    if not isinstance(num_devices, int) or num_devices < 1:
        raise ValueError(f"`num_devices` must be a positive int, got {num_devices!r}.")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"`{name}` must be a positive int, got {batch_size!r}.")
    if batch_size % num_devices:
        raise ValueError(
            f"`{name}`={batch_size} must be divisible by the number of devices, {num_devices}, so that "
            f"every device gets the same share of the batch; use e.g. "
            f"{num_devices * max(1, round(batch_size / num_devices))}."
        )
    return batch_size // num_devices
