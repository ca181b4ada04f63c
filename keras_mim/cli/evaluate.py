"""`keras-mim knn` and what `probe` and `finetune` share with it: evaluate the encoder of a
saved `.keras` model on labelled images and write a results JSON."""

import datetime
import os
import platform
import sys
import time
import warnings

from keras_mim.cli.backend import backend_version
from keras_mim.cli.common import (
    HelpFormatter,
    add_backend_argument,
    add_jit_argument,
    check_backend_installed,
    check_output,
    non_negative_int,
    parsed,
    positive_float,
    positive_int,
    write_json,
)

EVAL_DATASETS = ("digits", "spoken-digits", "tones", "shapes3d")
DEFAULT_TEST_FRACTION = 0.2  # keras_mim.evaluation.labelled_data's (not imported here: it imports Keras)
KNN_K = 20
KNN_TEMPERATURE = 0.07
open_ratio = parsed(float, lambda v: 0.0 < v < 1.0, "a number in (0, 1)")


def add_eval_arguments(p, command):
    """The arguments `probe`, `knn` and `finetune` share."""
    add_backend_argument(p)
    p.add_argument("model", help="a .keras file holding a keras_mim encoder, or a model with one in "
                                 "`.encoder` (e.g. the model.keras of a `keras-mim pretrain` run, a "
                                 "classifier.keras or probe.keras); checked before anything is loaded")
    p.add_argument("--dataset", choices=EVAL_DATASETS, default=None,
                   help="built-in labelled data: 'digits' = scikit-learn's digits in a fixed "
                        "stratified split (1438 train / 359 test, keras_mim.data.load_labelled_digits; "
                        "`keras-mim pretrain` pretrains on the train split only), resized to the "
                        "model's image size; default digits unless --data is given. For an Audio-MAE "
                        "model: 'spoken-digits' (default; espeak-ng, 500 train / 200 test words) or 'tones' "
                        "(160 / 80); for a Point-MAE model: 'shapes3d' (600 / 300 generated clouds of six "
                        "shapes); each drawn with seeds pretraining does not use")
    p.add_argument("--data", default=None,
                   help="your labelled images: a folder with one subfolder per class (labels are the "
                        "subfolder names in sorted order, class2 before class10; png, jpg, bmp, gif, webp, "
                        "tif; resized and centre-cropped to the model's image size; unreadable files are "
                        "skipped and listed in skipped_files.txt), split into train and test by "
                        "--test-fraction, or holding train/ and test/ (or val/) folders of class "
                        "subfolders; or a .npz "
                        "file with x_train, y_train, x_test, y_test (images (N, H, W[, C]) uint8 in "
                        "0..255 or float in [0, 1], at the model's image size; integer labels). For an "
                        "Audio-MAE model: class subfolders of .wav/.flac/.ogg files (resampled to its rate, "
                        "each clip's start cut or padded to its frames, then its log-mel spectrogram); for a "
                        "Point-MAE model: class subfolders of .npy/.ply clouds (sampled to its points, "
                        "normalised); both split by --test-fraction or given as train/ and test/")
    p.add_argument("--test-fraction", type=open_ratio, default=None,
                   help="with --data FOLDER of class subfolders: the share of each class held out as "
                        f"the test split (a fixed choice that never moves); default {DEFAULT_TEST_FRACTION}")
    p.add_argument("--labels-per-class", type=positive_int, default=None,
                   help="low-shot evaluation: keep only the first N training images of each class, in "
                        "the data's order (digits: a fixed shuffled order); every class must have N; "
                        "the test split is unchanged; default: all")
    p.add_argument("--random-init", action="store_true",
                   help="the baseline: the same encoder architecture with freshly initialised "
                        "weights instead of the saved ones")
    p.add_argument("--pooling", choices=("avg", "cls"), default=None,
                   help="how tokens become one feature vector; default: "
                        + ("avg (MAE's fine-tuning)" if command == "finetune" else
                           "cls when the encoder has a cls token, else avg"))
    p.add_argument("--output", default=None,
                   help=f"run folder; default runs/{command}-YYYYmmdd-HHMMSS. An existing non-empty "
                        "folder is refused unless --overwrite")
    p.add_argument("--overwrite", action="store_true",
                   help="write into an existing non-empty run folder, replacing this command's files")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the weights and data order")


