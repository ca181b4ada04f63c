"""Subprocess side of benchmarks/train_speed.py: one runner (one backend) per process.

Speaks JSON lines: requests on stdin, one reply per request on the process's original
stdout; everything the libraries print goes to stderr (the driver keeps it in a log).
Requests: `setup` (build, warm up, measure the matmul rate), `time` (one round of timed
steps), `pipeline` (the input pipeline), `quit`. Not meant to be run by hand.

The trainers are in train_speed_runners.py, the device and compile probes in
train_speed_profiling.py, the input pipeline in train_speed_pipeline.py.
"""

import json
import logging
import os
import sys
import time
import traceback

from train_speed_machine import mb, proc_status, reset_peak_rss
from train_speed_pipeline import do_pipeline
from train_speed_profiling import GPU, DynamoLog, dynamo_summary, matmul_flops
from train_speed_runners import HFRunner, JaxReferenceRunner, KerasRunner

_PROTO = None  # the reply channel (the original stdout)
STATE = {}


def reply(obj):
    _PROTO.write(json.dumps(obj) + "\n")
    _PROTO.flush()


# ---------------------------------------------------------------------------- requests
def do_setup(req):
    spec = req["runner"]
    framework = "torch" if spec["framework"] == "hf" else spec["backend"]
    info = {"framework": framework, "pid": os.getpid()}
    start = time.perf_counter()
    if spec["framework"] == "keras":
        import keras

        import keras_mim  # noqa: F401

        info["keras_backend"] = keras.backend.backend()
        assert info["keras_backend"] == spec["backend"], info
    elif spec["framework"] == "jaxref":
        import jax  # noqa: F401
    else:
        import transformers  # noqa: F401
    info["import_s"] = time.perf_counter() - start
    rss0 = proc_status().get("VmRSS")
    gpu = GPU(framework)
    info["device"] = gpu.name or "cpu"
    info["matmul"] = [matmul_flops(framework, req["matmul_size"], "float32")]
    if req["precision"] == "mixed_bfloat16":
        info["matmul"].append(matmul_flops(framework, req["matmul_size"], "bfloat16"))
    handler = None
    if framework == "torch" and spec.get("jit_compile"):
        handler = DynamoLog()
        logging.getLogger("torch._dynamo").addHandler(handler)
    rss_pre = proc_status().get("VmRSS")
    start = time.perf_counter()
    runner = {"hf": HFRunner, "jaxref": JaxReferenceRunner, "keras": KerasRunner}[spec["framework"]](req)
    info["build_s"] = time.perf_counter() - start
    rss_built = proc_status().get("VmRSS")
    info["params"] = runner.params
    if isinstance(runner, HFRunner):
        info["attn_implementation"] = runner.attn_implementation
    reset_peak_rss()
    gpu.reset_peak()
    start = time.perf_counter()
    # One step per fit() call: torch.compile also recompiles on the second call.
    info["warmup_step_times_s"] = [t for _ in range(req["warmup_steps"]) for t in runner.run(1)]
    info["warmup_s"] = time.perf_counter() - start
    hwm = proc_status().get("VmHWM")
    info["memory"] = {
        "rss_framework_mb": mb(rss0),
        "rss_build_mb": mb(rss_built - rss_pre) if rss_built and rss_pre else None,
        "warmup_peak_over_model_mb": mb(hwm - rss_built) if hwm and rss_built else None,
        "gpu_warmup_peak_mb": mb(gpu.peak_bytes()),
    }
    if handler is not None:
        info["torch_compile"] = dynamo_summary(handler)
    info["loss"] = runner.loss
    STATE.update(runner=runner, gpu=gpu, rss_built=rss_built, handler=handler, framework=framework)
    return info


def do_time(req):
    runner, gpu = STATE["runner"], STATE["gpu"]
    # The reference matmul again, right before the steps: under a noisy neighbour one
    # measurement at setup can land in a slow moment; the driver keeps the best.
    matmul = matmul_flops(STATE["framework"], req["matmul_size"], "float32", repeats=3)
    rss_before = proc_status().get("VmRSS")
    hwm_reset = reset_peak_rss()
    gpu.reset_peak()
    start = time.perf_counter()
    times = runner.run(req["steps"])
    wall = time.perf_counter() - start
    hwm = proc_status().get("VmHWM") if hwm_reset else None
    out = {
        "step_times_s": times, "round_wall_s": wall, "loss": runner.loss, "matmul": matmul,
        "memory": {
            "rss_before_mb": mb(rss_before),
            "peak_rss_mb": mb(hwm),
            "step_peak_growth_mb": mb(hwm - rss_before) if hwm and rss_before else None,
            "step_peak_over_model_mb": mb(hwm - STATE["rss_built"]) if hwm and STATE["rss_built"] else None,
            "gpu_peak_mb": mb(gpu.peak_bytes()),
        },
    }
    if STATE.get("handler") is not None:
        out["torch_compile"] = dynamo_summary(STATE["handler"])
    return out


# ---------------------------------------------------------------------------- main loop
HANDLERS = {"setup": do_setup, "time": do_time, "pipeline": do_pipeline}


def main():
    global _PROTO
    _PROTO = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # library prints go to stderr, the driver's log
    sys.stdout = sys.stderr
    reply({"ready": True, "pid": os.getpid()})
    for line in sys.stdin:
        req = json.loads(line)
        if req["cmd"] == "quit":
            reply({"ok": True})
            break
        try:
            reply({"ok": True, **HANDLERS[req["cmd"]](req)})
        except Exception as error:  # reported to the driver, which records it
            traceback.print_exc()
            reply({"ok": False, "error": f"{type(error).__name__}: {error}"[:2000],
                   "traceback": traceback.format_exc()[-4000:]})


if __name__ == "__main__":
    main()
