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
    python benchmarks/readme_tables.py --update README.md  # tables between the speed-table markers

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
"""

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import selectors
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from train_speed_lib import CONFIGS, RUNNERS, add_ratios, approx_params, gpu_bf16_peak, mae_forward_flops, \
    mae_train_flops, mask_speedups, render_tables, resolve_runners

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "train_speed_worker.py")
T0 = time.perf_counter()


def say(msg):
    print(f"[{(time.perf_counter() - T0) / 60:5.1f} min] {msg}", flush=True)


# ---------------------------------------------------------------------------- subprocesses
class Worker:
    """One runner's subprocess, driven by JSON lines (see train_speed_worker.py)."""

    def __init__(self, name, backend, log_dir, timeout):
        self.name, self.timeout = name, timeout
        self.log_path = os.path.join(log_dir, f"{name}-{time.time_ns()}.log")
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1",
                   XLA_PYTHON_CLIENT_PREALLOCATE="false", TF_FORCE_GPU_ALLOW_GROWTH="true")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([sys.executable, WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log, env=env, cwd=os.path.dirname(HERE))
        self.buffer = b""
        self._read(timeout)  # the "ready" line: imports done

    def _read(self, timeout):
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                self.kill()
                raise TimeoutError(f"no reply within {timeout:.0f} s")
            chunk = os.read(self.proc.stdout.fileno(), 1 << 16)
            if not chunk:
                self.proc.wait()
                raise RuntimeError(f"worker exited with code {self.proc.returncode}: {self.log_tail()}")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def request(self, timeout=None, **req):
        self.proc.stdin.write((json.dumps(req) + "\n").encode())
        self.proc.stdin.flush()
        reply = self._read(timeout or self.timeout)
        if not reply.get("ok", True):
            raise RuntimeError(reply.get("error", "worker error"))
        return reply

    def log_tail(self, chars=1500):
        self.log.flush()
        with open(self.log_path, errors="replace") as f:
            return f.read()[-chars:]

    def close(self):
        if self.proc.poll() is None:
            try:
                self.request(timeout=60, cmd="quit")
                self.proc.wait(timeout=60)
            except Exception:
                self.kill()
        self.log.close()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# ---------------------------------------------------------------------------- one phase
def new_record(cname, cfg, ratio, runner, batch):
    spec = RUNNERS[runner]
    return {"config": cname, "mask_ratio": ratio, "runner": runner, "label": spec["label"],
            "framework": spec["framework"], "backend": spec["backend"], "jit_compile": spec["jit_compile"],
            "batch_size": batch, "status": "pending", "error": None, "note": None, "setup": None, "rounds": [],
            "train_flops_per_step": mae_train_flops(cfg, ratio, batch)}


def setup_worker(rec, cfg, args, log_dir):
    spec = RUNNERS[rec["runner"]]
    say(f"{rec['config']} mask {rec['mask_ratio']} {rec['runner']}: starting ({spec['label']})")
    try:
        worker = Worker(rec["runner"], spec["backend"], log_dir, args.timeout)
        rec["setup"] = worker.request(
            cmd="setup", runner=spec, config=cfg, mask_ratio=rec["mask_ratio"], batch_size=rec["batch_size"],
            precision=args.precision, warmup_steps=args.warmup_steps, steps=rec["steps"],
            matmul_size=args.matmul_size, seed=0)
    except Exception as error:
        rec["status"], rec["error"] = "error", f"setup: {type(error).__name__}: {error}"
        say(f"  {rec['runner']} failed in setup: {rec['error'][:300]}")
        return None
    s = rec["setup"]
    say(f"  {rec['runner']}: imports {s['import_s']:.1f} s, {s['params'] / 1e6:.2f} M params, built in "
        f"{s['build_s']:.1f} s, warm-up "
        f"{args.warmup_steps} step(s) {s['warmup_s']:.1f} s, matmul {s['matmul'][0]['best_flops'] / 1e9:.0f} "
        f"GFLOP/s, device {s['device']}")
    return worker


def time_round(worker, rec, args, index):
    try:
        r = worker.request(cmd="time", steps=rec["steps"], matmul_size=args.matmul_size)
    except Exception as error:
        rec["error"] = f"round {index + 1}: {type(error).__name__}: {error}"
        say(f"  {rec['runner']} failed in round {index + 1}: {rec['error'][:300]}")
        return False
    r.pop("ok", None)
    rec["rounds"].append(r)
    say(f"  round {index + 1}/{rec['num_rounds']} {rec['runner']:20s} "
        f"{statistics.median(r['step_times_s']):8.3f} s/step "
        f"(median of {len(r['step_times_s'])}), loss {r['loss']:.4f}")
    return True


def live_workers(cfg, count, args):
    """How many runner processes may be alive at once: all of them (rounds alternate
    between all runners) unless their memory would not fit; 1 with --interleave off.
    Measured on CPU: about 1 GB of framework plus 40 bytes per weight per process."""
    if args.interleave == "off":
        return 1
    if args.max_workers:
        return args.max_workers
    try:
        with open("/proc/meminfo") as f:
            avail = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable"))
    except (OSError, StopIteration):
        return count
    per_worker = 1e9 + 40 * approx_params(cfg)
    return max(1, min(count, int(0.6 * avail / per_worker)))


def run_phase(cname, cfg, ratio, runners, args, log_dir):
    batch = args.batch_size or cfg["batch_size"]
    records = [new_record(cname, cfg, ratio, r, batch) for r in runners]
    for rec in records:
        rec["steps"] = args.steps or (cfg["steps"] if ratio else cfg["zero_steps"])
        rec["num_rounds"] = args.rounds or cfg["rounds"]
        if rec["runner"] == "hf" and not ratio:
            rec["note"] = "HF's loss is NaN at mask ratio 0 (mean over zero hidden patches); the timing stands"
    k = live_workers(cfg, len(records), args)
    chunks = [records[i:i + k] for i in range(0, len(records), k)]
    if len(chunks) > 1:
        say(f"{cname}: {k} runner process(es) alive at a time (memory; --max-workers): "
            + " | ".join(", ".join(r["runner"] for r in c) for c in chunks))
    for chunk in chunks:
        workers = [setup_worker(rec, cfg, args, log_dir) for rec in chunk]
        for i in range(max(rec["num_rounds"] for rec in chunk)):
            for j, (rec, worker) in enumerate(zip(chunk, workers)):
                if worker is not None and not time_round(worker, rec, args, i):
                    worker.kill()
                    workers[j] = None
        for worker in workers:
            if worker is not None:
                worker.close()
    for rec in records:
        summarise(rec, cfg, args)
    return records


def summarise(rec, cfg, args):
    if not rec["rounds"]:
        rec["status"] = "error" if rec["error"] else "no rounds"
        return
    rec["status"] = "ok"
    times = [t for r in rec["rounds"] for t in r["step_times_s"]]
    rec["step_times_s"] = times
    rec["round_medians_s"] = [statistics.median(r["step_times_s"]) for r in rec["rounds"]]
    rec["median_step_s"] = med = statistics.median(times)
    rec["images_per_s"] = rec["batch_size"] / med
    rec["achieved_tflops"] = rec["train_flops_per_step"] / med / 1e12
    rec["setup"].pop("ok", None)
    matmul = rec["setup"]["matmul"]
    best = max([matmul[0]["best_flops"]] + [r["matmul"]["best_flops"] for r in rec["rounds"]])
    rec["matmul_best_tflops"] = best / 1e12
    rec["fraction_of_matmul"] = rec["achieved_tflops"] / rec["matmul_best_tflops"]
    if len(matmul) > 1:
        rec["fraction_of_bf16_matmul"] = rec["achieved_tflops"] * 1e12 / matmul[1]["best_flops"]
    rec["device"] = rec["setup"]["device"]
    peak = gpu_bf16_peak(rec["device"]) if rec["device"] != "cpu" else None
    rec["bf16_peak_tflops"] = peak and peak / 1e12
    rec["fraction_of_bf16_peak"] = rec["achieved_tflops"] * 1e12 / peak if peak else None
    mems = [r["memory"] for r in rec["rounds"]]
    rec["memory"] = {k: max((m[k] for m in mems if m.get(k) is not None), default=None) for k in mems[0]}
    rec["memory"].update(rec["setup"]["memory"])
    rec["final_loss"] = rec["rounds"][-1]["loss"]
    tc = rec["rounds"][-1].get("torch_compile")
    if tc is not None:
        rec["torch_compile"] = tc
        funcs = sorted({h.split("function:")[1].split("(")[0].strip(" '")
                        for h in tc["recompile_limit_hits"] if "function:" in h})
        rec["note"] = (f"torch.compile warm-up {rec['setup']['warmup_s']:.0f} s; recompile limit hit "
                       f"{len(tc['recompile_limit_hits'])} time(s){' in ' + ', '.join(funcs) if funcs else ''}; "
                       f"{tc['graph_breaks']} graph break(s), {tc['unique_graphs']} graph(s); round medians "
                       + ", ".join(f"{t:.2f}" for t in rec["round_medians_s"]) + " s")
    if rec["error"]:
        rec["note"] = ((rec["note"] + "; ") if rec["note"] else "") + rec["error"][:300]


# ---------------------------------------------------------------------------- machine and results
def machine_info():
    info = {"platform": platform.platform(), "machine": platform.machine(), "cpu_cores": os.cpu_count(),
            "python": platform.python_version(), "cpu_model": platform.processor() or None}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu_model"] = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
        with open("/proc/meminfo") as f:
            info["memory_gb"] = round(int(f.readline().split()[1]) / 2 ** 20, 1)
    except (OSError, StopIteration):
        pass
    versions = {}
    for pkg in ("keras", "keras-mim", "tensorflow", "tensorflow-cpu", "jax", "jaxlib", "torch", "transformers"):
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = None
    info["versions"] = versions
    info["gpu"] = None
    if shutil.which("nvidia-smi"):
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True).stdout.strip()
        info["gpu"] = out.splitlines()[0] if out else None
    return info


