"""Decoder cost of VideoMAE V2's dual masking against plain VideoMAE, measured in one run.

Builds the two models from one preset architecture (same encoder, same decoder, same
weights): plain VideoMAE (the decoder runs on all N tubelet tokens) and VideoMAE V2
(running-cell decoder mask at 0.5: the decoder runs on the K visible + M decoded
tokens). Times, alternating between the two models, (1) a compiled forward pass of the
decoder alone on the encoder's output and (2) a full compiled train step, and counts
the decoder's multiply-adds analytically. Writes JSON and prints the ratios.

    KERAS_BACKEND=jax python benchmarks/video_decoder_cost.py --output benchmarks/results/video_decoder_cost_jax.json
    python benchmarks/video_decoder_cost.py --preset videomae_vit_test --batch-size 8   # a quick look
"""

import argparse
import json
import platform
import statistics
import time

import keras
import numpy as np

from keras_mim.models import VideoMAE


class _DecoderOnly(keras.Model):
    """The decoder part of a VideoMAE step on a fixed encoder output (forward only)."""

    def __init__(self, model):
        super().__init__(name="decoder_only")
        self.model = model

    def call(self, inputs):
        latent, ids_restore, mask = inputs
        return self.model.forward_decoder(latent, ids_restore, mask)[0]


def decoder_flops(tokens, decoder):
    """Multiply-accumulates x 2 of the decoder blocks and prediction head on `tokens` tokens."""
    d, depth, hidden = decoder.decoder_dim, decoder.depth, int(decoder.decoder_dim * decoder.mlp_ratio)
    per_block = 2 * tokens * (4 * d * d + 2 * d * hidden) + 2 * 2 * tokens * tokens * d
    return depth * per_block + 2 * tokens * d * decoder.output_dim


def timed_pair(fns, repeats):
    """Median seconds of each callable, run alternately after one warm-up call each."""
    for fn in fns:
        fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="videomae_vit_base_patch16")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    jit = keras.backend.backend() in ("jax", "tensorflow")

    keras.utils.set_random_seed(0)
    plain = VideoMAE.from_preset(args.preset, seed=0)
    dual = VideoMAE.from_preset(args.preset, seed=0, decoder_mask_generator="running_cell",
                                decoder_mask_ratio=0.5)
    dual.set_weights(plain.get_weights())  # same weights (the seed states are the only other variables)
    enc = plain.encoder
    b = args.batch_size
    clips = np.random.default_rng(0).random((b, enc.num_frames) + enc.image_size + (3,), dtype=np.float32)
    n, k = enc.num_patches, plain.mask_generator.num_visible(enc.grid_shape)
    tokens = {"videomae": n, "videomae_v2": k + dual.num_decoded}
    print(f"{args.preset}: N={n} tokens, K={k} visible, decoder runs on {tokens['videomae']} vs "
          f"{tokens['videomae_v2']} tokens", flush=True)

    latent, masking = plain.forward_encoder(clips)
    inputs = [keras.ops.convert_to_numpy(latent), keras.ops.convert_to_numpy(masking["ids_restore"]),
              keras.ops.convert_to_numpy(masking["mask"])]
    decoders = []
    for model in (plain, dual):
        wrapper = _DecoderOnly(model)
        wrapper.compile(jit_compile=jit)
        decoders.append(lambda w=wrapper: w.predict_on_batch(inputs))
    decoder_seconds = timed_pair(decoders, args.repeats)
    steps = []
    for model in (plain, dual):
        model.compile(optimizer=keras.optimizers.AdamW(1e-4), jit_compile=jit)
        steps.append(lambda m=model: m.train_on_batch(clips))
    step_seconds = timed_pair(steps, args.repeats)

    rows = {}
    for i, name in enumerate(("videomae", "videomae_v2")):
        rows[name] = {
            "decoder_tokens": tokens[name],
            "decoder_gflops_per_clip": decoder_flops(tokens[name], plain.decoder) / 1e9,
            "decoder_forward_seconds": decoder_seconds[i],
            "train_step_seconds": step_seconds[i],
        }
    ratios = {
        "decoder_tokens": tokens["videomae_v2"] / tokens["videomae"],
        "decoder_flops": rows["videomae_v2"]["decoder_gflops_per_clip"] / rows["videomae"]["decoder_gflops_per_clip"],
        "decoder_forward_time": decoder_seconds[1] / decoder_seconds[0],
        "train_step_time": step_seconds[1] / step_seconds[0],
    }
    for name, row in rows.items():
        print(f"{name:12s} decoder {row['decoder_tokens']:5d} tokens {row['decoder_gflops_per_clip']:7.1f} GFLOP/clip "
              f"forward {row['decoder_forward_seconds']:.3f} s  train step {row['train_step_seconds']:.3f} s")
    print("V2 / V1: " + ", ".join(f"{k} {v:.3f}" for k, v in ratios.items()))
    result = {
        "benchmark": "video_decoder_cost",
        "preset": args.preset,
        "batch_size": b,
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
        "jit_compile": jit,
        "machine": platform.processor() or platform.machine(),
        "repeats": args.repeats,
        "models": rows,
        "ratios_v2_over_v1": ratios,
    }
    if args.output:
        with open(args.output, "w") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
