"""`keras-mim probe` and `keras-mim knn` (and what `finetune` shares with them): evaluate the
encoder of a saved `.keras` model on labelled images and write a results JSON."""

import datetime
import os
import platform
import sys
import time

from keras_mim.cli.backend import backend_version
from keras_mim.cli.common import (
    HelpFormatter,
    add_backend_argument,
    add_jit_argument,
    check_backend_installed,
    check_output,
    jit_compile_setting,
    non_negative_int,
    positive_float,
    positive_int,
    write_json,
)

EVAL_DATASETS = ("digits",)
PROBE_EPOCHS = 90  # MAE's linear probe: 90 epochs, 10 of warmup
PROBE_WARMUP_EPOCHS = 10
PROBE_BATCH_SIZE = 128
PROBE_BASE_LR = 0.1  # lr = base * batch / 256, as MAE's linear probe
KNN_K = 20
KNN_TEMPERATURE = 0.07


def add_eval_arguments(p, command):
    """The arguments `probe`, `knn` and `finetune` share."""
    add_backend_argument(p)
    p.add_argument("model", help="a .keras file holding a keras_mim encoder, or a model with one in "
                                 "`.encoder` (e.g. the model.keras of a `keras-mim pretrain` run)")
    p.add_argument("--dataset", choices=EVAL_DATASETS, default=None,
                   help="built-in labelled data: 'digits' = scikit-learn's digits in a fixed "
                        "stratified split (1438 train / 359 test, keras_mim.data.load_labelled_digits; "
                        "`keras-mim pretrain` pretrains on the train split only), resized to the "
                        "model's image size; default digits unless --data is given")
    p.add_argument("--data", default=None,
                   help="a .npz file with x_train, y_train, x_test, y_test (images (N, H, W[, C]) "
                        "uint8 in 0..255 or float in [0, 1], at the model's image size; integer labels)")
    p.add_argument("--labels-per-class", type=positive_int, default=None,
                   help="low-shot evaluation: keep only the first N training images of each class "
                        "(a seeded random subset; the test split is unchanged); default: all")
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


def add_probe_parser(commands):
    p = commands.add_parser(
        "probe", help="linear probe of a saved model's frozen encoder; writes results.json.",
        description="Train MAE's linear probe (frozen encoder, BatchNorm without affine + Dense) on "
                    "labelled images and report test accuracy in a run folder: results.json, "
                    "history.csv, config.json, probe.keras.",
        epilog="Optimiser: MAE uses LARS (lr 0.1 x batch/256, no weight decay); Keras has no LARS, "
               "so this uses SGD with momentum 0.9 and the same schedule (warmup, then cosine to 0), "
               "which the BatchNorm before the head makes insensitive to the feature scale.",
        formatter_class=HelpFormatter,
    )
    add_eval_arguments(p, "probe")
    add_training_arguments(p, PROBE_EPOCHS, PROBE_BATCH_SIZE, PROBE_BASE_LR, PROBE_WARMUP_EPOCHS)
    return p


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
    """Check the shared arguments before anything heavy is imported or written."""
    if not args.model.endswith(".keras") or not os.path.isfile(args.model):
        parser.error(f"model {args.model!r} must be an existing .keras file")
    if args.data is not None and args.dataset is not None:
        parser.error("give either --dataset or --data, not both")
    if args.data is not None and (not args.data.endswith(".npz") or not os.path.isfile(args.data)):
        parser.error(f"--data {args.data!r} must be an existing .npz file")
    if args.data is None and args.dataset is None:
        args.dataset = "digits"
    if getattr(args, "k", None) is not None and args.dataset == "digits":
        from keras_mim.data.sample_datasets import NUM_TRAIN_DIGITS

        if args.k > NUM_TRAIN_DIGITS:
            parser.error(f"--k {args.k} is more than the {NUM_TRAIN_DIGITS} training digits")
    check_output(parser, args, args.command)
    check_backend_installed(parser, args)
    return args