def run_pipeline(args, log_dir):
    size = max(CONFIGS[c]["image_size"] for c in args.configs)
    batch = args.batch_size or CONFIGS[args.configs[0]]["batch_size"]
    quick = size < 64
    req = dict(cmd="pipeline", image_size=size, batch_size=batch, batches=args.pipeline_batches,
               warmup_batches=1 if quick else 3, num_source_images=8 if quick else 64,
               min_side=size + 16 if quick else 256, max_side=2 * size if quick else 512)
    say(f"input pipeline: {size} px, batch {batch}, {args.pipeline_batches} batches")
    try:
        worker = Worker("pipeline", "tensorflow", log_dir, args.timeout)
        out = worker.request(**req)
        worker.close()
    except Exception as error:
        say(f"  pipeline failed: {error}")
        return {"status": "error", "error": f"{type(error).__name__}: {error}"}
    out.pop("ok", None)
    for v in out["variants"]:
        say(f"  {v['name']}: {v['images_per_s']:.0f} images/s")
    return {"status": "ok", "image_size": size, "batch_size": batch, "batches": args.pipeline_batches, **out}


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
                   help="configs on which keras-torch-compile runs (default tiny; 'none'): it is slow to warm up")
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
                       if r != "keras-torch-compile" or (cname in args.compile_configs and ratio == args.mask_ratio)]
            if "keras-torch-compile" in args.runners and ratio == args.mask_ratio and \
                    "keras-torch-compile" not in runners:
                skipped = new_record(cname, cfg, ratio, "keras-torch-compile", args.batch_size or cfg["batch_size"])
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
