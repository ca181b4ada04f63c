"""Read PyTorch `.pth` / `.bin` files with numpy only, through a restricted unpickler.

`torch.save` writes a zip archive (`<name>/data.pkl` plus one raw record per storage
under `<name>/data/<key>`), or before torch 1.6 a stream of pickles followed by the raw
storages. The pickle rebuilds tensors with `torch._utils._rebuild_tensor_v2(storage,
offset, size, stride, ...)`; here every such call returns a numpy array cut from the
storage bytes, so no torch (and no code from the file) runs. Only an allow-list of
globals is accepted: tensor rebuilders, storage types, `collections.OrderedDict`,
`argparse.Namespace` (the official MAE saves its `args`), numpy scalars and a few
builtins; anything else raises `CheckpointError`.
"""

import io
import pickle
import zipfile

import numpy as np

from keras_mim.checkpoints.common import CheckpointError, bfloat16_to_float32

# torch storage class -> numpy dtype ("bfloat16" is converted to float32 on read).
STORAGE_DTYPES = {
    "DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
    "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8",
    "BoolStorage": "bool", "UntypedStorage": "uint8",
}
TORCH_DTYPES = {
    "float64": "float64", "double": "float64", "float32": "float32", "float": "float32",
    "float16": "float16", "half": "float16", "bfloat16": "bfloat16", "int64": "int64",
    "long": "int64", "int32": "int32", "int": "int32", "int16": "int16", "int8": "int8",
    "uint8": "uint8", "bool": "bool",
}
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class Namespace:
    """What `argparse.Namespace` objects in a checkpoint (the official MAE `args`)
    become: a plain attribute holder; `vars(ns)` gives the dict."""

    def __repr__(self):
        return f"Namespace({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"


class StateDict(dict):
    """What `collections.OrderedDict` becomes (a dict that also takes the `_metadata`
    attribute torch attaches to state dicts)."""


class _StorageType:
    def __init__(self, dtype):
        self.dtype = dtype


