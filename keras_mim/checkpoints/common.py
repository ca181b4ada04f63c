"""What the checkpoint readers share: the error type, dtype tables and array conversion."""

import numpy as np


class CheckpointError(ValueError):
    """A file or state dict that cannot be read or does not fit the model."""


def bfloat16_to_float32(bits):
    """bfloat16 values stored as uint16 bit patterns -> float32 (exact: the upper
    16 bits of a float32)."""
    return (np.asarray(bits, np.uint16).astype(np.uint32) << 16).view(np.float32)


def to_numpy(value, name="value"):
    """A numpy array from a numpy array, a scalar or a CPU/GPU framework tensor
    (duck-typed: `.detach()`, `.cpu()`, `.numpy()`; bfloat16 becomes float32)."""
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "detach"):  # a torch tensor, without importing torch
        value = value.detach()
        if "bfloat16" in str(getattr(value, "dtype", "")):
            value = value.float()
        return value.cpu().numpy()
    try:
        return np.asarray(value)
    except Exception as err:  # noqa: BLE001 - report what could not be converted
        raise TypeError(f"State dict entry {name!r} is not an array or tensor: {type(value).__name__}.") from err


def describe_keys(keys, limit=8):
    """`'a', 'b', ... (N more)` for error messages."""
    keys = sorted(keys)
    shown = ", ".join(repr(k) for k in keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")
