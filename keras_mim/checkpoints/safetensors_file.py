"""Read and write `.safetensors` files as numpy arrays, through the `safetensors` package.

The format itself (header, offsets, alignment, checks) is the package's. What stays
here is what keras_mim needs on top of `safetensors.numpy`:

- bfloat16 tensors (most Hugging Face checkpoints) come back as float32, the dtype
  keras_mim's weights use; the package builds them as `ml_dtypes.bfloat16` arrays,
  so `ml_dtypes` (a Keras dependency) is imported here to register that dtype.
- dtypes numpy cannot hold (float8, ...) and damaged files raise `CheckpointError`
  naming the file and the tensor, instead of the package's bare error.
- `is_safetensors`: a look at the first bytes, since `read_state_dict` gets `.bin`,
  `.pth` and `.safetensors` files of any name and must tell them apart.
- writing takes torch tensors and non-contiguous arrays too (`to_numpy`, then a
  contiguous copy: the package reads an array's raw buffer).
"""

import os
import struct

import ml_dtypes  # noqa: F401 - registers numpy's "bfloat16", which safetensors' numpy loader asks for
import numpy as np
import safetensors
import safetensors.numpy

from keras_mim.checkpoints.common import CheckpointError, to_numpy

#: safetensors dtype codes numpy can hold; others (F8_E4M3, ...) are refused by name.
READABLE = ("BF16", "BOOL", "F16", "F32", "F64", "I16", "I32", "I64", "I8", "U16", "U32", "U64", "U8")
MAX_HEADER = 100 * 1024 * 1024


def is_safetensors(path):
    """Whether `path` starts like a safetensors file (header length, then `{`)."""
    with open(path, "rb") as f:
        raw = f.read(9)
    return len(raw) == 9 and raw[8:9] == b"{" and 2 <= struct.unpack("<Q", raw[:8])[0] <= MAX_HEADER


def _read_tensor(f, name, source):
    dtype = f.get_slice(name).get_dtype()
    if dtype not in READABLE:
        raise CheckpointError(f"{source}: tensor {name!r} has dtype {dtype!r}; supported: {list(READABLE)}.")
    array = f.get_tensor(name)  # a writable array over its own buffer
    return array.astype("float32") if dtype == "BF16" else array  # bfloat16 -> float32 is exact


def load_safetensors(path, with_metadata=False):
    """Read every tensor of a `.safetensors` file as a numpy array.

    Args:
        path: the file.
        with_metadata: also return the header's `__metadata__` dict.

    Returns:
        dict name -> array (bfloat16 read as float32), or `(dict, metadata)`.

    Raises:
        FileNotFoundError: no file at `path`.
        CheckpointError: not a safetensors file (or a damaged one), or a tensor whose
            dtype numpy cannot hold.

    Examples:
        >>> import os, tempfile, numpy as np
        >>> path = os.path.join(tempfile.mkdtemp(), "demo.safetensors")
        >>> save_safetensors({"w": np.arange(6, dtype="float32").reshape(2, 3)}, path)
        >>> load_safetensors(path)["w"].tolist()
        [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    """
    path = os.fspath(path)
    source = repr(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No safetensors file at {source}.")
    try:
        with safetensors.safe_open(path, framework="np") as f:
            metadata = f.metadata() or {}
            tensors = {name: _read_tensor(f, name, source) for name in f.keys()}
    except safetensors.SafetensorError as err:
        raise CheckpointError(f"{source} is not a safetensors file, or a damaged one: {err}.") from err
    return (tensors, metadata) if with_metadata else tensors


def _unwritable(arrays):
    """The names and dtypes of the arrays the package cannot store (tried one by one, empty)."""
    bad = []
    for name, array in arrays.items():
        try:
            safetensors.numpy.save({name: np.zeros(0, array.dtype)})
        except (safetensors.SafetensorError, TypeError, ValueError):
            bad.append(f"{name!r} ({array.dtype})")
    return bad


def save_safetensors(tensors, path, metadata=None):
    """Write a dict of arrays (numpy, or tensors of any framework) as `.safetensors`.

    Args:
        tensors: dict name -> array; numpy float64/32/16, bfloat16 (`ml_dtypes`),
            (u)int8-64 and bool; torch tensors are converted with `to_numpy`.
        path: the file to write.
        metadata: optional dict of str -> str stored in the header (HF writes
            `{"format": "pt"}`, which is the default here).

    Raises:
        TypeError: a tensor whose dtype safetensors cannot store (e.g. complex128).

    Examples:
        >>> import os, tempfile, numpy as np
        >>> path = os.path.join(tempfile.mkdtemp(), "demo.safetensors")
        >>> save_safetensors({"b": np.ones(2, "float16")}, path)
        >>> load_safetensors(path)["b"].dtype
        dtype('float16')
    """
    arrays = {str(name): np.ascontiguousarray(to_numpy(value, name)) for name, value in tensors.items()}
    header = {str(k): str(v) for k, v in (metadata or {"format": "pt"}).items()}
    try:
        safetensors.numpy.save_file(arrays, os.fspath(path), metadata=header)
    except (safetensors.SafetensorError, TypeError, ValueError) as err:
        bad = _unwritable(arrays)
        if not bad:
            raise
        raise TypeError(
            f"Cannot write {os.fspath(path)!r}: safetensors cannot store tensor(s) {', '.join(bad)} ({err})."
        ) from err
