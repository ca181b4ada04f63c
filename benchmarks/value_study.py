"""Does pretraining pay off on real data a user brings? For each labelled set of
benchmarks/value_data.py: pretrain on its unlabeled part (`keras-mim pretrain --data`), then
compare on its labelled part, side by side at the same budget:

- the pretrained encoder: k-NN, linear probe (`--block auto`: block and pooling chosen on a
  validation split of the labelled training images), fine-tuning with 1%, 10% and 100% of
  the labels (`keras-mim finetune`'s default recipe, layer-wise lr decay); and the scaling
  curve: the encoder probed after every pretraining epoch on the labelled TRAIN images
  (`--monitor-every 1`, ProbeMonitor; a fixed 20% of them scored, never the test images);
- what a user would do instead: the same encoder from random initialisation (k-NN, probe,
  and trained from scratch with the labels: `finetune --random-init`, same augmentation,
  same number of updates), a small Keras CNN from scratch (same updates), and logistic
  regression on the raw pixels (C chosen on a validation split).

Every keras_mim number comes from one `keras-mim` command, stored in the JSON with its run
time. Fine-tuning gets the same number of optimizer updates at every label fraction
(`--finetune-steps`), so the low-label runs are not starved. Usage:

    KERAS_BACKEND=jax python benchmarks/value_study.py --sets fashion_mnist --pretrain-epochs 13 \
        --fractions 0.1 1.0 --json benchmarks/results/value_study_fashion_jax.json

`--quick` runs a tiny version (a few images and updates; what CI runs).
"""

import argparse
import json
import math
import os
import platform
import shlex
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from downstream_study import run_once  # noqa: E402
from value_data import DATASETS, write_folders  # noqa: E402

IN_PROCESS = False  # --quick: run the keras-mim commands in this process (no interpreter start each)


def run_command(argv, folder, done_file, log):
    """`(command line, seconds)` of a keras-mim command, skipped when `folder` holds `done_file`."""
    if not IN_PROCESS:
        return run_once(argv, folder, done_file, log)
    from keras_mim import cli

    start = time.perf_counter()
    assert cli.main(list(argv)) == 0, argv
    return "keras-mim " + " ".join(argv), round(time.perf_counter() - start, 1)

FRACTIONS = (0.01, 0.1, 1.0)


def labels_per_class(y, fraction):
    return max(1, int(math.floor(fraction * np.bincount(y).min())))


def first_per_class(y, count):
    return np.sort(np.concatenate([np.flatnonzero(y == c)[:count] for c in np.unique(y)]))