def fail(command, message):
    print(f"keras-mim {command}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def load_encoder(args):
    """The encoder of the saved model (or, with --random-init, a fresh one of its architecture)."""
    import keras

    from keras_mim.models.image_classifier import get_encoder

    try:
        model = keras.saving.load_model(args.model)
        encoder = get_encoder(model)
    except (ValueError, TypeError, OSError) as error:
        fail(args.command, f"cannot use {args.model!r}: {error}")
    if args.random_init:
        keras.utils.set_random_seed(args.seed)
        encoder = encoder.__class__.from_config(encoder.get_config())
    return encoder


def load_labelled(args, encoder):
    """`(x_train, y_train, x_test, y_test)` for the encoder's input size and channels (with
    --labels-per-class, the first N training images of each class)."""
    import numpy as np

    x_train, y_train, x_test, y_test = read_labelled(args, encoder)
    if args.labels_per_class is not None:
        keep = np.concatenate([np.flatnonzero(y_train == c)[: args.labels_per_class] for c in np.unique(y_train)])
        keep.sort()
        x_train, y_train = x_train[keep], y_train[keep]
    return x_train, y_train, x_test, y_test


def read_labelled(args, encoder):
    import numpy as np

    size, channels = tuple(encoder.image_size), encoder.num_channels
    if getattr(encoder, "num_frames", None):
        fail(args.command, "video encoders are not supported by this command yet (images only)")
    if args.data is None:
        from keras_mim.data import load_labelled_digits

        # fixed order (seed 0): --labels-per-class picks the same images whatever --seed is
        x_train, y_train = load_labelled_digits("train", image_size=size, seed=0)
        x_test, y_test = load_labelled_digits("test", image_size=size, seed=0)
        if channels != 1:  # grayscale digits for an RGB (or multispectral) encoder
            x_train, x_test = (np.repeat(x, channels, axis=-1) for x in (x_train, x_test))
        return x_train, y_train, x_test, y_test
    with np.load(args.data) as f:
        missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in f.files]
        if missing:
            fail(args.command, f"--data {args.data!r} lacks {', '.join(missing)} (has {', '.join(f.files)})")
        arrays = [f[k] for k in ("x_train", "y_train", "x_test", "y_test")]
    out = []
    for name, x, y in (("train", arrays[0], arrays[1]), ("test", arrays[2], arrays[3])):
        if x.ndim == 3:
            x = x[..., None]
        if x.ndim != 4 or tuple(x.shape[1:3]) != size or x.shape[-1] != channels:
            fail(args.command, f"x_{name} in --data has shape {x.shape}; this encoder takes "
                               f"(N, {size[0]}, {size[1]}, {channels}) images")
        if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer) or (y < 0).any():
            fail(args.command, f"y_{name} in --data must be {len(x)} non-negative integer labels, "
                               f"got shape {y.shape} dtype {y.dtype}")
        x = x.astype("float32") / 255.0 if x.dtype == np.uint8 else x.astype("float32")
        if not np.isfinite(x).all():
            fail(args.command, f"x_{name} in --data holds NaN or infinite pixels")
        out += [x, y.astype("int32")]
    return tuple(out)


def run_record(args, encoder, extra):
    """The config.json shared by the evaluation commands."""
    import keras
    import numpy as np

    import keras_mim

    backend = keras.backend.backend()
    return {
        "command": args.command,
        "args": {k: v for k, v in vars(args).items() if k != "command"},
        "resolved": {"backend": backend, "output_dir": os.path.abspath(args.output),
                     "encoder": type(encoder).__name__, "encoder_parameters": int(encoder.count_params()),
                     **extra},
        "versions": {"keras_mim": keras_mim.__version__, "keras": keras.__version__,
                     backend: backend_version(backend), "numpy": np.__version__,
                     "python": platform.python_version()},
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
    }


def prepare_output(args, names):
    output = os.path.abspath(args.output)
    os.makedirs(output, exist_ok=True)
    if args.overwrite:
        for name in names:
            path = os.path.join(output, name)
            if os.path.isfile(path):
                os.remove(path)
    return output


