"""What `keras-mim knn|probe|finetune` read for an Audio-MAE or Point-MAE model: labelled
audio clips (as that model's log-mel spectrograms) or point clouds, from a folder with one
subfolder per class or a built-in set (`keras_mim.evaluation.labelled_signals`)."""

import os

#: What the messages call one item of each data kind.
NOUNS = {"images": "images", "audio": "clips", "points": "clouds"}
MODELS = {"audio": "an Audio-MAE model (audio clips)", "points": "a Point-MAE model (point clouds)"}
FILES = {"audio": "audio files (.wav, .flac, .ogg)", "points": "point clouds (.npy, .ply)"}


def labels_per_class(args, labels, class_names):
    """`(keep, labels)`: with --labels-per-class N, the indices of the first N training items of
    each class and their labels (ValueError if a class has fewer); else `(None, labels)`."""
    from keras_mim.evaluation import labelled_data

    if args.labels_per_class is None:
        return None, labels
    keep = labelled_data.first_per_class(labels, args.labels_per_class, class_names,
                                         what=f"--labels-per-class {args.labels_per_class}")
    return keep, labels[keep]


def builtin_labels(dataset, split):
    """The labels of a built-in set's split without making its data (they cycle through the
    classes): `(labels, class_names)`."""
    import numpy as np

    from keras_mim.evaluation.labelled_signals import SIGNAL_DATASETS

    if dataset == "shapes3d":
        from keras_mim.data.sample_points import SHAPE_CLASSES as names
    elif dataset == "spoken-digits":
        from keras_mim.data.sample_audio import DIGIT_WORDS as names
    else:
        from keras_mim.data.sample_audio import TONE_CLASSES as names
    kind = "points" if dataset == "shapes3d" else "audio"
    n = SIGNAL_DATASETS[kind][dataset][split == "test"]
    return np.arange(n, dtype="int32") % len(names), list(names)


def resolve_signal_data(parser, args):
    """`--dataset` / `--data` of an audio or point-cloud model (`args._kind`), checked before
    anything heavy: a dict as `resolve_data`'s (`kind` "builtin" or "folder", the training
    labels after --labels-per-class, `keep`, `class_names`, `parts` of a folder)."""
    from keras_mim.evaluation import labelled_data
    from keras_mim.evaluation.labelled_signals import SIGNAL_DATASETS

    kind, sets = args._kind, SIGNAL_DATASETS[args._kind]
    if args.dataset is not None and args.dataset not in sets:
        parser.error(f"--dataset {args.dataset} does not fit {args.model}, {MODELS[kind]}; give --dataset "
                     f"{' or '.join(sets)}, or --data FOLDER of class subfolders of {FILES[kind]}")
    if args.data is not None and not os.path.isdir(args.data):
        parser.error(f"--data {args.data!r} must be a folder of class subfolders of {FILES[kind]} for this {kind} "
                     "model" + ("" if os.path.exists(args.data) else " (it does not exist)"))
    if args.data is None and args.dataset is None:
        args.dataset = next(iter(sets))
    if args.dataset == "spoken-digits":
        from keras_mim.data.sample_audio import espeak_available

        if not espeak_available():
            parser.error("--dataset spoken-digits is synthesised by the espeak-ng system package, which is not "
                         "installed (Debian/Ubuntu: apt-get install espeak-ng; macOS: brew install espeak-ng)")
    data = {"kind": "builtin", "class_names": None}
    try:
        if args.data is None:
            labels, data["class_names"] = builtin_labels(args.dataset, "train")
        else:
            from keras_mim.evaluation.labelled_signals import scan_labelled_signals

            fraction = labelled_data.DEFAULT_TEST_FRACTION if args.test_fraction is None else args.test_fraction
            parts = scan_labelled_signals(args.data, kind, fraction, sample_rate=args._frontend.get("sample_rate"),
                                          name="--data")
            (train, train_ids), _ = parts
            labels = train.labels[train_ids]
            data.update(kind="folder", parts=parts, class_names=train.class_names)
        keep, labels = labels_per_class(args, labels, data["class_names"])
    except (ValueError, OSError) as error:
        parser.error(str(error).rstrip("."))
    return {**data, "train_labels": labels, "keep": keep}


def frontend_settings(config):
    """An AudioMAE's sample rate and spectrogram statistics from its serialized config."""
    inner = config.get("config", {})
    return {k: inner[k] for k in ("sample_rate", "spectrogram_mean", "spectrogram_std") if k in inner}


def audio_frontend(args, encoder):
    """The `LogMelSpectrogram` an Audio-MAE model was trained on (its sample rate, the encoder's
    frames and mel bins, its stored statistics), from `args._frontend`."""
    from keras_mim.models.audio_mae import spectrogram_frontend

    return spectrogram_frontend(encoder, **args._frontend)


def spectrograms(frontend, waves, batch_size=256):
    """`frontend` applied to waveforms `(N, samples)` in batches: float32 `(N, frames, bins, 1)`."""
    import keras
    import numpy as np

    return np.concatenate([keras.ops.convert_to_numpy(frontend(waves[i : i + batch_size]))
                           for i in range(0, len(waves), batch_size)]).astype("float32")


def load_signal_data(args, encoder):
    """`((x_train, y_train, x_test, y_test), skipped)`: log-mel spectrograms `(N, frames,
    mel_bins, 1)` of the clips (each clip's start, cut or zero-padded to the encoder's
    frames, normalised with the model's statistics) or clouds `(N, num_points, 3)`
    (sampled to the encoder's points, centred, scaled to the unit sphere)."""
    import numpy as np

    from keras_mim.evaluation.labelled_signals import builtin_signals

    data, noun = args._data, NOUNS[args._kind]
    if args._kind == "audio":
        frontend = audio_frontend(args, encoder)
        size = frontend.num_samples()  # samples of `frames` frames
    else:
        size = encoder.num_points
    out, skipped = [], []
    for split in ("train", "test"):
        if data["kind"] == "builtin":
            if args.dataset == "spoken-digits" and split == "train":
                print(f"keras-mim {args.command}: synthesising the spoken digits with espeak-ng ...", flush=True)
            x, y, _ = builtin_signals(args.dataset, split, size, sample_rate=args._frontend.get("sample_rate", 16000))
        else:
            folder, ids = data["parts"][split == "test"]
            x = folder.read(ids, size) if args._kind == "audio" else folder.read(ids, size, seed=0)
            y = folder.labels[ids]
            skipped += [entry for entry in folder.skipped if entry not in skipped]
        if split == "train" and data["keep"] is not None:
            x, y = x[data["keep"]], y[data["keep"]]
        if args._kind == "audio":
            x = spectrograms(frontend, x)
        out += [np.asarray(x, "float32"), np.asarray(y, "int32")]
    print(f"keras-mim {args.command}: {len(out[0])} train / {len(out[2])} test {noun} of "
          f"{args.data or args.dataset} ({len(data['class_names'])} classes)", flush=True)
    return tuple(out), skipped