def add_training_arguments(p, epochs, batch_size, base_lr, warmup_epochs):
    p.add_argument("--epochs", type=positive_int, default=epochs, help="training epochs")
    p.add_argument("--batch-size", type=positive_int, default=batch_size, help="batch size")
    p.add_argument("--base-learning-rate", type=positive_float, default=base_lr,
                   help="base learning rate; the peak is base * batch_size / 256 (MAE's rule)")
    p.add_argument("--warmup-epochs", type=non_negative_int, default=warmup_epochs,
                   help="linear warmup epochs before the cosine decay")
    add_jit_argument(p)


def add_knn_parser(commands):
    p = commands.add_parser(
        "knn", help="k-NN accuracy of a saved model's frozen encoder features; writes results.json.",
        description="Classify test images by a weighted vote of their k nearest training images in "
                    "the encoder's feature space (cosine similarity, votes exp(sim / T)); writes "
                    "results.json and config.json to a run folder.",
        formatter_class=HelpFormatter,
    )
    add_eval_arguments(p, "knn")
    p.add_argument("--k", type=positive_int, default=KNN_K, help="neighbours per test image")
    p.add_argument("--temperature", type=positive_float, default=KNN_TEMPERATURE, help="vote temperature T")
    p.add_argument("--batch-size", type=positive_int, default=256, help="batch size of feature extraction")
    return p


def resolve_eval(parser, args):
    """Check the shared arguments (the model file, the data and its labels) before anything
    heavy is loaded or written; keeps the resolved data in `args._data`."""
    from keras_mim.cli.evaluate_signals import frontend_settings, resolve_signal_data
    from keras_mim.evaluation import data_kind, inspect_keras_file

    try:
        config = inspect_keras_file(args.model, name="model")
    except (ValueError, OSError) as error:
        parser.error(str(error))
    if args.data is not None and args.dataset is not None:
        parser.error("give either --dataset or --data, not both")
    if args.test_fraction is not None and not (args.data is not None and os.path.isdir(args.data)):
        parser.error("--test-fraction applies to --data FOLDER only")
    args._kind, args._frontend = data_kind(config), frontend_settings(config)
    if args._kind != "images":
        args._data = resolve_signal_data(parser, args)
    else:
        if args.dataset not in (None, "digits"):
            parser.error(f"--dataset {args.dataset} is not image data; {args.model} holds an image model "
                         "(--dataset digits or --data)")
        if args.data is None and args.dataset is None:
            args.dataset = "digits"
        args._data = resolve_data(parser, args)
    num_train = len(args._data["train_labels"])
    if getattr(args, "k", None) is not None and args.k > num_train:
        what = "training digits" if args.dataset == "digits" and args.labels_per_class is None else f"training {noun(args)}"
        parser.error(f"--k {args.k} is more than the {num_train} {what}")
    check_output(parser, args, args.command)
    check_backend_installed(parser, args)
    return args


def resolve_data(parser, args):
    """`--dataset` / `--data` as a dict: `kind` ("digits", "folder", "npz"), the training
    labels (after --labels-per-class), `keep` (the training indices kept, or None),
    `class_names`, and the source (`folders`: train and test ImageFolder views; `arrays`)."""
    from keras_mim.evaluation import labelled_data

    is_folder = args.data is not None and os.path.isdir(args.data)
    data = {"kind": "digits", "class_names": None}
    try:
        if args.data is None:
            from keras_mim.data import load_labelled_digits

            labels = load_labelled_digits("train", seed=0)[1]
        elif is_folder:
            fraction = DEFAULT_TEST_FRACTION if args.test_fraction is None else args.test_fraction
            with warnings.catch_warnings():  # what the scan skipped: one line once the run folder exists
                warnings.simplefilter("ignore")
                folders = labelled_data.scan_labelled_folder(args.data, fraction, name="--data")
            labels = folders[0].labels
            data.update(kind="folder", folders=folders, class_names=folders[0].class_names)
        else:
            if not os.path.exists(args.data):
                raise FileNotFoundError(f"--data {args.data!r} does not exist")
            if not args.data.endswith(".npz"):
                raise ValueError(f"--data {args.data!r} must be a folder of class subfolders or a .npz file")
            data.update(kind="npz", arrays=labelled_data.load_labelled_npz(args.data, name="--data"))
            labels = data["arrays"][1]
        from keras_mim.cli.evaluate_signals import labels_per_class

        keep, labels = labels_per_class(args, labels, data["class_names"])
    except (ValueError, OSError) as error:
        parser.error(str(error).rstrip("."))
    return {**data, "train_labels": labels, "keep": keep}


