"""Does pretraining help (MAE by default, any method with `--method`)? Pretrain on the digits train split, then k-NN, linear probe and
fine-tune the encoder against the same architecture from random init (same seed, same
budget), with all 1438 labels and with 10 labels per class. Raw-pixel k-NN and logistic
regression (scikit-learn) show what the pixels alone give.

Every step is a `keras-mim` command (printed, and stored in the JSON), so any number can be
reproduced on its own. Usage:

    KERAS_BACKEND=jax python benchmarks/downstream_study.py --output runs/study \
        --json benchmarks/results/downstream_digits_jax.json

About 25 minutes on a 2-core CPU with the defaults. `--attentive` adds V-JEPA's attentive probe
(`keras-mim probe --head attentive`, the evaluation of JEPA-style encoders) with all labels and
with 10 per class.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

DIGIT_SAFE = ["--horizontal-flip", "false", "--rand-augment-ops", "0"]  # a flipped or rotated 6 is no 6
# The study's settings, pinned where the commands' defaults moved since it was measured: the
# probe reads the last block (now `--block auto`), fine-tuning takes MAE's augmentation (now
# `--augmentation auto`, which picks "light" on 1438 digits; docs/value.md).
LAST_BLOCK, MAE_RECIPE = ["--block", "last"], ["--augmentation", "mae"]
EVALS = [  # (name, command, extra arguments)
    ("knn", "knn", []),
    ("probe", "probe", LAST_BLOCK),
    ("finetune_mae_recipe", "finetune", MAE_RECIPE),
    ("finetune", "finetune", MAE_RECIPE + DIGIT_SAFE),
    ("knn_10_per_class", "knn", ["--labels-per-class", "10", "--k", "10"]),
    ("probe_10_per_class", "probe", ["--labels-per-class", "10"] + LAST_BLOCK),
]
ATTENTIVE_EVALS = [  # opt-in (--attentive, or by name in --evals)
    ("attentive_probe", "probe", ["--head", "attentive"]),
    ("attentive_probe_10_per_class", "probe", ["--head", "attentive", "--labels-per-class", "10"]),
]


def keras_mim(args, log):
    command = [sys.executable, "-m", "keras_mim.cli", *args]
    print("$ keras-mim " + " ".join(args), flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=log, stderr=subprocess.STDOUT)
    return "keras-mim " + " ".join(args), round(time.perf_counter() - start, 1)


def run_once(args, folder, done_file, log):
    """Run a command unless its run folder already holds `done_file` (a finished run)."""
    if os.path.isfile(os.path.join(folder, done_file)):
        with open(os.path.join(folder, "command.json")) as f:
            return tuple(json.load(f))
    result = keras_mim(args, log)
    with open(os.path.join(folder, "command.json"), "w") as f:
        json.dump(result, f)
    return result


def pixel_baselines(labels_per_class=None):
    """k-NN (k = 20, cosine, DINO's weighted vote) and logistic regression on raw pixels."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from keras_mim.data import load_labelled_digits
    from keras_mim.evaluation import knn_scores

    x_train, y_train = load_labelled_digits("train", seed=0)
    x_test, y_test = load_labelled_digits("test", seed=0)
    if labels_per_class:
        keep = np.sort(np.concatenate([np.flatnonzero(y_train == c)[:labels_per_class] for c in range(10)]))
        x_train, y_train = x_train[keep], y_train[keep]
    a, b = x_train.reshape(len(x_train), -1), x_test.reshape(len(x_test), -1)
    k = 10 if labels_per_class else 20
    knn = float(np.mean(knn_scores(a, y_train, b, num_classes=10, k=k).argmax(-1) == y_test))
    scaler = StandardScaler().fit(a)
    logistic = LogisticRegression(max_iter=5000).fit(scaler.transform(a), y_train)
    return {"knn": knn, "logistic_regression": float(logistic.score(scaler.transform(b), y_test))}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="runs/study",
                        help="folder of the run folders; runs already finished there are reused")
    parser.add_argument("--json", default=None, help="results JSON (default OUTPUT/study.json)")
    parser.add_argument("--pretrain-epochs", type=int, default=40)
    parser.add_argument("--finetune-epochs", type=int, default=30)
    parser.add_argument("--preset", default="mae_vit_nano_patch2_16")
    parser.add_argument("--method", default="mae",
                        help="the pretraining method (keras-mim pretrain --method); norm-pix targets where it takes them")
    parser.add_argument("--teacher", default=None,
                        help="a frozen teacher's .keras file, for the methods that need one (keras-mim pretrain "
                             "--teacher)")
    parser.add_argument("--evals", nargs="+", default=None,
                        choices=[name for name, _, _ in EVALS + ATTENTIVE_EVALS],
                        help="which evaluations to run (default: all but the attentive probes)")
    parser.add_argument("--attentive", action="store_true",
                        help="also run the attentive probe rows (keras-mim probe --head attentive)")
    args = parser.parse_args()
    if args.evals is None:
        args.evals = [name for name, _, _ in EVALS + (ATTENTIVE_EVALS if args.attentive else [])]
    elif args.attentive:
        args.evals += [name for name, _, _ in ATTENTIVE_EVALS if name not in args.evals]
    os.makedirs(args.output, exist_ok=True)
    import keras

    log = open(os.path.join(args.output, "log.txt"), "a")
    out = lambda name: os.path.join(args.output, name)  # noqa: E731
    commands, times, results = {}, {}, {"pretrained": {}, "random_init": {}}
    from keras_mim.cli.pretrain_options import takes_norm_pix_loss
    from keras_mim.models.methods import get_method_spec

    norm_pix = ["--norm-pix-loss", "true"] if takes_norm_pix_loss(get_method_spec(args.method)) else []
    teacher = [] if args.teacher is None else ["--teacher", args.teacher]
    commands["pretrain"], times["pretrain"] = run_once(
        ["pretrain", "--method", args.method, "--preset", args.preset, *norm_pix, *teacher, "--epochs",
         str(args.pretrain_epochs), "--output", out("pretrain")], out("pretrain"), "history.json", log)
    model = out("pretrain/model.keras")
    for weights, flag in (("pretrained", []), ("random_init", ["--random-init"])):
        for name, command, extra in EVALS + ATTENTIVE_EVALS:
            if name not in args.evals:
                continue
            run = out(f"{name}-{weights}")
            epochs = ["--epochs", str(args.finetune_epochs)] if command == "finetune" else []
            cmd, t = run_once([command, model, *flag, *extra, *epochs, "--output", run], run, "results.json", log)
            with open(os.path.join(run, "results.json")) as f:
                results[weights][name] = json.load(f)["top1"]
            commands[f"{name}-{weights}"], times[f"{name}-{weights}"] = cmd, t
            print(f"  {name} {weights}: top-1 {results[weights][name]:.4f} ({t:.0f} s)", flush=True)
    results["pixels"] = {"all": pixel_baselines(), "10_per_class": pixel_baselines(10)}
    record = {
        "what": "digits (scikit-learn), fixed split 1438 train / 359 test; pretraining on the train "
                "images only; test top-1 accuracy",
        "method": args.method, "preset": args.preset, "teacher": args.teacher, "pretrain_epochs": args.pretrain_epochs, "finetune_epochs": args.finetune_epochs,
        "results": results, "commands": commands, "wall_time_s": times,
        "backend": keras.backend.backend(), "keras": keras.__version__, "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
    }
    path = args.json or out("study.json")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(record, f, indent=2)
        f.write("\n")
    print(json.dumps(results, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