def logistic_regression(x, y, x_test, y_test, seed=0):
    """Raw pixels in [0, 1], standardised; C from {0.01, 0.1, 1} on a validation split."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from keras_mim.evaluation import validation_split

    a, b = x.reshape(len(x), -1) / 255.0, x_test.reshape(len(x_test), -1) / 255.0
    fit, held = validation_split(y, 0.2, seed)
    scaler = StandardScaler().fit(a[fit])
    scores = {c: LogisticRegression(C=c, max_iter=2000).fit(scaler.transform(a[fit]), y[fit])
              .score(scaler.transform(a[held]), y[held]) for c in (0.01, 0.1, 1.0)} if len(held) else {1.0: 0}
    best = max(scores, key=scores.get)
    scaler = StandardScaler().fit(a)
    model = LogisticRegression(C=best, max_iter=2000).fit(scaler.transform(a), y)
    return float(model.score(scaler.transform(b), y_test)), best


def small_cnn(x, y, x_test, y_test, steps, num_classes, flips, seed=0, batch_size=64):
    """A small Keras CNN (3 conv blocks, global pooling) from scratch: random translation and
    (where the set allows) flips, Adam with cosine decay, `steps` updates."""
    import keras

    batch_size = min(batch_size, len(x))
    keras.utils.set_random_seed(seed)
    layers = [keras.layers.RandomTranslation(0.1, 0.1, seed=seed)]
    if flips:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed))
    for width in (32, 64, 128):
        layers += [keras.layers.Conv2D(width, 3, padding="same", use_bias=False), keras.layers.BatchNormalization(),
                   keras.layers.ReLU(), keras.layers.MaxPooling2D() if width < 128 else keras.layers.Identity()]
    model = keras.Sequential([keras.Input(x.shape[1:] + (1,)), *layers, keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(num_classes)])
    model.compile(keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(1e-3, steps)),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    per_epoch = math.ceil(len(x) / batch_size)
    model.fit(x[..., None] / 255.0, y, batch_size=batch_size, epochs=math.ceil(steps / per_epoch), verbose=0)
    return float(model.evaluate(x_test[..., None] / 255.0, y_test, verbose=0, return_dict=True)["accuracy"])


def study_set(name, args, log):
    data = DATASETS[name](**({"num_pretrain": 512, "num_train": 300} if args.quick else {}))
    if args.quick:
        data["test"] = tuple(part[:200] for part in data["test"])
    root = os.path.join(args.output, name)
    pretrain_folder, labelled, validation = write_folders(data, os.path.join(root, "data"))
    out = lambda run: os.path.join(root, run)  # noqa: E731
    record = {"source": data["source"], "split": data["split"], "classes": data["classes"],
              "num_pretrain": len(data["pretrain"]), "num_train": len(data["train"][0]),
              "num_test": len(data["test"][0]), "commands": {}, "wall_time_s": {}, "results": {}}

    def command(key, argv, done):
        cmd, seconds = run_command(argv + ["--output", out(key)], out(key), done, log)
        record["commands"][key], record["wall_time_s"][key] = cmd, seconds
        path = os.path.join(out(key), "results.json" if done == "results.json" else "history.json")
        with open(path) as f:
            return json.load(f)

    pretrain = ["pretrain", "--data", pretrain_folder, "--method", args.method, "--preset", args.preset,
                "--image-size", str(args.image_size), "--epochs", str(args.pretrain_epochs),
                "--batch-size", str(args.batch_size), "--figure-every", "0",
                "--monitor-every", "1", "--monitor-data", validation, *args.pretrain_options]
    history = command("pretrain", pretrain, "history.json")
    record["pretrain_loss"] = history["loss"]
    record["pretrain_fit_time_s"] = history["fit_time_s"]
    # the scaling curve: frozen features probed after every epoch (ProbeMonitor on the labelled
    # TRAIN images only: a fixed 20% of them held out and scored, never the test images)
    with open(out("pretrain/monitor.json")) as f:
        monitor = json.load(f)["records"]
    seconds = [0.0] + np.cumsum(history["epoch_time_s"]).round(1).tolist()  # epoch 0: the random init
    record["curve"] = {"epoch": [r["epoch"] for r in monitor], "train_seconds": [seconds[r["epoch"]] for r in monitor],
                       **{key: [r[key] for r in monitor] for key in ("probe_top1", "probe_block", "probe_last_top1",
                                                                     "knn_top1", "blocks")}}
    model = out("pretrain/model.keras")
    results = record["results"]
    y_train = data["train"][1]
    flips = ["--horizontal-flip", "true" if name in args.flip_sets else "false"]
    for weights, flag in (("pretrained", []), ("random_init", ["--random-init"])):
        row = results.setdefault(weights, {})
        row["knn"] = command(f"knn-{weights}", ["knn", model, "--data", labelled, *flag], "results.json")["top1"]
        probe = command(f"probe-{weights}", ["probe", model, "--data", labelled, "--block", "auto",
                                             "--epochs", str(args.probe_epochs), *flag], "results.json")
        row["probe"] = probe["top1"]
        row["probe_block"] = f"{'last' if probe['block'] is None else probe['block']}/{probe['pooling']}"
        for fraction in args.fractions:
            per_class = labels_per_class(y_train, fraction)
            batch_size = min(args.finetune_batch_size, per_class * len(data["classes"]))
            batches = math.ceil(per_class * len(data["classes"]) / batch_size)
            epochs = max(1, math.ceil(args.finetune_steps / batches))
            row[f"finetune_{fraction:g}"] = command(
                f"finetune_{fraction:g}-{weights}",
                ["finetune", model, "--data", labelled, "--labels-per-class", str(per_class), "--epochs", str(epochs),
                 "--batch-size", str(batch_size), *flips, *flag, *args.finetune_options], "results.json")["top1"]
        print(f"  {name} {weights}: {json.dumps(row)}", flush=True)
    (x, y), (x_test, y_test) = data["train"], data["test"]
    for fraction in args.fractions:
        keep = first_per_class(y, labels_per_class(y, fraction))
        start = time.perf_counter()
        accuracy, c = logistic_regression(x[keep], y[keep], x_test, y_test)
        results.setdefault("pixels_logistic_regression", {})[f"{fraction:g}"] = {"top1": accuracy, "C": c}
        results.setdefault("small_cnn", {})[f"{fraction:g}"] = small_cnn(
            x[keep], y[keep], x_test, y_test, args.finetune_steps, len(data["classes"]), name in args.flip_sets)
        record["wall_time_s"][f"baselines_{fraction:g}"] = round(time.perf_counter() - start, 1)
    pre, rnd = results["pretrained"], results["random_init"]
    record["goals"] = {
        "finetune_10pct_gain_points": round(100 * (pre["finetune_0.1"] - rnd["finetune_0.1"]), 1)
        if "finetune_0.1" in pre else None,
        "probe_gain_points": round(100 * (pre["probe"] - rnd["probe"]), 1),
        "target_points": 10,
    }
    print(f"  {name}: goals {record['goals']}", flush=True)
    return record


def plot_curves(record, path):
    """One panel per set: the encoder's probe and k-NN accuracy on a held-out part of the
    labelled train images after each epoch against training seconds (minute 0: the random
    initialisation)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = [(name, r) for name, r in record["sets"].items() if r.get("curve")]
    if not sets:
        return None
    fig, axes = plt.subplots(1, len(sets), figsize=(4.2 * len(sets), 3.4), squeeze=False)
    for ax, (name, r) in zip(axes[0], sets):
        curve = r["curve"]
        minutes = np.asarray(curve["train_seconds"]) / 60
        ax.plot(minutes, curve["probe_top1"], "o-", ms=3, label="ridge probe, best block")
        ax.plot(minutes, curve["probe_last_top1"], "s--", ms=3, label="ridge probe, last block")
        ax.plot(minutes, curve["knn_top1"], "^-", ms=3, label="k-NN")
        ax.set(title=f"{name} ({r['num_pretrain']} unlabeled)", xlabel="pretraining minutes (2-core CPU)",
               ylabel="held-out top-1 (labelled train part)")
        ax.grid(alpha=0.3)
    return save_figure(fig, axes, path)