def noun(args):
    """What the messages call one labelled item: images, clips (audio) or clouds (points)."""
    from keras_mim.cli.evaluate_signals import NOUNS

    return NOUNS[getattr(args, "_kind", "images")]


def fail(command, message):
    print(f"keras-mim {command}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def load_encoder(args):
    """The encoder of the saved model (or, with --random-init, a fresh one of its architecture)."""
    from keras_mim.evaluation import load_encoder as load

    try:
        encoder = load(args.model, name="model")
    except (ValueError, OSError) as error:
        fail(args.command, str(error))
    if args.random_init:
        from keras_mim.evaluation.value_check import random_init_encoder

        encoder = random_init_encoder(encoder, args.seed)
    return encoder


def load_labelled(args, encoder):
    """`((x_train, y_train, x_test, y_test), skipped)` for the encoder's input size and
    channels (with --labels-per-class, the first N training images of each class);
    `skipped`: the (path, reason) pairs of files of a --data folder that did not read."""
    import numpy as np

    if args._kind != "images":
        from keras_mim.cli.evaluate_signals import load_signal_data

        return load_signal_data(args, encoder)
    size, channels = tuple(encoder.image_size), encoder.num_channels
    if getattr(encoder, "num_frames", None):
        fail(args.command, "video encoders are not supported by this command yet (images only)")
    data, keep = args._data, args._data["keep"]
    if data["kind"] == "folder":
        return read_folders(args, data["folders"], size, channels, keep)
    if data["kind"] == "digits":
        from keras_mim.data import load_labelled_digits

        # fixed order (seed 0): --labels-per-class picks the same images whatever --seed is
        x_train, y_train = load_labelled_digits("train", image_size=size, seed=0)
        x_test, y_test = load_labelled_digits("test", image_size=size, seed=0)
        if channels != 1:  # grayscale digits for an RGB (or multispectral) encoder
            x_train, x_test = (np.repeat(x, channels, axis=-1) for x in (x_train, x_test))
    else:
        x_train, y_train, x_test, y_test = data["arrays"]
        for name, x in (("x_train", x_train), ("x_test", x_test)):
            if tuple(x.shape[1:3]) != size or x.shape[-1] != channels:
                fail(args.command, f"{name} in --data {args.data!r} has shape {x.shape}; this encoder takes "
                                   f"(N, {size[0]}, {size[1]}, {channels}) images")
    if keep is not None:
        x_train, y_train = x_train[keep], y_train[keep]
    return (x_train, y_train, x_test, y_test), []


def read_folders(args, folders, size, channels, keep):
    """Decode the train and test views of a --data folder (files that fail are skipped)."""
    from keras_mim.evaluation import read_labelled_folder

    train, test = folders
    if keep is not None:
        train = train.subset(keep)
    print(f"keras-mim {args.command}: reading {len(train)} train / {len(test)} test images of {args.data} "
          f"({len(train.class_names)} classes)", flush=True)
    try:
        out = []
        for folder in (train, test):
            with warnings.catch_warnings():  # files failing to decode: listed with the scan's
                warnings.simplefilter("ignore")
                x, y = read_labelled_folder(folder, size, num_channels=channels if channels in (1, 3) else None)
            if x.shape[-1] != channels:
                raise ValueError(f"the images of --data {args.data!r} have {x.shape[-1]} channels; this "
                                 f"encoder takes {channels}")
            out += [x, y]
    except ValueError as error:
        fail(args.command, str(error))
    skipped = {id(f.skipped): f.skipped for f in (train, test)}  # the views of one folder share one list
    return tuple(out), [entry for lst in skipped.values() for entry in lst]


def run_record(args, encoder, extra):
    """The config.json shared by the evaluation commands."""
    import keras
    import numpy as np

    import keras_mim

    backend = keras.backend.backend()
    return {
        "command": args.command,
        "args": {k: v for k, v in vars(args).items() if k != "command" and not k.startswith("_")},
        "resolved": {"backend": backend, "output_dir": os.path.abspath(args.output),
                     "encoder": type(encoder).__name__, "encoder_parameters": int(encoder.count_params()),
                     "class_names": args._data["class_names"], **extra},
        "versions": {"keras_mim": keras_mim.__version__, "keras": keras.__version__,
                     backend: backend_version(backend), "numpy": np.__version__,
                     "python": platform.python_version()},
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
    }


def prepare_output(args, names, skipped):
    """Create the run folder (with --overwrite, remove this command's files `names` from
    it) and list the `skipped` input files in skipped_files.txt."""
    from keras_mim.cli.run_folder import SKIPPED_FILES, write_skipped_files

    output = os.path.abspath(args.output)
    os.makedirs(output, exist_ok=True)
    if args.overwrite:
        for name in (*names, SKIPPED_FILES):
            path = os.path.join(output, name)
            if os.path.isfile(path):
                os.remove(path)
    write_skipped_files(output, skipped)
    if skipped:
        print(f"keras-mim {args.command}: skipped {len(skipped)} unreadable file(s) of --data, listed in "
              f"{os.path.join(output, SKIPPED_FILES)}", flush=True)
    return output


def build_classifier(args, build):
    """Encoder, labelled data, skipped files, class count and the model
    `build(encoder, num_classes, data)` (`data`: `(x_train, y_train, x_test, y_test)`; seeded; a
    bad combination, e.g. cls pooling without a cls token, exits with status 2)."""
    import keras

    encoder = load_encoder(args)
    data, skipped = load_labelled(args, encoder)
    num_classes = max(int(max(data[1].max(), data[3].max())) + 1, len(args._data["class_names"] or ()))
    keras.utils.set_random_seed(args.seed)
    try:
        model = build(encoder, num_classes, data)
    except ValueError as error:
        fail(args.command, str(error))
    return encoder, data, skipped, num_classes, model


def score_images(model, x, y, batch_size):
    """Top-1 and top-5 accuracy of a classifier's logits on images."""
    import numpy as np

    logits = np.asarray(model.predict(x, batch_size=batch_size, verbose=0))
    ranked = np.argsort(-logits, axis=-1, kind="stable")
    return float(np.mean(ranked[:, 0] == y)), float(np.mean((ranked[:, :5] == y[:, None]).any(-1)))


def run_knn(args):
    from keras_mim.evaluation import knn_evaluate

    start = time.perf_counter()
    encoder = load_encoder(args)
    (x_train, y_train, x_test, y_test), skipped = load_labelled(args, encoder)
    if args.k > len(x_train):  # files of a --data folder that did not decode
        fail("knn", f"--k {args.k} is more than the {len(x_train)} training {noun(args)}")
    output = prepare_output(args, ("config.json", "results.json"), skipped)
    write_json(os.path.join(output, "config.json"),
               run_record(args, encoder, {"num_train": len(x_train), "num_test": len(x_test)}))
    print(f"keras-mim knn: {'random-init' if args.random_init else 'pretrained'} encoder of {args.model}, "
          f"{len(x_train)} train / {len(x_test)} test {noun(args)}, k={args.k}, T={args.temperature:g}", flush=True)
    try:
        result = knn_evaluate(encoder, x_train, y_train, x_test, y_test, k=args.k,
                              temperature=args.temperature, pooling=args.pooling,
                              batch_size=args.batch_size, verbose=1 if sys.stdout.isatty() else 2)
    except ValueError as error:
        fail("knn", str(error))
    return finish(args, output, start, result)


def finish(args, output, start, result):
    import keras

    record = {"command": args.command, "model": os.path.abspath(args.model),
              "weights": "random-init" if args.random_init else "pretrained",
              "dataset": args.data or args.dataset, **result,
              "backend": keras.backend.backend(), "wall_time_s": round(time.perf_counter() - start, 3)}
    write_json(os.path.join(output, "results.json"), record)
    print(f"keras-mim {args.command}: test top-1 {record['top1']:.4f}, top-5 {record['top5']:.4f} "
          f"in {record['wall_time_s']:.1f} s; wrote {output}", flush=True)
    return record