def fit_and_score(args, model, optimizer, loss, train, test, callbacks, fit_kwargs=None):
    """Compile, fit with progress, evaluate on the test split; returns (history, top1, top5)."""
    import keras

    jit = jit_compile_setting(args.jit_compile)
    metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
               keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5")]
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics, jit_compile=jit)
    history = model.fit(*train, epochs=args.epochs, callbacks=callbacks,
                        verbose=1 if sys.stdout.isatty() else 2, **(fit_kwargs or {}))
    scores = model.evaluate(*test, batch_size=args.batch_size, verbose=0, return_dict=True)
    return history.history, float(scores["accuracy"]), float(scores["top5"])


def build_classifier(args, build):
    """Encoder, labelled data, class count and the model `build(encoder, num_classes)`
    (seeded; a bad combination, e.g. cls pooling without a cls token, exits with status 2)."""
    import keras

    encoder = load_encoder(args)
    data = load_labelled(args, encoder)
    num_classes = int(max(data[1].max(), data[3].max())) + 1
    keras.utils.set_random_seed(args.seed)
    try:
        model = build(encoder, num_classes)
    except ValueError as error:
        fail(args.command, str(error))
    return encoder, data, num_classes, model


def run_probe(args):
    import keras

    from keras_mim.models.linear_probe import LinearProbe
    from keras_mim.optimizers import warmup_cosine_schedule

    start = time.perf_counter()
    encoder, (x_train, y_train, x_test, y_test), num_classes, probe = build_classifier(
        args, lambda encoder, n: LinearProbe(encoder, n, pooling=args.pooling, seed=args.seed))
    steps = -(-len(x_train) // args.batch_size)
    peak = args.base_learning_rate * args.batch_size / 256
    total = steps * args.epochs
    schedule = warmup_cosine_schedule(peak, total, min(steps * args.warmup_epochs, total - 1))
    optimizer = keras.optimizers.SGD(schedule, momentum=0.9)
    output = prepare_output(args, ("config.json", "results.json", "history.csv", "probe.keras"))
    config = run_record(args, encoder, {
        "num_train": len(x_train), "num_test": len(x_test), "num_classes": num_classes,
        "pooling": probe.pooling, "peak_learning_rate": peak, "steps_per_epoch": steps,
        "optimizer": "SGD(momentum=0.9), warmup + cosine (MAE: LARS)",
        "features": "computed once (frozen encoder, inference mode, no augmentation)",
    })
    write_json(os.path.join(output, "config.json"), config)
    print(f"keras-mim probe: {'random-init' if args.random_init else 'pretrained'} encoder of {args.model}, "
          f"{len(x_train)} train / {len(x_test)} test images, {args.epochs} epochs, lr {peak:g}", flush=True)
    # Frozen encoder in inference mode, no augmentation: features once, then the head.
    features = [probe.predict_features(x, batch_size=256) for x in (x_train, x_test)]
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    history, _, _ = fit_and_score(
        args, probe.head_model(), optimizer, loss, (features[0], y_train), (features[1], y_test),
        [keras.callbacks.CSVLogger(os.path.join(output, "history.csv"))],
        {"batch_size": args.batch_size, "shuffle": True},
    )
    top1, top5 = score_images(probe, x_test, y_test, args.batch_size)  # end to end, from the images
    probe.save(os.path.join(output, "probe.keras"))
    return finish(args, output, start, {"top1": top1, "top5": top5, "train_loss": history["loss"],
                                        "train_accuracy": history["accuracy"]})


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
    x_train, y_train, x_test, y_test = load_labelled(args, encoder)
    if args.k > len(x_train):
        fail("knn", f"--k {args.k} is more than the {len(x_train)} training images")
    output = prepare_output(args, ("config.json", "results.json"))
    write_json(os.path.join(output, "config.json"),
               run_record(args, encoder, {"num_train": len(x_train), "num_test": len(x_test)}))
    print(f"keras-mim knn: {'random-init' if args.random_init else 'pretrained'} encoder of {args.model}, "
          f"{len(x_train)} train / {len(x_test)} test images, k={args.k}, T={args.temperature:g}", flush=True)
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
