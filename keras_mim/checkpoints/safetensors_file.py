"""Read and write `.safetensors` files with numpy only.

Layout: an 8-byte little-endian header length, a JSON header
`{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}`,
then the raw little-endian tensor bytes (offsets relative to the end of the header).
"""

import json
import struct

import numpy as np

from keras_mim.checkpoints.common import CheckpointError, bfloat16_to_float32, to_numpy

DTYPES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
    "I32": "int32", "I16": "int16", "I8": "int8", "U64": "uint64", "U32": "uint32",
    "U16": "uint16", "U8": "uint8", "BOOL": "bool",
}
CODES = {v: k for k, v in DTYPES.items() if v != "bfloat16"}
MAX_HEADER = 100 * 1024 * 1024


def read_header(f, source):
    """`(header dict, data start)` of an open safetensors file; raises if it is not one."""
    raw = f.read(8)
    if len(raw) < 8:
        raise CheckpointError(f"{source} is not a safetensors file (shorter than 8 bytes).")
    (length,) = struct.unpack("<Q", raw)
    if not 2 <= length <= MAX_HEADER:
        raise CheckpointError(f"{source} is not a safetensors file (header length {length}).")
    text = f.read(length)
    try:
        header = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{source} is not a safetensors file (its header is not JSON).") from err
    if not isinstance(header, dict):
        raise CheckpointError(f"{source} is not a safetensors file (its header is not a JSON object).")
    return header, 8 + length


def is_safetensors(path):
    """Whether `path` starts like a safetensors file (header length, then `{`)."""
    with open(path, "rb") as f:
        raw = f.read(9)
    return len(raw) == 9 and raw[8:9] == b"{" and 2 <= struct.unpack("<Q", raw[:8])[0] <= MAX_HEADER


def load_safetensors(path, with_metadata=False):
    """Read every tensor of a `.safetensors` file as a numpy array.

    Args:
        path: the file.
        with_metadata: also return the header's `__metadata__` dict.

    Returns:
        dict name -> array (bfloat16 read as float32), or `(dict, metadata)`.

    Raises:
        CheckpointError: not a safetensors file, an unknown dtype, or offsets that do
            not fit the shape or the file.

    Example:
    >>> import os, tempfile, numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "demo.safetensors")
    >>> save_safetensors({"w": np.arange(6, dtype="float32").reshape(2, 3)}, path)
    >>> load_safetensors(path)["w"].tolist()
    [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    """
    source = repr(str(path))
    tensors = {}
    with open(path, "rb") as f:
        header, start = read_header(f, source)
        f.seek(0, 2)
        size = f.tell() - start
        for name, spec in header.items():
            if name == "__metadata__":
                continue
            try:
                dtype, shape, (begin, end) = spec["dtype"], tuple(spec["shape"]), spec["data_offsets"]
            except (TypeError, KeyError, ValueError) as err:
                raise CheckpointError(f"{source}: malformed header entry for {name!r}: {spec!r:.100}.") from err
            if dtype not in DTYPES:
                raise CheckpointError(
                    f"{source}: tensor {name!r} has dtype {dtype!r}; supported: {sorted(DTYPES)}."
                )
            np_dtype = np.dtype("<u2" if dtype == "BF16" else np.dtype(DTYPES[dtype]).newbyteorder("<"))
            count = int(np.prod(shape, dtype=np.int64))
            if not 0 <= begin <= end <= size or end - begin != count * np_dtype.itemsize:
                raise CheckpointError(
                    f"{source}: tensor {name!r} (shape {shape}, {dtype}) has data offsets [{begin}, {end}] "
                    f"that do not fit its size or the file ({size} data bytes)."
                )
            f.seek(start + begin)
            array = np.frombuffer(f.read(end - begin), np_dtype).reshape(shape)
            native = array.astype(array.dtype.newbyteorder("="))
            tensors[name] = bfloat16_to_float32(array) if dtype == "BF16" else native
    metadata = header.get("__metadata__") or {}
    return (tensors, metadata) if with_metadata else tensors


def save_safetensors(tensors, path, metadata=None):
    """Write a dict of arrays (numpy, or tensors of any framework) as `.safetensors`.

    Args:
        tensors: dict name -> array; numpy dtypes float64/32/16, (u)int8-64 and bool.
        path: the file to write.
        metadata: optional dict of str -> str stored in the header (HF writes
            `{"format": "pt"}`, which is the default here).

    Example:
    >>> import os, tempfile, numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "demo.safetensors")
    >>> save_safetensors({"b": np.ones(2, "float16")}, path)
    >>> load_safetensors(path)["b"].dtype
    dtype('float16')
    """
    header = {"__metadata__": {str(k): str(v) for k, v in (metadata or {"format": "pt"}).items()}}
    blobs, offset = [], 0
    for name in sorted(tensors):
        array = np.ascontiguousarray(to_numpy(tensors[name], name))
        code = CODES.get(array.dtype.name)
        if code is None:
            raise TypeError(f"Tensor {name!r} has dtype {array.dtype}; safetensors here takes {sorted(CODES)}.")
        blob = array.astype(array.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": code, "shape": list(array.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # data aligned to 8 bytes, as the reference writer does
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)
