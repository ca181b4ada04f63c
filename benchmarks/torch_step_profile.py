"""Where a small model's PyTorch step spends its time: keras_mim (torch eager, under `fit`)
beside Hugging Face `ViTMAEForPreTraining`, both profiled with `torch.profiler`.

For each runner (the same trainers `benchmarks/train_speed.py` times, built from one config),
after warm-up steps, `torch.profiler.profile` records `--steps` steps and this script reports
per step: wall time, the number of ATen operator calls, the time spent inside them (self CPU
time of the top-level `aten::` calls: the kernels and their dispatch), and the rest, which is
Python: the framework's layer calls, argument conversion, the fit loop and callbacks. It also
lists the operators whose call counts differ most between the two, which is where keras_mim's
step does work HF's does not. Alternating rounds in one process, so the ratios are comparable.

    KERAS_BACKEND=torch python benchmarks/torch_step_profile.py --configs nano \
        --json benchmarks/results/torch_step_profile_nano.json
"""

import argparse
import collections
import json
import os
import platform
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "torch")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from train_speed_lib import CONFIGS, RUNNERS  # noqa: E402
from train_speed_runners import HFRunner, KerasRunner  # noqa: E402


def _top_level_ops(prof):
    """ATen calls made directly by Python (not from inside another ATen op), per name:
    (count, self + children CPU microseconds). Nested calls are inside their parent's time."""
    per_name = collections.defaultdict(lambda: [0, 0.0])
    events = [e for e in prof.events() if e.name.startswith("aten::")]
    for event in events:
        parent = event.cpu_parent
        while parent is not None and not parent.name.startswith("aten::"):
            parent = parent.cpu_parent
        if parent is None:
            per_name[event.name][0] += 1
            per_name[event.name][1] += event.cpu_time_total
    return per_name


def profile_runner(runner, steps, label):
    import torch

    runner.run(2)  # warm-up (allocator, first-call paths)
    start = time.perf_counter()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        times = runner.run(steps)
    profiled_wall = time.perf_counter() - start
    ops = _top_level_ops(prof)
    op_us = sum(t for _, t in ops.values())
    calls = sum(c for c, _ in ops.values())
    plain = runner.run(steps)  # the same steps without the profiler's own cost
    step_s = sorted(plain)[len(plain) // 2]
    op_s = op_us / 1e6 / steps
    return {
        "runner": label,
        "step_s": step_s,
        "profiled_step_s": profiled_wall / steps,
        "aten_calls_per_step": calls / steps,
        "aten_time_per_step_s": op_s,
        "aten_share_of_profiled_step": op_s / (profiled_wall / steps),
        "ops": {name: {"calls_per_step": c / steps, "ms_per_step": t / 1e3 / steps}
                for name, (c, t) in sorted(ops.items(), key=lambda kv: -kv[1][1])},
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", default="nano", help=f"comma list of {sorted(CONFIGS)}")
    p.add_argument("--steps", type=int, default=20, help="profiled steps per runner")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--json", default=None, help="write the results here")
    args = p.parse_args(argv)
    if os.environ["KERAS_BACKEND"] != "torch":
        p.error("run with KERAS_BACKEND=torch (keras_mim's runner must be the torch one)")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    results = {"machine": {"processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                           "torch_threads": torch.get_num_threads(), "torch": torch.__version__},
               "command": "python benchmarks/torch_step_profile.py " + " ".join(argv or sys.argv[1:]),
               "configs": {}}
    for name in args.configs.split(","):
        cfg = dict(CONFIGS[name])
        req = dict(config=cfg, batch_size=cfg["batch_size"], steps=args.steps, mask_ratio=0.75,
                   precision="float32", seed=0)
        rows = []
        for key, cls in (("hf", HFRunner), ("keras-torch", KerasRunner)):
            runner = cls(dict(req, runner=RUNNERS[key]))
            rows.append(profile_runner(runner, args.steps, key))
        hf, keras_row = rows
        names = set(hf["ops"]) | set(keras_row["ops"])
        extra = sorted(((keras_row["ops"].get(n, {}).get("calls_per_step", 0) - hf["ops"].get(n, {}).get("calls_per_step", 0), n)
                        for n in names), reverse=True)
        results["configs"][name] = {
            "runners": rows,
            "extra_calls_in_keras": {n: d for d, n in extra[:15] if d > 0},
            "fewer_calls_in_keras": {n: d for d, n in extra[::-1][:8] if d < 0},
        }
        for row in rows:
            python_s = row["profiled_step_s"] - row["aten_time_per_step_s"]
            print(f"{name} {row['runner']:12s} step {row['step_s'] * 1e3:6.1f} ms | profiled "
                  f"{row['profiled_step_s'] * 1e3:6.1f} ms: aten {row['aten_time_per_step_s'] * 1e3:6.1f} ms in "
                  f"{row['aten_calls_per_step']:5.0f} calls, rest (Python) {python_s * 1e3:6.1f} ms")
        print("extra ATen calls per step in keras_mim:", results["configs"][name]["extra_calls_in_keras"])
    if args.json:
        for cfg in results["configs"].values():  # keep the JSON readable: the 25 costliest ops
            for row in cfg["runners"]:
                row["ops"] = dict(list(row["ops"].items())[:25])
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return results


if __name__ == "__main__":
    main()