def save_figure(fig, axes, path):
    """Legend on the first panel, tight layout, PNG at `path`; returns `path`."""
    import matplotlib.pyplot as plt

    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--output", default="runs/value")
    parser.add_argument("--json", default=None, help="results JSON (default OUTPUT/value_study.json)")
    parser.add_argument("--method", default="mae")
    parser.add_argument("--preset", default="mae_vit_micro_patch4_32")
    parser.add_argument("--pretrain-options", type=shlex.split, default=["--norm-pix-loss", "true"],
                        help='more `keras-mim pretrain` options, one string: --pretrain-options="--mask-ratio 0.5"')
    parser.add_argument("--finetune-options", type=shlex.split, default=[],
                        help='more `keras-mim finetune` options, one string: --finetune-options="--mixup 0"')
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--pretrain-epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--probe-epochs", type=int, default=10)
    parser.add_argument("--finetune-steps", type=int, default=600, help="optimizer updates of every fine-tuning run")
    parser.add_argument("--finetune-batch-size", type=int, default=64)
    parser.add_argument("--flip-sets", nargs="*", default=["fashion_mnist"],
                        help="sets whose classes survive a horizontal flip")
    parser.add_argument("--fractions", type=float, nargs="+", default=list(FRACTIONS),
                        help="shares of the labelled training images to fine-tune with")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes and budgets, 10%% of the labels only: checks the script runs")
    args = parser.parse_args(argv)
    global IN_PROCESS
    IN_PROCESS = args.quick
    if args.quick:
        args.pretrain_epochs, args.finetune_steps, args.probe_epochs, args.preset = 1, 4, 1, "mae_vit_test"
        args.image_size, args.batch_size, args.fractions = 16, 64, [0.1]
    return run_sets(args, "pretraining on each set's unlabeled part, evaluation on its labelled part (test top-1)",
                    study_set, "value_study.json", plot_curves)


def run_sets(args, what, study, default_json, plot):
    """`study(name, args, log)` for each of `args.sets`; writes the JSON (`args.json`, default
    OUTPUT/`default_json`) and `plot(record, path)`'s figure beside it; returns the record."""
    os.makedirs(args.output, exist_ok=True)
    import keras

    log = open(os.path.join(args.output, "log.txt"), "a")
    record = {"what": what, "args": vars(args), "sets": {}}
    for name in args.sets:
        print(f"== {name}", flush=True)
        record["sets"][name] = study(name, args, log)
    record.update(backend=keras.backend.backend(), keras=keras.__version__, python=platform.python_version(),
                  machine=f"{platform.machine()}, {os.cpu_count()} CPU cores")
    path = args.json or os.path.join(args.output, default_json)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(record, f, indent=1)
        f.write("\n")
    figure = plot(record, os.path.splitext(path)[0] + ".png")
    print(f"wrote {path}" + (f" and {figure}" if figure else ""))
    return record

if __name__ == "__main__":
    main()
