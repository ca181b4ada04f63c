"""A folder of point clouds (`.npy` arrays or `.ply` files), read once, each cloud sampled to a
fixed number of points and normalised as Point-MAE's `pc_norm`. Nothing is downloaded."""

import os
import warnings

import numpy as np

from keras_mim.data.decoding import error_reason, summarize_skipped
from keras_mim.data.image_folder import _walk, check_folder, folder_classes

POINT_EXTENSIONS = (".npy", ".ply")
_PLY_TYPES = {"char": "i1", "uchar": "u1", "short": "i2", "ushort": "u2", "int": "i4", "uint": "u4",
              "float": "f4", "double": "f8", "int8": "i1", "uint8": "u1", "int16": "i2", "uint16": "u2",
              "int32": "i4", "uint32": "u4", "float32": "f4", "float64": "f8"}


def _read_ply(path):
    """The x, y, z of a PLY file's vertices (ascii or binary; faces and other elements ignored)."""
    with open(path, "rb") as handle:
        if handle.readline().strip() != b"ply":
            raise ValueError("not a PLY file (no 'ply' magic line)")
        fmt, elements = None, []
        while True:
            line = handle.readline()
            if not line:
                raise ValueError("the PLY header has no end_header")
            words = line.decode("ascii", "replace").split()
            if not words:
                continue
            if words[0] == "format":
                fmt = words[1]
            elif words[0] == "element":
                elements.append((words[1], int(words[2]), []))
            elif words[0] == "property" and elements:
                if words[1] == "list":
                    elements[-1][2].append((words[-1], None))  # a list property (faces): unsupported before vertices
                else:
                    elements[-1][2].append((words[-1], _PLY_TYPES[words[1]]))
            elif words[0] == "end_header":
                break
        if not elements or elements[0][0] != "vertex":
            raise ValueError("the PLY file's first element is not 'vertex'")
        _, count, props = elements[0]
        names = [n for n, _ in props]
        if not {"x", "y", "z"} <= set(names) or any(t is None for _, t in props):
            raise ValueError(f"the PLY vertices have properties {names}; x, y, z (no lists) are needed")
        if fmt == "ascii":
            rows = [handle.readline().split() for _ in range(count)]
            table = np.array(rows, dtype="float64")
            columns = {n: table[:, i] for i, n in enumerate(names)}
        elif fmt in ("binary_little_endian", "binary_big_endian"):
            order = "<" if fmt == "binary_little_endian" else ">"
            dtype = np.dtype([(n, order + t) for n, t in props])
            data = np.frombuffer(handle.read(dtype.itemsize * count), dtype=dtype, count=count)
            columns = {n: data[n] for n in names}
        else:
            raise ValueError(f"unknown PLY format {fmt!r}")
    return np.stack([columns["x"], columns["y"], columns["z"]], axis=1)


def read_points(path):
    """A point cloud `(N, 3)` float32 from a `.npy` array (`(N, 3)` or more columns: the first
    three are x, y, z) or a `.ply` file. Raises ValueError naming the file when it does not read."""
    path = os.fspath(path)
    try:
        if path.lower().endswith(".npy"):
            points = np.load(path, allow_pickle=False)
            if points.ndim != 2 or points.shape[1] < 3:
                raise ValueError(f"the array has shape {points.shape}; (N, 3) points are needed")
            points = points[:, :3]
        else:
            points = _read_ply(path)
        points = np.asarray(points, "float32")
    except Exception as error:
        raise ValueError(f"Cannot read {path!r}: {error_reason(error)}") from error
    if not np.isfinite(points).all():
        raise ValueError(f"Cannot read {path!r}: NaN or infinite coordinates")
    return points


def normalize_cloud(points):
    """Centred on its mean, scaled so the farthest point is at distance 1 (Point-MAE's `pc_norm`)."""
    points = points - points.mean(0)
    scale = np.linalg.norm(points, axis=1).max()
    return (points / scale if scale > 0 else points).astype("float32")


def sample_cloud(points, num_points, rng):
    """`num_points` of `points`: a random subset, or every point plus random repeats when it has fewer."""
    n = len(points)
    if n >= num_points:
        return points[rng.choice(n, num_points, replace=False)]
    return points[np.concatenate([np.arange(n), rng.choice(n, num_points - n, replace=True)])]


class PointFolder:
    """The point-cloud files under a folder (`.npy`, `.ply`), read once and kept in memory.

    Files that do not read, or hold fewer than `min_points` points, are skipped and listed in
    `skipped` as `(path, reason)`, with one warning in all. Labels: the first-level subfolder
    (`class_names`, `labels`; -1 directly in `path`), as `ImageFolder`.

    Args:
        path: the folder to scan.
        min_points: the fewest points a cloud may have (default 16).
        recursive: scan subfolders too.

    Examples:
        >>> import tempfile
        >>> tmp = tempfile.TemporaryDirectory()
        >>> np.save(os.path.join(tmp.name, "a.npy"), np.random.rand(100, 3))
        >>> folder = PointFolder(tmp.name)
        >>> len(folder), folder.read([0], num_points=64, seed=0).shape
        (1, (1, 64, 3))
        >>> tmp.cleanup()
    """

    def __init__(self, path, min_points=16, recursive=True):
        self.path = check_folder(path)
        found, self.skipped = _walk(self.path, POINT_EXTENSIONS, recursive)
        if not found:
            raise ValueError(f"No point-cloud file ({', '.join(POINT_EXTENSIONS)}) found under `path` {self.path!r}.")
        self.files, self.clouds = [], []
        for file in found:
            try:
                points = read_points(file)
                if len(points) < min_points:
                    raise ValueError(f"Cannot read {file!r}: {len(points)} points, fewer than min_points={min_points}")
            except ValueError as error:
                self.skipped.append((file, str(error).replace(f"Cannot read {file!r}: ", "")))
                continue
            self.files.append(file)
            self.clouds.append(points)
        if not self.files:
            raise ValueError(f"No readable point cloud under `path` {self.path!r}; skipped {len(self.skipped)} "
                             f"file(s): {summarize_skipped(self.skipped)}.")
        self.class_names, self.labels = folder_classes(self.path, self.files)
        if self.skipped:
            warnings.warn(self.report(), stacklevel=2)

    def __len__(self):
        return len(self.files)

    def report(self, listed_in="`.skipped`"):
        """One line on what the scan skipped, or "" when nothing was."""
        if not self.skipped:
            return ""
        return (f"point folder {self.path!r}: skipped {len(self.skipped)} file(s) that do not read as point clouds "
                f"({summarize_skipped(self.skipped, limit=2)}); all listed in {listed_in}.")

    def read(self, indices, num_points, seed=0):
        """Clouds `indices` as `(k, num_points, 3)` float32: sampled (`sample_cloud`), normalised."""
        rng = np.random.default_rng(seed)
        return np.stack([normalize_cloud(sample_cloud(self.clouds[int(i)], num_points, rng)) for i in indices])
