"""Labelled images for evaluation: a `.npz` of arrays or a folder with one subfolder per
class, checked before any pixel is decoded, and low-shot subsets."""

import os

import numpy as np

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
SPLIT_FOLDERS = (("train", "test"), ("train", "val"))
DEFAULT_TEST_FRACTION = 0.2


def load_labelled_npz(path, name="`path`"):
    """`(x_train, y_train, x_test, y_test)` from a `.npz` file, checked.

    Images `(N, H, W)` or `(N, H, W, C)`, uint8 (divided by 255) or float (kept, in
    `[0, 1]`); labels `(N,)` non-negative integer class ids, one per image.

    Args:
        path: the `.npz` file.
        name: how errors name the argument (the CLI passes "--data").

    Returns:
        float32 `(N, H, W, C)` images and int32 labels, train then test.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: it does not read as a `.npz`, lacks a key, or holds arrays of the wrong
            kind (the error names which).
    """
    where = f"{name} {os.fspath(path)!r}"
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{where} does not exist.")
    try:
        with np.load(path) as f:
            missing = [k for k in NPZ_KEYS if k not in f.files]
            if missing:
                raise KeyError(f"lacks {', '.join(missing)} (has {', '.join(f.files) or 'nothing'})")
            arrays = [f[k] for k in NPZ_KEYS]
    except KeyError as error:
        raise ValueError(f"{where} {error.args[0]}; it needs {', '.join(NPZ_KEYS)}.") from None
    except Exception as error:  # not a zip, pickled objects, a damaged member
        from keras_mim.data.decoding import error_reason

        raise ValueError(f"{where} does not read as a .npz of arrays ({error_reason(error)}).") from error
    out = []
    for split, x, y in (("train", *arrays[:2]), ("test", *arrays[2:])):
        x = x[..., None] if x.ndim == 3 else x
        if x.ndim != 4 or not len(x):
            raise ValueError(f"{where}: x_{split} must be images (N, H, W) or (N, H, W, C) with N >= 1, "
                             f"got shape {x.shape}.")
        if not (x.dtype == np.uint8 or np.issubdtype(x.dtype, np.floating)):
            raise ValueError(f"{where}: x_{split} must be uint8 (0..255) or float ([0, 1]), got dtype {x.dtype}.")
        if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer) or (y < 0).any():
            raise ValueError(f"{where}: y_{split} must be {len(x)} non-negative integer labels (one per image "
                             f"of x_{split}), got shape {y.shape} dtype {y.dtype}.")
        x = x.astype("float32") / 255.0 if x.dtype == np.uint8 else x.astype("float32")
        if not np.isfinite(x).all():
            raise ValueError(f"{where}: x_{split} holds NaN or infinite pixels.")
        out += [x, y.astype("int32")]
    return tuple(out)


def class_folder(make_folder, path, where):
    """`make_folder()` (a scan of `path`: `ImageFolder`, `AudioFolder`, `PointFolder`) checked
    to hold class subfolders: ValueError naming `where` if nothing reads, a file sits
    directly in `path`, or there is one class only."""
    try:
        folder = make_folder()
    except ValueError as error:  # no file, or none readable (the skipped ones listed)
        raise ValueError(f"{where}: {error}") from None
    if (folder.labels < 0).any():
        first = folder.files[int(np.argmax(folder.labels < 0))]
        raise ValueError(f"{where} needs one subfolder per class (the labels are the subfolder names); "
                         f"{first!r} is directly in {os.fspath(path)!r}.")
    if len(folder.class_names) < 2:
        raise ValueError(f"{where} holds one class ({folder.class_names[0]!r}); classification needs 2 or more "
                         "class subfolders.")
    return folder


def _class_folder(path, where):
    from keras_mim.data import ImageFolder

    return class_folder(lambda: ImageFolder(path), path, where)


