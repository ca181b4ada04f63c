"""Labelled audio clips and point clouds for evaluation (k-NN, probes, fine-tuning): a
folder with one subfolder per class, split into train and test as labelled image folders
are (`scan_labelled_folder`), and the built-in sets in fixed draws.

The built-in sets are drawn with seeds other than `keras-mim pretrain`'s (`--seed`, 0 by
default), so an encoder is scored on clips and clouds it never saw: `SIGNAL_DATASETS`."""

import os

import numpy as np

from keras_mim.evaluation.labelled_data import SPLIT_FOLDERS, class_folder, stratified_split

#: The built-in labelled sets of each data kind, the first the default:
#: name -> (train count, test count).
SIGNAL_DATASETS = {
    "audio": {"spoken-digits": (500, 200), "tones": (160, 80)},
    "points": {"shapes3d": (600, 300)},
}
#: Seeds of the built-in train and test draws (pretraining draws with --seed, 0 by default).
TRAIN_SEED, TEST_SEED = 1_000_001, 2_000_003
WHAT = {"audio": "audio clips", "points": "point clouds"}


def signal_folder(path, kind, sample_rate=16000):
    """An `AudioFolder` (`kind="audio"`, resampled to `sample_rate`) or a `PointFolder`
    (`kind="points"`) of `path`, its scan's warning kept for the caller (in `skipped`)."""
    import warnings

    if kind not in WHAT:
        raise ValueError(f"`kind` must be one of {sorted(WHAT)}, got {kind!r}.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "audio":
            from keras_mim.data.audio_folder import AudioFolder

            return AudioFolder(path, sample_rate=sample_rate)
        from keras_mim.data.point_folder import PointFolder

        return PointFolder(path)


def _class_folder(path, kind, where, sample_rate):
    return class_folder(lambda: signal_folder(path, kind, sample_rate), path, where)


def scan_labelled_signals(path, kind, test_fraction=0.2, sample_rate=16000, name="`path`"):
    """Train and test parts of a folder of labelled audio files or point clouds, read once.

    Layouts as `scan_labelled_folder`'s: `path/<class>/<files>`, split here (a fixed
    `test_fraction` of each class, chosen with seed 0, is the test split), or
    `path/train/<class>/...` with `path/test/<class>/...` (or `val`). Files that do not
    read are skipped and listed in the folders' `skipped`.

    Args:
        path: the folder.
        kind: "audio" (`.wav .flac .ogg`) or "points" (`.npy .ply`).
        test_fraction: the share of each class held out (first layout only), in (0, 1).
        sample_rate: audio: the rate every clip is resampled to.
        name: how errors name the argument (the CLI passes "--data").

    Returns:
        `((train_folder, train_ids), (test_folder, test_ids))`: the folder each part reads
        from (one folder for both when split here) and the indices of its files.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: no class subfolders, files directly in `path`, one class, a class too
            small to split, classes that differ between train and test.

    Examples:
        >>> import tempfile
        >>> tmp = tempfile.TemporaryDirectory()
        >>> for c in ("cube", "ring"):
        ...     os.makedirs(os.path.join(tmp.name, c))
        ...     for i in range(5):
        ...         np.save(os.path.join(tmp.name, c, f"{i}.npy"), np.random.rand(64, 3))
        >>> (train, train_ids), (test, test_ids) = scan_labelled_signals(tmp.name, "points")
        >>> len(train_ids), len(test_ids), train.class_names
        (8, 2, ['cube', 'ring'])
        >>> tmp.cleanup()
    """
    where = f"{name} {os.fspath(path)!r}"
    if not os.path.isdir(path):
        raise (ValueError if os.path.exists(path) else FileNotFoundError)(f"{where} is not a folder.")
    subfolders = sorted(e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith("."))
    splits = [pair for pair in SPLIT_FOLDERS if sorted(pair) == subfolders]
    if splits:
        train, test = (_class_folder(os.path.join(path, s), kind, where, sample_rate) for s in splits[0])
        if train.class_names != test.class_names:
            raise ValueError(f"{where}: the classes of {splits[0][0]}/ ({', '.join(train.class_names)}) and "
                             f"{splits[0][1]}/ ({', '.join(test.class_names)}) differ.")
        return (train, np.arange(len(train))), (test, np.arange(len(test)))
    folder = _class_folder(path, kind, where, sample_rate)
    train_ids, test_ids = stratified_split(folder.labels, test_fraction, where)
    return (folder, train_ids), (folder, test_ids)


def builtin_signals(dataset, split, size, sample_rate=16000, count=None):
    """`(x, labels, class_names)` of a built-in labelled set's fixed `split` ("train" or
    "test"): "spoken-digits" / "tones" as waveforms `(n, samples)` of `size` samples at
    `sample_rate`; "shapes3d" as clouds `(n, size, 3)`. `count` overrides the set's size."""
    kind = next((k for k, sets in SIGNAL_DATASETS.items() if dataset in sets), None)
    if kind is None or split not in ("train", "test"):
        raise ValueError(f"Unknown built-in set {dataset!r} / split {split!r}; sets: "
                         f"{', '.join(s for sets in SIGNAL_DATASETS.values() for s in sets)}.")
    n = count or SIGNAL_DATASETS[kind][dataset][split == "test"]
    seed = TRAIN_SEED if split == "train" else TEST_SEED
    if dataset == "shapes3d":
        from keras_mim.data.sample_points import shape_clouds

        return shape_clouds(n, num_points=size, seed=seed)
    from keras_mim.data.sample_audio import spoken_digits, tone_clips

    make = spoken_digits if dataset == "spoken-digits" else tone_clips
    waves, labels, names = make(n, sample_rate=sample_rate, seconds=max(size / sample_rate, 1.0), seed=seed)
    return waves[:, :size], labels, names
