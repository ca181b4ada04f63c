"""Which pretraining recipe pays on a set? Chosen on its pretraining part and labelled TRAIN
images only, never its test images (benchmarks/value_study.py reports those).

Each candidate recipe pretrains (`keras-mim pretrain --data`) on the set's unlabeled part
with `--monitor-every 1 --monitor-data` the labelled train images: after every epoch
`ProbeMonitor` fits a ridge linear probe (block chosen on a validation split) and a k-NN on
80% of them and scores the other, fixed 20%. The epoch-0 record is the random
initialisation, so every curve starts at the baseline a recipe has to beat. Usage:

    KERAS_BACKEND=jax python benchmarks/value_recipe.py --sets fashion_mnist --epochs 4 \
        --json benchmarks/results/value_recipe_fashion_jax.json

`--quick` runs two candidates on tiny settings (what CI runs).
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import value_study  # noqa: E402
from value_data import DATASETS, write_folders  # noqa: E402

#: name -> `keras-mim pretrain` options (on top of the preset, image size, epochs and batch; a
#: `--preset` here replaces the study's). Without an option the pretrain default holds: mask
#: 0.75, learning rate 2e-3 (warm-up then cosine), MAE's augmentation (random resized crop,
#: flips), the preset's decoder.
CANDIDATES = {
    "mae_mask75_normpix": ["--method", "mae", "--mask-ratio", "0.75", "--norm-pix-loss", "true"],
    "mae_mask50_normpix": ["--method", "mae", "--mask-ratio", "0.5", "--norm-pix-loss", "true"],
    "mae_mask75_pixels": ["--method", "mae", "--mask-ratio", "0.75", "--norm-pix-loss", "false"],
    "mae_mask75_normpix_block": ["--method", "mae", "--mask-ratio", "0.75", "--norm-pix-loss", "true",
                                 "--masking", "block"],
    "mae_mask60_normpix": ["--method", "mae", "--mask-ratio", "0.6", "--norm-pix-loss", "true"],
    "mae_mask90_normpix": ["--method", "mae", "--mask-ratio", "0.9", "--norm-pix-loss", "true"],
    "mae_normpix_no_augmentation": ["--method", "mae", "--norm-pix-loss", "true", "--augmentation", "none"],
    "mae_normpix_lr1e-3": ["--method", "mae", "--norm-pix-loss", "true", "--learning-rate", "0.001"],
    "mae_normpix_lr4e-3": ["--method", "mae", "--norm-pix-loss", "true", "--learning-rate", "0.004"],
    "mae_normpix_warmup0": ["--method", "mae", "--norm-pix-loss", "true", "--warmup-fraction", "0"],
    "mae_normpix_warmup20": ["--method", "mae", "--norm-pix-loss", "true", "--warmup-fraction", "0.2"],
    # width, depth and patch size: presets (the later --preset wins over the study's)
    "mae_normpix_nano_patch2": ["--method", "mae", "--norm-pix-loss", "true", "--preset", "mae_vit_nano_patch2_16"],
    "mae_normpix_tiny": ["--method", "mae", "--norm-pix-loss", "true", "--preset", "mae_vit_tiny_patch4_32"],
    # decoder size and patch size: one part of the micro preset changed
    "mae_normpix_decoder32x1": ["--method", "mae", "--norm-pix-loss", "true", "--decoder-dim", "32",
                                "--decoder-depth", "1"],
    "mae_normpix_decoder128x4": ["--method", "mae", "--norm-pix-loss", "true", "--decoder-dim", "128",
                                 "--decoder-depth", "4"],
    "mae_normpix_patch7": ["--method", "mae", "--norm-pix-loss", "true", "--patch-size", "7"],
    "gmml": ["--method", "gmml"],
    "simmim": ["--method", "simmim"],
}


def search_set(name, args, log):
    data = DATASETS[name](**({"num_pretrain": 256, "num_train": 200} if args.quick else {}))
    root = os.path.join(args.output, name)
    pretrain_folder, _, validation = write_folders(data, os.path.join(root, "data"))
    runs = {}
    for candidate in args.candidates:
        out = os.path.join(root, candidate)
        argv = ["pretrain", "--data", pretrain_folder, "--preset", args.preset, "--image-size", str(args.image_size),
                "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--figure-every", "0",
                "--value-check", "off", "--monitor-every", "1", "--monitor-data", validation,
                *CANDIDATES[candidate], "--output", out]
        command, seconds = value_study.run_command(argv, out, "history.json", log)
        with open(os.path.join(out, "history.json")) as f:
            history = json.load(f)
        with open(os.path.join(out, "monitor.json")) as f:
            records = json.load(f)["records"]
        elapsed = [0.0]
        for t in history["epoch_time_s"]:
            elapsed.append(round(elapsed[-1] + t, 1))
        runs[candidate] = {
            "command": command, "wall_time_s": seconds, "fit_time_s": history["fit_time_s"], "loss": history["loss"],
            "epoch": [r["epoch"] for r in records], "train_seconds": [elapsed[r["epoch"]] for r in records],
            **{key: [r[key] for r in records] for key in ("probe_top1", "probe_block", "probe_last_top1", "knn_top1",
                                                           "blocks")},
        }
        last = runs[candidate]
        print(f"  {name} {candidate}: probe {last['probe_top1'][0]:.3f} -> {last['probe_top1'][-1]:.3f}, "
              f"k-NN {last['knn_top1'][0]:.3f} -> {last['knn_top1'][-1]:.3f} in {history['fit_time_s']:.0f} s",
              flush=True)
    chosen = max(runs, key=lambda c: runs[c]["probe_top1"][-1] + runs[c]["knn_top1"][-1])
    return {"source": data["source"], "split": data["split"], "num_pretrain": len(data["pretrain"]),
            "num_labelled_train": len(data["train"][0]), "runs": runs, "chosen": chosen,
            "rule": "the highest held-out ridge probe + k-NN top-1 after the last epoch (equal epochs)"}


def plot(record, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    sets = list(record["sets"].items())
    fig, axes = plt.subplots(2, len(sets), figsize=(4.6 * len(sets), 6.4), squeeze=False)
    for column, (name, result) in enumerate(sets):
        for i, (candidate, run) in enumerate(result["runs"].items()):
            epochs = np.asarray(run["epoch"])  # equal epochs for all (seconds in the JSON: the CPU is shared)
            style = dict(ms=3, color=plt.cm.tab20(i % 20), linestyle="-" if i % 2 == 0 else "--", label=candidate)
            axes[0][column].plot(epochs, run["probe_top1"], marker="o", **style)
            axes[1][column].plot(epochs, run["knn_top1"], marker="o", **style)
        axes[0][column].set(title=f"{name}: ridge probe (best block)", ylabel="held-out top-1")
        axes[1][column].set(title=f"{name}: k-NN (output)", xlabel="pretraining epochs (0: random init)",
                            ylabel="held-out top-1")
        for ax in axes[:, column]:
            ax.grid(alpha=0.3)
    return value_study.save_figure(fig, axes, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", default=["fashion_mnist"], choices=list(DATASETS))
    parser.add_argument("--candidates", nargs="+", default=["mae_mask75_normpix", "mae_mask50_normpix",
                                                            "mae_mask75_pixels", "gmml"], choices=list(CANDIDATES))
    parser.add_argument("--output", default="runs/value-recipe")
    parser.add_argument("--json", default=None, help="results JSON (default OUTPUT/value_recipe.json)")
    parser.add_argument("--preset", default="mae_vit_micro_patch4_32")
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--quick", action="store_true", help="two candidates, tiny settings: checks the script runs")
    args = parser.parse_args(argv)
    value_study.IN_PROCESS = args.quick
    if args.quick:
        args.epochs, args.preset, args.image_size, args.batch_size = 1, "mae_vit_test", 16, 64
        args.candidates = ["mae_mask75_normpix", "gmml"]
    return value_study.run_sets(
        args, "ridge probe and k-NN of the encoder after each pretraining epoch, on a fixed 20% of the labelled "
              "TRAIN images (fitted on the other 80%); epoch 0 = random init; test images unused",
        search_set, "value_recipe.json", plot)

if __name__ == "__main__":
    main()
