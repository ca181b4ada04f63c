"""The demo (`keras-mim pretrain` with its defaults) at an older commit and at this checkout,
run alternately in one script on each backend, as a user on a fresh machine runs it.

Each run is `python -m keras_mim.cli pretrain --output DIR [--epochs N]` in its own process,
with `PYTHONPATH` pointing at that version's source (the older one extracted with
`git archive`) and an empty compile cache (`KERAS_MIM_COMPILE_CACHE`, a fresh folder: the
first run on a new machine). Recorded per run: the command's wall time (imports, data,
compilation, training, the final figures and checks), the training time (`history.csv`'s
epoch times), the final loss, and the held-out hidden-pixel MSE, computed the same way for
both versions by this checkout's code: every one of the 359 test digits the demo never
trains on, with fixed masks (seeded noise), mean squared error over the hidden pixels.

    python benchmarks/demo_speed.py --old 2ffb770 --backends tensorflow,jax,torch \
        --json benchmarks/results/demo_speed_cpu.json
"""

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

EVALUATE = """
import json, sys
import numpy as np, keras
from keras_mim.data import load_labelled_digits
from keras_mim.viz import reconstruction_panels
images = np.asarray(load_labelled_digits("test")[0], "float32")
model = keras.saving.load_model(sys.argv[1], compile=False)
num_patches = model.encoder.num_patches
noise = np.random.default_rng(12345).random((len(images), num_patches)).astype("float32")
panels = reconstruction_panels(model, images, noise=noise)
hidden = np.broadcast_to(panels["mask"], panels["original"].shape) > 0.5
print(json.dumps({"heldout_hidden_mse": float(np.mean((panels["reconstruction"] - panels["original"])[hidden] ** 2)),
                  "num_images": int(len(images))}))
"""


def extract(commit, folder):
    """The source tree of `commit` in `folder` (git archive: the repository is not touched)."""
    archive = subprocess.run(["git", "-C", ROOT, "archive", commit], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
    return folder


def run_demo(source, backend, output, extra, cache):
    env = dict(os.environ, PYTHONPATH=source, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3",
               KERAS_MIM_COMPILE_CACHE=cache, XDG_CACHE_HOME=cache)
    env.pop("XLA_FLAGS", None)
    command = [sys.executable, "-m", "keras_mim.cli", "pretrain", "--output", output] + extra
    start = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True, cwd=source)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise RuntimeError(f"{command} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    with open(os.path.join(output, "history.csv")) as f:
        rows = list(csv.DictReader(f))
    time_key = next(k for k in rows[0] if "time" in k)
    epoch_times = [float(r[time_key]) for r in rows]
    evaluated = subprocess.run([sys.executable, "-c", EVALUATE, os.path.join(output, "model.keras")],
                               env=dict(env, PYTHONPATH=ROOT), capture_output=True, text=True)
    if evaluated.returncode:
        raise RuntimeError(f"evaluating {output}/model.keras failed:\n{evaluated.stderr[-3000:]}")
    return {"wall_s": wall, "train_s": sum(epoch_times), "first_epoch_s": epoch_times[0],
            "median_epoch_s": sorted(epoch_times)[len(epoch_times) // 2], "epochs": len(epoch_times),
            "final_loss": float(rows[-1]["loss"]), **json.loads(evaluated.stdout.strip().splitlines()[-1])}


def _describe_checkout():
    def git(*a):
        return subprocess.run(["git", "-C", ROOT, *a], capture_output=True, text=True).stdout.strip()

    return git("rev-parse", "--short", "HEAD") + (" + uncommitted changes" if git("status", "--porcelain", "keras_mim") else "")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--old", default="2ffb770", help="the older commit")
    p.add_argument("--backends", default="tensorflow,jax,torch")
    p.add_argument("--rounds", type=int, default=1, help="old/new pairs per backend")
    p.add_argument("--extra", default="", help="arguments added to both commands (e.g. '--epochs 3')")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    extra = args.extra.split()
    results = {"command": "python benchmarks/demo_speed.py " + " ".join(argv if argv is not None else sys.argv[1:]),
               "machine": {"processor": platform.processor() or platform.machine(), "cpus": os.cpu_count()},
               "old": args.old,
               "new": _describe_checkout(),
               "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        os.makedirs(os.path.join(tmp, "old"))
        sources = {"old": extract(args.old, os.path.join(tmp, "old")), "new": ROOT}
        for backend in args.backends.split(","):
            for round_ in range(args.rounds):
                for version in ("old", "new"):
                    output = os.path.join(tmp, f"run-{version}-{backend}-{round_}")
                    cache = tempfile.mkdtemp(dir=tmp)
                    row = {"backend": backend, "version": version, "round": round_,
                           **run_demo(sources[version], backend, output, extra, cache)}
                    results["runs"].append(row)
                    print(json.dumps(row), flush=True)
    summary = {}
    for backend in args.backends.split(","):
        by = {v: [r for r in results["runs"] if r["backend"] == backend and r["version"] == v] for v in ("old", "new")}
        mean = {v: {k: sum(r[k] for r in rows) / len(rows) for k in ("wall_s", "train_s", "heldout_hidden_mse")}
                for v, rows in by.items()}
        summary[backend] = {"old": mean["old"], "new": mean["new"],
                            "train_speedup": mean["old"]["train_s"] / mean["new"]["train_s"],
                            "wall_speedup": mean["old"]["wall_s"] / mean["new"]["wall_s"]}
    results["summary"] = summary
    print(json.dumps(summary, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
