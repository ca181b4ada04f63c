"""MAE training speed: keras_mim on every backend next to HuggingFace ViTMAEForPreTraining.

One run measures, side by side:

1. the fit-style train-step time (AdamW, warm-up excluded, median of all timed steps) of
   keras_mim's MaskedAutoencoder on torch eager, torch.compile (Keras' jit_compile=True),
   JAX jit, TF + XLA and TF graph mode, and of HF ViTMAEForPreTraining (PyTorch eager,
   torch.optim.AdamW) with the same architecture, mask ratio, norm_pix_loss and batch.
   Each runner lives in its own subprocess (Keras fixes its backend at import); rounds
   alternate between them (HF, keras-torch, ..., then again) so that a noisy neighbour
   hits all of them alike (for ViT-B on a 24 GB machine, two processes at a time: see
   --max-workers). A step is timed from the start of the batch to its loss being read
   back (which waits for asynchronous JAX / TF / CUDA work);
2. mask ratio 0.75 against 0.0 on the same model (configs in --mask-zero), with the
   analytic FLOP ratio beside the measured speedup;
3. analytic model FLOPs per step (train_speed_lib.mae_forward_flops) -> achieved FLOP/s,
   as a fraction of the best large float32 matmul measured in the same process (at setup
   and before every round) and, on a GPU, of its dense bf16 peak (table in train_speed_lib);
4. peak memory per step: on CPU the peak RSS during the timed steps above the RSS of the
   built model (VmHWM reset through /proc/self/clear_refs); on GPU the framework
   allocator's peak (torch max_memory_allocated, JAX peak_bytes_in_use, TF peak);
5. images/s of MAE's augmentation pipeline (JPEG decode, RandomResizedCrop scale 0.2-1,
   horizontal flip, resize to 224, batch) in tf.data, with all cores. keras_mim has no
   single-view MAE pipeline yet (`keras-mim pretrain` feeds fixed pre-cut arrays to fit),
   so it is built here from tf.data, tf.image and keras_mim.data.random_resized_crop_box,
   on scikit-image's bundled photos re-encoded as JPEGs of varied sizes (shorter side
   256-512); once with decode_jpeg then crop, once with the fused decode_and_crop_jpeg.

CPU (default: configs tiny and base; about 15 minutes on 2 quiet cores, a third of it
torch.compile's warm-up on the tiny config):

    python benchmarks/train_speed.py                       # -> benchmarks/results/train_speed_cpu.json
    python benchmarks/train_speed.py --configs tiny --backends hf,torch --compile-configs none
    python benchmarks/readme_tables.py --update docs/speed.md  # tables between the speed-table markers

GPU (ViT-B/16, batch 256, bf16 autocast / mixed_bfloat16, every backend, one runner at a
time so that the allocators do not fight over the card):

    python benchmarks/train_speed.py --configs base --batch-size 256 --precision mixed_bfloat16 \\
        --steps 10 --rounds 3 --warmup-steps 3 --mask-zero base --compile-configs base \\
        --interleave off --matmul-size 8192 --pipeline-batches 10 \\
        --json benchmarks/results/train_speed_gpu.json

Keras reads its batches from a host numpy array (fit's usual path, host-to-device copy
included); HF's batches sit on the device already. HF's loss is NaN at mask ratio 0 (it
averages over hidden patches only), which does not change its timing. Timings taken while
other processes use the CPU are unreliable: compare runs from the same quiet machine only.

Parts: this file (command line, result file), train_speed_rounds.py (the runner processes and
their rounds), train_speed_worker.py (one runner process: train_speed_runners.py,
train_speed_profiling.py, train_speed_pipeline.py), train_speed_lib.py (configurations, FLOPs,
tables) and train_speed_machine.py (/proc, versions, GPU name).
"""

import argparse
import datetime
import json
import os
import shutil
import sys
import tempfile
import time

from train_speed_lib import CONFIGS, RUNNERS, add_ratios, mae_forward_flops, mask_speedups, render_tables, \
    resolve_runners
from train_speed_machine import machine_info
from train_speed_rounds import HERE, T0, new_record, run_phase, run_pipeline, say


