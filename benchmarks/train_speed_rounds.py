"""Driver side of benchmarks/train_speed.py: the runner subprocesses (train_speed_worker.py,
spoken to in JSON lines), the rounds that alternate between them, and each run's summary.

Framework-free, like the driver.
"""

import json
import os
import selectors
import statistics
import subprocess
import sys
import time

from train_speed_lib import CONFIGS, RUNNERS, approx_params, gpu_bf16_peak, mae_train_flops
from train_speed_machine import proc_bytes

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
        if not reply.pop("ok", True):
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
    avail = proc_bytes("/proc/meminfo", ("MemAvailable",)).get("MemAvailable")
    if avail is None:
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
    for v in out["variants"]:
        say(f"  {v['name']}: {v['images_per_s']:.0f} images/s")
    return {"status": "ok", "image_size": size, "batch_size": batch, "batches": args.pipeline_batches, **out}