def _rebuild_tensor(storage, offset, size, stride, *unused, **unused_kw):
    """A contiguous numpy copy of `storage[offset:]` viewed with `size` / `stride`
    (in elements), after checking the view stays inside the storage."""
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    if len(size) != len(stride) or offset < 0 or any(s < 0 for s in size + stride):
        raise CheckpointError(f"Malformed tensor record: offset {offset}, size {size}, stride {stride}.")
    if 0 in size:
        return np.zeros(size, storage.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= storage.size:
        raise CheckpointError(
            f"Tensor record (offset {offset}, size {size}, stride {stride}) reads past its "
            f"storage of {storage.size} elements; the file is truncated or corrupt."
        )
    view = np.lib.stride_tricks.as_strided(
        storage[offset:], shape=size, strides=tuple(s * storage.itemsize for s in stride), writeable=False
    )
    return np.array(view, order="C")  # a contiguous copy, independent of the (shared) storage


def _rebuild_parameter(data, *unused):
    return data


def _numpy_scalar(dtype, data=None):
    return np.frombuffer(data, dtype=dtype)[0] if data is not None else np.zeros((), dtype)[()]


def _path(*parts):
    return "/".join(str(p) for p in parts)


def _allowed_globals():
    rebuild = {f"torch._utils.{n}": _rebuild_tensor for n in ("_rebuild_tensor_v2", "_rebuild_tensor")}
    allowed = {
        **rebuild,
        "torch._utils._rebuild_parameter": _rebuild_parameter,
        "torch.Size": tuple,
        "collections.OrderedDict": StateDict,
        "argparse.Namespace": Namespace,
        "_codecs.encode": lambda text, encoding="utf-8": text.encode(encoding),
        "builtins.set": set, "builtins.frozenset": frozenset,
        "pathlib.PosixPath": _path, "pathlib.WindowsPath": _path, "pathlib.PurePosixPath": _path,
    }
    for np_core in ("numpy.core", "numpy._core"):
        allowed[f"{np_core}.multiarray.scalar"] = _numpy_scalar
        allowed[f"{np_core}.multiarray._reconstruct"] = np.ndarray((0,)).__reduce__()[0]
    allowed.update({"numpy.dtype": np.dtype, "numpy.ndarray": np.ndarray})
    allowed.update({f"torch.{n}": _StorageType(d) for n, d in STORAGE_DTYPES.items()})
    allowed.update({f"torch.storage.{n}": _StorageType(d) for n, d in STORAGE_DTYPES.items()})
    allowed.update({f"torch.{n}": d for n, d in TORCH_DTYPES.items()})  # torch dtypes -> dtype names
    return allowed


ALLOWED_GLOBALS = _allowed_globals()


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles only allow-listed globals; storages come from `load_storage(key, dtype, numel)`."""

    def __init__(self, file, load_storage, source):
        super().__init__(file)
        self.load_storage = load_storage
        self.source = source

    def find_class(self, module, name):
        qualified = f"{module}.{name}"
        if qualified not in ALLOWED_GLOBALS:
            raise CheckpointError(
                f"Refusing to load `{qualified}` from {self.source}: the restricted reader rebuilds only "
                "tensors, dicts, lists, argparse namespaces and plain values. If you trust this file, "
                "load it with `torch.load(path, weights_only=False)` and pass the state dict instead."
            )
        return ALLOWED_GLOBALS[qualified]

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise CheckpointError(f"Unsupported persistent record {pid!r:.80} in {self.source}.")
        storage_type, key, numel = pid[1], str(pid[2]), int(pid[4])
        dtype = storage_type.dtype if isinstance(storage_type, _StorageType) else storage_type
        if dtype not in TORCH_DTYPES.values():
            raise CheckpointError(f"Unsupported storage type {storage_type!r} in {self.source}.")
        view = pid[5] if len(pid) > 5 else None  # legacy storage views: (view_key, offset, size)
        storage = self.load_storage(key, dtype, numel)
        if view is not None:
            _, view_offset, view_size = view
            storage = storage[int(view_offset): int(view_offset) + int(view_size)]
        return storage


def _decode(raw, dtype, numel, key, source, big_endian=False):
    np_dtype = np.dtype("uint16" if dtype == "bfloat16" else dtype)
    if len(raw) < numel * np_dtype.itemsize:
        raise CheckpointError(
            f"Storage {key!r} in {source} holds {len(raw)} bytes, fewer than {numel} x {np_dtype.itemsize}; "
            "the file is truncated or corrupt."
        )
    array = np.frombuffer(raw, np_dtype.newbyteorder(">" if big_endian else "<"), count=numel)
    array = array.astype(np_dtype.newbyteorder("="))
    return bfloat16_to_float32(array) if dtype == "bfloat16" else array


def _load_zip(path, source):
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("data.pkl")]
        if len(pickles) != 1:
            raise CheckpointError(f"{source} is a zip file but not a PyTorch checkpoint (no single data.pkl).")
        prefix = pickles[0][: -len("data.pkl")]
        names = set(archive.namelist())
        big = prefix + "byteorder" in names and archive.read(prefix + "byteorder").strip() == b"big"
        cache = {}

        def load_storage(key, dtype, numel):
            if key not in cache:
                record = f"{prefix}data/{key}"
                if record not in names:
                    raise CheckpointError(f"{source} lacks the storage record {record!r}.")
                cache[key] = _decode(archive.read(record), dtype, numel, key, source, big)
            return cache[key]

        return RestrictedUnpickler(io.BytesIO(archive.read(pickles[0])), load_storage, source).load()


def _load_legacy(stream, source):
    """Pre-1.6 format: magic, protocol, system info, the object pickle, the list of
    storage keys, then per key an int64 element count and the raw bytes. Tensors are
    rebuilt while unpickling, before the bytes are reached, so the object pickle is
    read twice: once to learn each storage's dtype, once with the real storages."""

    def plain():
        return RestrictedUnpickler(stream, lambda *a: None, source).load()

    try:
        magic = plain()
    except (pickle.UnpicklingError, EOFError, ValueError) as err:
        raise CheckpointError(f"{source} is not a PyTorch checkpoint ({err}).") from err
    if magic != LEGACY_MAGIC:
        raise CheckpointError(f"{source} is a pickle but not a PyTorch checkpoint (no torch magic number).")
    plain()  # protocol version
    info = plain()
    big = isinstance(info, dict) and info.get("little_endian") is False
    start = stream.tell()
    dtypes = {}

    def record(key, dtype, numel):
        dtypes[key] = (dtype, numel)
        return np.zeros(numel, "float32" if dtype == "bfloat16" else dtype)

    RestrictedUnpickler(stream, record, source).load()
    storages = {}
    for key in plain():
        if key not in dtypes:
            raise CheckpointError(f"{source} stores an unreferenced storage {key!r}.")
        dtype, _ = dtypes[key]
        numel = int(np.frombuffer(stream.read(8), "<i8")[0])
        itemsize = 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize
        storages[key] = _decode(stream.read(numel * itemsize), dtype, numel, key, source, big)
    stream.seek(start)

    def load_storage(key, dtype, numel):
        if key not in storages:
            raise CheckpointError(f"{source} lacks the data of storage {key!r}.")
        return storages[key]

    return RestrictedUnpickler(stream, load_storage, source).load()


def load_torch_file(path):
    """Read a file written by `torch.save` without torch.

    Args:
        path: path of a `.pth` / `.pt` / `.bin` file (PyTorch's zip format).

    Returns:
        The saved object with every tensor as a contiguous numpy array (bfloat16 as
        float32), `OrderedDict`s as dicts and `argparse.Namespace` as `Namespace`.

    Raises:
        CheckpointError: not a PyTorch file, a truncated one, or one that needs a
            global outside the allow-list (e.g. a pickled class or function).

    Typical use: `state = load_torch_file("mae_pretrain_vit_base.pth")["model"]`.

    Examples:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "notes.txt")
        >>> _ = open(path, "w").write("not a checkpoint")
        >>> load_torch_file(path)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        keras_mim.checkpoints.common.CheckpointError: '...notes.txt' is not a PyTorch checkpoint ...
    """
    source = repr(str(path))
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(b"PK"):
        return _load_zip(path, source)
    if head[:1] == b"\x80":
        with open(path, "rb") as f:
            return _load_legacy(f, source)
    raise CheckpointError(f"{source} is not a PyTorch checkpoint (neither a zip archive nor a pickle).")
