"""Training-step cost of the convolutional and hierarchical methods next to MAE on a ViT of
similar FLOPs, alternated in one run (one process, same batch, same backend).

Pairs (encoder forward FLOPs at 224 px, as published): FCMAE on ConvNeXt V2-Pico (1.37 G,
ConvNeXt V2 paper) against MAE on ViT-Ti/16 (1.3 G, DeiT paper); SparK on keras.applications
ResNet50 (4.1 G, ResNet paper) and Hiera MAE on Hiera-Tiny (4.9 G, Hiera paper) against MAE
on ViT-S/16 (4.6 G, DeiT paper). Each at `--image-size` (default 128 px, 4 x 4 cells or mask
units of 32 px, 8 x 8 ViT tokens, to keep a CPU run short), with the methods' own mask ratios
(0.6 cells or units; 0.75 tokens) and presets (decoders included: MAE ViT-Ti 256 x 4, ViT-S
256 x 8; FCMAE 512 x 1 block; SparK width 768; Hiera MAE 512 x 8). Steps
are `fit` steps, jit-compiled on JAX / TensorFlow, eager on PyTorch; the median of
`--steps` timed steps after two warm-up steps, per round. Writes JSON:

    KERAS_BACKEND=torch python benchmarks/convnet_step_cost.py --json benchmarks/results/convnet_step_cost_torch.json

Sparse convolution by masking computes every position, hidden ones included, while MAE's
encoder runs on the visible quarter of the tokens only: the ratios show what that costs.
"""

import argparse
import json
import os
import platform
import statistics
import time

import keras
import numpy as np

from keras_mim.models import build_method

PAIRS = {  # name -> (method, preset, published encoder GFLOPs at 224 px)
    "fcmae_convnextv2_pico": ("fcmae", "fcmae_convnextv2_pico", 1.37),
    "mae_vit_tiny_patch16": ("mae", "mae_vit_tiny_patch16", 1.3),
    "spark_resnet50": ("spark", "spark_resnet50", 4.1),
    "hiera_mae_hiera_tiny": ("hiera_mae", "hiera_mae_hiera_tiny", 4.9),
    "mae_vit_small_patch16": ("mae", "mae_vit_small_patch16", 4.6),
}
VERSUS = {"fcmae_convnextv2_pico": "mae_vit_tiny_patch16", "spark_resnet50": "mae_vit_small_patch16",
          "hiera_mae_hiera_tiny": "mae_vit_small_patch16"}


def step_seconds(name, x, batch_size, steps):
    method, preset, _ = PAIRS[name]
    keras.utils.set_random_seed(0)
    model = build_method(method, preset, image_size=x.shape[1], seed=0)
    model.compile(optimizer=keras.optimizers.AdamW(1e-4), jit_compile=keras.backend.backend() != "torch")
    model.fit(x, batch_size=batch_size, epochs=1, steps_per_epoch=2, verbose=0, shuffle=False)  # warm-up
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        model.fit(x[:batch_size], batch_size=batch_size, epochs=1, verbose=0, shuffle=False)
        times.append(time.perf_counter() - start)
    return statistics.median(times), model.count_params()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--steps", type=int, default=3, help="timed steps per model and round")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    x = np.random.default_rng(0).random((2 * args.batch_size, args.image_size, args.image_size, 3), dtype=np.float32)
    rounds, params = {name: [] for name in PAIRS}, {}
    for r in range(args.rounds):
        for name in PAIRS:
            seconds, params[name] = step_seconds(name, x, args.batch_size, args.steps)
            rounds[name].append(seconds)
            print(f"round {r + 1}: {name:24s} {seconds:.3f} s/step", flush=True)
    median = {name: statistics.median(t) for name, t in rounds.items()}
    record = {
        "what": "fit-step seconds, convolutional and hierarchical MIM vs MAE on a ViT of similar published encoder FLOPs",
        "backend": keras.backend.backend(), "keras": keras.__version__, "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "image_size": args.image_size, "batch_size": args.batch_size, "steps": args.steps,
        "published_encoder_gflops_224": {name: spec[2] for name, spec in PAIRS.items()},
        "parameters": params, "seconds_per_step": median, "rounds": rounds,
        "ratio_to_vit": {name: median[name] / median[vit] for name, vit in VERSUS.items()},
        "command": "KERAS_BACKEND=" + keras.backend.backend() + " python benchmarks/convnet_step_cost.py "
                   f"--image-size {args.image_size} --batch-size {args.batch_size} --steps {args.steps} "
                   f"--rounds {args.rounds}",
    }
    print(json.dumps({"seconds_per_step": median, "ratio_to_vit": record["ratio_to_vit"]}, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
