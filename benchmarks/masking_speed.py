"""Mask generation cost next to one MAE training step, measured in the same run.

For each registered strategy: the time of drawing the masks of one batch (64 x 14 x 14
tokens, or 64 clips of 8 x 14 x 14 for video strategies) inside a compiled Keras
function, against one compiled train step of MAE ViT-B/16 at batch 64 (224 px).
Writes JSON (and prints a Markdown table) with the ratios.

    KERAS_BACKEND=jax python benchmarks/masking_speed.py --output benchmarks/results/masking_speed_jax.json
    python benchmarks/masking_speed.py --preset mae_vit_tiny_patch16   # a smaller model for a quick look
"""

import argparse
import json
import os
import platform
import statistics
import time

import keras
import numpy as np

import keras_mim
from keras_mim.masking import MASK_GENERATORS, get_mask_generator


class _MaskOnly(keras.Model):
    def __init__(self, generator, grid):
        super().__init__()
        self.generator, self.grid = generator, grid

    def call(self, x):
        return self.generator(x, grid_shape=self.grid)["mask"]


def timed(fn, repeats):
    fn()  # compile / warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="mae_vit_base_patch16")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--step-repeats", type=int, default=3)
    parser.add_argument("--mask-repeats", type=int, default=20)
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    jit = keras.backend.backend() in ("jax", "tensorflow")
    b = args.batch_size

    keras.utils.set_random_seed(0)
    model = keras_mim.MaskedAutoencoder.from_preset(args.preset, seed=0)
    model.compile(optimizer=keras.optimizers.AdamW(1e-4), jit_compile=jit)
    h, w = model.encoder.image_size
    images = np.random.default_rng(0).random((b, h, w, 3), dtype=np.float32)
    step = timed(lambda: model.train_on_batch(images), args.step_repeats)
    grid = model.encoder.grid_shape

    rows = []
    for name in MASK_GENERATORS:
        gen = get_mask_generator(name, seed=0, patch_size=model.encoder.patch_size[0])
        strategy_grid = (8,) + grid if gen.grid_rank == 3 else grid
        wrapper = _MaskOnly(gen, strategy_grid)
        wrapper.compile(jit_compile=jit)
        x = np.zeros((b, 1), "float32")
        seconds = timed(lambda: wrapper.predict_on_batch(x), args.mask_repeats)
        rows.append({"strategy": name, "grid": list(strategy_grid), "seconds_per_batch": seconds,
                     "fraction_of_train_step": seconds / step})
        print(f"{name:13s} {seconds * 1e3:9.2f} ms  {seconds / step:8.2%} of a step", flush=True)

    result = {
        "benchmark": "masking_speed",
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
        "jit_compile": jit,
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "preset": args.preset,
        "batch_size": b,
        "train_step_seconds": step,
        "strategies": rows,
    }
    print(f"\n{args.preset} train step at batch {b}: {step:.3f} s ({keras.backend.backend()}, jit={jit})")
    print("| strategy | grid | ms / batch | share of one train step |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['strategy']} | {'x'.join(map(str, r['grid']))} | {r['seconds_per_batch'] * 1e3:.2f} | "
              f"{r['fraction_of_train_step']:.2%} |")
    if args.output:
        os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
        with open(args.output, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