TORCH_COMPILED = ("hf-compile", "keras-torch-compile")  # runners gated by --compile-configs


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", default=None, help=f"comma list of {sorted(CONFIGS)} (default tiny,base)")
    p.add_argument("--backends", default="all",
                   help="comma list of groups (all, torch, jax, tensorflow) and runners (" + ", ".join(RUNNERS) + ")")
    p.add_argument("--steps", type=int, default=None,
                   help="timed steps per round (default per config: tiny 3, base 2; at mask 0: 2 and 1)")
    p.add_argument("--rounds", type=int, default=None, help="rounds per runner (default per config: tiny 3, base 2)")
    p.add_argument("--warmup-steps", type=int, default=None, help="untimed steps before the rounds (default 2)")
    p.add_argument("--batch-size", type=int, default=None, help="override every config's batch size")
    p.add_argument("--precision", choices=("float32", "mixed_bfloat16"), default="float32")
    p.add_argument("--mask-ratio", type=float, default=0.75)
    p.add_argument("--mask-zero", default=None, help="configs also run at mask ratio 0.0 (default tiny; 'none')")
    p.add_argument("--compile-configs", default=None,
                   help="configs on which the torch.compile runners (keras-torch-compile, hf-compile) run "
                        "(default tiny; 'none'): they are slow to warm up")
    p.add_argument("--interleave", choices=("auto", "rounds", "off"), default="auto",
                   help="rounds: runners alive together, rounds alternate between them (as many as memory "
                        "allows, see --max-workers); off: one runner at a time (GPU); auto: off when "
                        "nvidia-smi sees a GPU, else rounds")
    p.add_argument("--max-workers", type=int, default=None,
                   help="runner processes alive at once with interleaved rounds (default: what fits in 60%% "
                        "of the available memory, at ~1 GB + 40 bytes per weight each)")
    p.add_argument("--matmul-size", type=int, default=None, help="n of the reference n x n matmul (2048; 8192 GPU)")
    p.add_argument("--pipeline-batches", type=int, default=None, help="timed input-pipeline batches (default 20)")
    p.add_argument("--no-pipeline", action="store_true")
    p.add_argument("--timeout", type=float, default=1200.0, help="seconds allowed for one request to a worker")
    p.add_argument("--json", default=None, help="output path (default benchmarks/results/train_speed_{cpu,gpu}.json)")
    p.add_argument("--quick", action="store_true", help="toy sizes for the smoke test")
    args = p.parse_args(argv)
    q = args.quick
    args.configs = (args.configs or ("quick" if q else "tiny,base")).split(",")
    for c in args.configs:
        if c not in CONFIGS:
            p.error(f"--configs: unknown config {c!r}; expected some of {sorted(CONFIGS)}")
    try:
        args.runners = resolve_runners(args.backends)
    except ValueError as error:
        p.error(str(error))
    args.warmup_steps = args.warmup_steps or (1 if q else 2)
    for name in ("steps", "rounds", "warmup_steps", "batch_size", "matmul_size", "pipeline_batches", "max_workers"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name.replace('_', '-')} must be a positive int, got {value}")
    if not 0.0 < args.mask_ratio < 1.0:
        p.error(f"--mask-ratio must be in (0, 1), got {args.mask_ratio}")
    default_zero, default_compile = ("quick", "none") if q else ("tiny", "tiny")
    args.mask_zero = [c for c in (args.mask_zero or default_zero).split(",") if c != "none"]
    args.compile_configs = [c for c in (args.compile_configs or default_compile).split(",") if c != "none"]
    for flag, names in (("--mask-zero", args.mask_zero), ("--compile-configs", args.compile_configs)):
        for c in names:
            if c not in CONFIGS:
                p.error(f"{flag}: unknown config {c!r}; expected some of {sorted(CONFIGS)} or 'none'")
    args.gpu = machine_info()["gpu"]
    if args.interleave == "auto":
        args.interleave = "off" if args.gpu else "rounds"
    args.matmul_size = args.matmul_size or (256 if q else 8192 if args.gpu else 2048)
    args.pipeline_batches = args.pipeline_batches or (3 if q else 20)
    return args


def main(argv=None):
    args = parse_args(argv)
    out_path = args.json
    if out_path is None and not args.quick:
        out_path = os.path.join(HERE, "results", f"train_speed_{'gpu' if args.gpu else 'cpu'}.json")
    log_dir = tempfile.mkdtemp(prefix="train_speed_logs_")
    result = {
        "benchmark": "train_speed",
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([os.path.basename(sys.argv[0])] + (sys.argv[1:] if argv is None else list(argv))),
        "args": {k: v for k, v in vars(args).items() if k != "gpu"},
        "machine": machine_info(),
        "configs": {c: {**CONFIGS[c], "forward_flops_per_image": {str(r): mae_forward_flops(CONFIGS[c], r)
                                                                  for r in (args.mask_ratio, 0.0)}}
                    for c in args.configs},
        "runs": [], "mask_speedup": [], "pipeline": None, "worker_logs": log_dir,
    }
    say(f"train_speed: configs {args.configs}, runners {args.runners}, precision "
        f"{args.precision}, interleave {args.interleave}; worker logs in {log_dir}")

    def save():
        add_ratios(result["runs"])
        result["mask_speedup"] = mask_speedups(result["runs"], args.mask_ratio)
        result["wall_time_s"] = time.perf_counter() - T0
        if out_path:
            os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
            with open(out_path, "w") as f:
                json.dump(result, f, indent=1)

    for cname in args.configs:
        cfg = CONFIGS[cname]
        for ratio in [args.mask_ratio] + ([0.0] if cname in args.mask_zero else []):
            runners = [r for r in args.runners
                       if r not in TORCH_COMPILED or (cname in args.compile_configs and ratio == args.mask_ratio)]
            for name in TORCH_COMPILED:
                if name in args.runners and ratio == args.mask_ratio and name not in runners:
                    skipped = new_record(cname, cfg, ratio, name, args.batch_size or cfg["batch_size"])
                    skipped.update(status="skipped", note="not in --compile-configs (slow warm-up; see the tiny config)")
                    result["runs"].append(skipped)
            result["runs"] += run_phase(cname, cfg, ratio, runners, args, log_dir)
            save()
    if not args.no_pipeline:
        result["pipeline"] = run_pipeline(args, log_dir)
    if all(r["status"] in ("ok", "skipped") for r in result["runs"]) and \
            (result["pipeline"] or {"status": "ok"})["status"] == "ok":
        shutil.rmtree(log_dir, ignore_errors=True)  # nothing to look into
        result["worker_logs"] = None
    save()
    print()
    print(render_tables(result))
    say(f"done; {'wrote ' + out_path if out_path else 'no JSON written (--json)'}")
    return result


if __name__ == "__main__":
    main()
