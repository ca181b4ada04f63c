"""Cost of layer normalisation in one MAE training step, three ways, alternated in one run.

`keras_mim.layers.LayerNorm` (the layer every keras_mim model uses) against the same
model with Keras' own `LayerNormalization.call` put back, and with the norms replaced by
the identity (the floor). ViT-Ti-shaped MAE: 112 px, patch 16 (49 tokens), 192 x 12
blocks, decoder 128 x 2, mask ratio 0 so the encoder sees all 49 tokens; batch 64;
`fit` steps with jit (JAX / TensorFlow) or eager (PyTorch). Writes JSON.

    KERAS_BACKEND=jax python benchmarks/layer_norm_speed.py --json benchmarks/results/layer_norm_speed_jax.json
"""

import argparse
import json
import platform
import statistics
import time

import keras
import numpy as np

import keras_mim
from keras_mim.layers import LayerNorm

VARIANTS = {
    "keras_mim": LayerNorm.call,
    "keras": keras.layers.LayerNormalization.call,
    "identity": lambda self, x: x,
}


def build(batch_size, mask_ratio):
    keras.utils.set_random_seed(0)
    encoder = keras_mim.ViTEncoder(image_size=112, patch_size=16, embed_dim=192, depth=12, num_heads=3)
    model = keras_mim.MaskedAutoencoder(encoder, decoder=dict(decoder_dim=128, depth=2, num_heads=4),
                                        mask_ratio=mask_ratio)
    model.compile(optimizer=keras.optimizers.AdamW(1e-4), jit_compile=keras.backend.backend() != "torch")
    return model


def step_time(variant, x, batch_size, steps, mask_ratio):
    LayerNorm.call = VARIANTS[variant]  # before the first trace
    model = build(batch_size, mask_ratio)
    model.fit(x, batch_size=batch_size, epochs=1, steps_per_epoch=2, verbose=0, shuffle=False)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        model.fit(x[:batch_size], batch_size=batch_size, epochs=1, verbose=0, shuffle=False)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=5, help="timed steps per round")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--mask-ratio", type=float, default=0.0)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    x = np.random.default_rng(0).random((2 * args.batch_size, 112, 112, 3), dtype=np.float32)
    original = LayerNorm.call
    results = {name: [] for name in VARIANTS}
    try:
        for r in range(args.rounds):
            for name in VARIANTS:
                results[name].append(step_time(name, x, args.batch_size, args.steps, args.mask_ratio))
                print(f"round {r + 1}: {name:9s} {results[name][-1]:.3f} s/step", flush=True)
    finally:
        LayerNorm.call = original
    median = {name: statistics.median(t) for name, t in results.items()}
    floor = median["identity"]
    record = {
        "backend": keras.backend.backend(), "keras": keras.__version__, "machine": platform.processor() or platform.machine(),
        "batch_size": args.batch_size, "mask_ratio": args.mask_ratio, "tokens": 49,
        "seconds_per_step": median, "rounds": results,
        "norm_cost_seconds": {k: v - floor for k, v in median.items() if k != "identity"},
    }
    print(json.dumps(record["seconds_per_step"], indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1)


if __name__ == "__main__":
    main()
