"""`keras-mim score`: anomaly scores by reconstruction error for a folder of images (or the
built-in constructed case), a CSV ranking them, and the AUROC when labels are known."""

import csv
import os
import sys
import time

from keras_mim.cli.common import (
    HelpFormatter,
    add_backend_argument,
    check_backend_installed,
    check_output,
    non_negative_int,
    positive_int,
    write_json,
)

SCORE_DATASETS = ("digits-inverted",)


def add_score_parser(commands):
    p = commands.add_parser(
        "score", help="anomaly scores by reconstruction error; writes scores.csv and results.json.",
        description="Score each image by the reconstruction error of the hidden patches of a pretrained "
                    "model (MAE and its relatives), averaged over --num-masks fixed masks (the same for every "
                    "image); higher = more unusual. Writes scores.csv (images ranked, highest first) and "
                    "results.json (with the AUROC when labels are given) to a run folder.",
        formatter_class=HelpFormatter,
    )
    add_backend_argument(p)
    p.add_argument("model", help="a .keras file of a pretraining model that reconstructs hidden patches "
                                 "(e.g. the model.keras of a `keras-mim pretrain` run)")
    p.add_argument("--data", default=None,
                   help="a folder of images (searched recursively; resized to the model's size; unreadable "
                        "files skipped and listed in skipped_files.txt)")
    p.add_argument("--dataset", choices=SCORE_DATASETS, default=None,
                   help="built-in constructed case: the 359 test digits of keras_mim.data.load_labelled_digits "
                        "(normal, label 0) and the same digits inverted (anomalous, label 1)")
    p.add_argument("--labels", default=None,
                   help="a CSV with columns `file,label` (file relative to --data, label 1 = anomalous, "
                        "0 = normal) for the AUROC")
    p.add_argument("--num-masks", type=positive_int, default=8, help="fixed masks per image")
    p.add_argument("--batch-size", type=positive_int, default=64, help="images per model call")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the masks")
    p.add_argument("--output", default=None,
                   help="run folder; default runs/score-YYYYmmdd-HHMMSS. An existing non-empty folder is "
                        "refused unless --overwrite")
    p.add_argument("--overwrite", action="store_true",
                   help="write into an existing non-empty run folder, replacing this command's files")
    return p


def read_label_csv(parser, path, folder):
    """`{absolute file path: 0/1}` from a `file,label` CSV; exits 2 naming the bad row."""
    labels = {}
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as error:
        parser.error(f"--labels {path!r} cannot be read: {error.strerror or error}")
    if not rows or not {"file", "label"} <= set(rows[0]):
        parser.error(f"--labels {path!r} must be a CSV with a header `file,label` and one row per image")
    for i, row in enumerate(rows, start=2):
        if row["label"].strip() not in ("0", "1"):
            parser.error(f"--labels {path!r} line {i}: label {row['label']!r}; expected 0 (normal) or 1 (anomalous)")
        labels[os.path.abspath(os.path.join(folder, row["file"].strip()))] = int(row["label"])
    return labels


def resolve_score(parser, args):
    """Check every argument before Keras is imported or anything is written."""
    from keras_mim.evaluation import inspect_keras_file

    try:
        inspect_keras_file(args.model, name="model")
    except (ValueError, OSError) as error:
        parser.error(str(error))
    if (args.data is None) == (args.dataset is None):
        parser.error("give one of --data FOLDER or --dataset digits-inverted")
    if args.data is not None and not os.path.isdir(args.data):
        parser.error(f"--data {args.data!r} is not a folder")
    if args.labels is not None and args.data is None:
        parser.error("--labels goes with --data (the built-in --dataset has its labels)")
    args._labels = None if args.labels is None else read_label_csv(parser, args.labels, args.data)
    check_output(parser, args, "score")
    check_backend_installed(parser, args)
    return args


def load_images(args, model):
    """`(images, names, labels or None, skipped)` at the model's input size and channels."""
    import numpy as np

    from keras_mim.cli.evaluate import fail

    size, channels = tuple(model.encoder.image_size), model.encoder.num_channels
    if args.dataset == "digits-inverted":
        from keras_mim.data import load_labelled_digits

        digits, _ = load_labelled_digits("test", image_size=size, seed=0)
        images = np.concatenate([digits, 1.0 - digits])
        if channels != 1:
            images = np.repeat(images, channels, axis=-1)
        names = [f"digit_{i:03d}" for i in range(len(digits))] + [f"inverted_{i:03d}" for i in range(len(digits))]
        return images, names, np.array([0] * len(digits) + [1] * len(digits)), []
    from keras_mim.data import ImageFolder

    try:
        folder = ImageFolder(args.data)
        images = np.stack([folder.read(i, image_size=size) for i in range(len(folder))]).astype("float32")
    except (ValueError, OSError) as error:
        fail("score", str(error))
    if images.shape[-1] != channels:
        if images.shape[-1] == 1:
            images = np.repeat(images, channels, axis=-1)
        elif channels == 1:
            images = images.mean(axis=-1, keepdims=True)
        else:
            fail("score", f"--data images have {images.shape[-1]} channels; the model takes {channels}")
    names = [os.path.relpath(path, args.data) for path in folder.files]
    labels = None
    if args._labels is not None:
        missing = [name for name, path in zip(names, folder.files) if os.path.abspath(path) not in args._labels]
        if missing:
            fail("score", f"--labels has no row for {len(missing)} image(s), e.g. {missing[:3]}")
        labels = np.array([args._labels[os.path.abspath(path)] for path in folder.files])
    return images, names, labels, list(folder.skipped)


def run_score(args):
    import keras
    import numpy as np

    from keras_mim.cli.evaluate import fail, prepare_output
    from keras_mim.evaluation.anomaly import anomaly_auroc, check_scorable, reconstruction_scores

    start = time.perf_counter()
    model = keras.saving.load_model(args.model)
    try:
        check_scorable(model)
    except TypeError as error:
        fail("score", str(error))
    images, names, labels, skipped = load_images(args, model)
    output = prepare_output(args, ("scores.csv", "results.json"), skipped)
    print(f"keras-mim score: {len(images)} images, {args.num_masks} fixed masks, model {args.model}", flush=True)
    scores, _ = reconstruction_scores(model, images, num_masks=args.num_masks, seed=args.seed,
                                      batch_size=args.batch_size, verbose=1 if sys.stdout.isatty() else 0)
    order = np.argsort(-scores, kind="stable")
    with open(os.path.join(output, "scores.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["rank", "file", "score"] + (["label"] if labels is not None else []))
        for rank, i in enumerate(order, start=1):
            writer.writerow([rank, names[i], f"{scores[i]:.6g}"] + ([int(labels[i])] if labels is not None else []))
    record = {"command": "score", "model": os.path.abspath(args.model), "data": args.data or args.dataset,
              "num_images": len(images), "num_masks": args.num_masks, "seed": args.seed,
              "auroc": None if labels is None else anomaly_auroc(scores, labels),
              "backend": keras.backend.backend(), "wall_time_s": round(time.perf_counter() - start, 3)}
    write_json(os.path.join(output, "results.json"), record)
    auroc = "" if record["auroc"] is None else f", AUROC {record['auroc']:.4f}"
    print(f"keras-mim score: wrote {os.path.join(output, 'scores.csv')}{auroc}", flush=True)
    return record