def scan_labelled_folder(path, test_fraction=DEFAULT_TEST_FRACTION, name="`path`"):
    """Train and test `ImageFolder` views of a folder of labelled images (headers only).

    Layouts: `path/<class>/<images>`, split here (a fixed `test_fraction` of each class's
    images, chosen with seed 0 and never moving, is the test split); or
    `path/train/<class>/...` with `path/test/<class>/...` (or `val`), used as given.
    Labels are the class subfolder names in sorted (natural) order, `class_names`.
    Unreadable files are skipped and listed in the views' `skipped`.

    Args:
        path: the folder.
        test_fraction: the share of each class held out for the test split (first
            layout only), in (0, 1).
        name: how errors name the argument (the CLI passes "--data").

    Returns:
        `(train, test)` ImageFolder views (same `class_names`).

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: no class subfolders, images directly in `path`, one class only, an
            empty split, classes that differ between train and test.
    """
    where = f"{name} {os.fspath(path)!r}"
    if not os.path.isdir(path):
        raise (ValueError if os.path.exists(path) else FileNotFoundError)(f"{where} is not a folder.")
    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"`test_fraction` must be in (0, 1), got {test_fraction!r}.")
    subfolders = sorted(e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith("."))
    splits = [pair for pair in SPLIT_FOLDERS if sorted(pair) == subfolders]
    if splits:
        train, test = (_class_folder(os.path.join(path, s), where) for s in splits[0])
        if train.class_names != test.class_names:
            raise ValueError(f"{where}: the classes of {splits[0][0]}/ ({', '.join(train.class_names)}) and "
                             f"{splits[0][1]}/ ({', '.join(test.class_names)}) differ.")
    else:
        folder = _class_folder(path, where)
        train_ids, test_ids = stratified_split(folder.labels, test_fraction, where)
        train, test = folder.subset(train_ids), folder.subset(test_ids)
    return train, test


def stratified_split(labels, test_fraction=DEFAULT_TEST_FRACTION, where="`labels`"):
    """`(train_ids, test_ids)`, sorted: `test_fraction` of each class's items (at least one,
    never all) chosen with seed 0, so the test split never moves between runs.

    Args:
        labels: `(N,)` class ids `0 .. K-1`.
        test_fraction: the share of each class held out, in (0, 1).
        where: how the error names the data.

    Raises:
        ValueError: every class holds one item (no test split possible).

    Examples:
        >>> [ids.tolist() for ids in stratified_split([0, 0, 0, 0, 0, 1, 1, 1, 1, 1], 0.2)]
        [[0, 1, 2, 3, 5, 6, 7, 9], [4, 8]]
    """
    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"`test_fraction` must be in (0, 1), got {test_fraction!r}.")
    labels = np.asarray(labels)
    rng = np.random.default_rng(0)  # fixed: the test split must not move between runs
    test_ids = []
    for c in range(int(labels.max()) + 1):
        members = np.flatnonzero(labels == c)
        n = min(max(round(test_fraction * len(members)), 1), len(members) - 1)
        test_ids += rng.choice(members, n, replace=False).tolist()
    if not test_ids:
        raise ValueError(f"{where}: every class holds one item; a test split needs 2 or more in a class.")
    return np.setdiff1d(np.arange(len(labels)), test_ids), np.sort(test_ids)


def read_labelled_folder(folder, image_size, num_channels=None, batch_size=256):
    """The images and labels of an `ImageFolder` (view) as arrays, for evaluation.

    Each image is resized (short side) and centre-cropped to `image_size`; files that do
    not decode are skipped, with a warning, and added to `folder.skipped`.

    Args:
        folder: an `ImageFolder` whose files sit in class subfolders.
        image_size: int or `(H, W)`.
        num_channels: 1 or 3 to convert to; None keeps the folder's.
        batch_size: images decoded per batch.

    Returns:
        float32 `(N, H, W, C)` images and int32 `(N,)` labels.
    """
    from keras_mim.data import image_dataset

    dataset = image_dataset(folder, image_size=image_size, batch_size=batch_size, resize="crop",
                            num_channels=num_channels, labels="inferred", shuffle=False)
    batches = [(np.asarray(x), np.asarray(y)) for x, y in dataset]
    if not batches:
        raise ValueError(f"No image under {folder.path!r} decodes (skipped {len(folder.skipped)} file(s)).")
    return np.concatenate([x for x, _ in batches]), np.concatenate([y for _, y in batches]).astype("int32")


def first_per_class(labels, count, class_names=None, what=None):
    """Indices (sorted) of the first `count` images of each class in `labels`.

    Args:
        labels: `(N,)` integer class ids.
        count: images to keep per class, a positive int.
        class_names: names of the class ids, for the error message.
        what: how the error names the request (default "`labels_per_class`=COUNT").

    Raises:
        ValueError: a class has fewer than `count` images (naming the smallest class).

    Examples:
        >>> first_per_class([0, 1, 0, 1, 0], 2).tolist()
        [0, 1, 2, 3]
    """
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    smallest = int(np.argmin(counts))
    if count > counts[smallest]:
        c = int(classes[smallest])
        label = repr(class_names[c]) if class_names is not None else str(c)
        raise ValueError(f"{what or f'`labels_per_class`={count}'} is more than the {counts[smallest]} training "
                         f"images of class {label}, the smallest class.")
    keep = np.concatenate([np.flatnonzero(labels == c)[:count] for c in classes])
    return np.sort(keep)

