"""Subprocess side of benchmarks/train_speed.py: one runner (one backend) per process.

Speaks JSON lines: requests on stdin, one reply per request on the process's original
stdout; everything the libraries print goes to stderr (the driver keeps it in a log).
Requests: `setup` (build, warm up, measure the matmul rate), `time` (one round of timed
steps), `pipeline` (the input pipeline), `quit`. Not meant to be run by hand.
"""

import json
import logging
import os
import statistics
import sys
import time
import traceback

import numpy as np

_PROTO = None  # the reply channel (the original stdout)
STATE = {}


def reply(obj):
    _PROTO.write(json.dumps(obj) + "\n")
    _PROTO.flush()


# ---------------------------------------------------------------------------- memory
def proc_status():
    """VmRSS and VmHWM of this process in bytes (Linux); {} elsewhere."""
    out = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    out[line.split(":")[0]] = int(line.split()[1]) * 1024
    except OSError:
        pass
    return out


def reset_peak_rss():
    """Reset VmHWM to the current RSS (Linux >= 4.0: write 5 to clear_refs); False if impossible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class GPU:
    """Device name, allocator peak and synchronisation for the runner's framework."""

    def __init__(self, framework):
        self.framework, self.name, self.kind = framework, None, "cpu"
        if framework == "torch":
            import torch

            if torch.cuda.is_available():
                self.kind, self.name = "gpu", torch.cuda.get_device_name(0)
        elif framework == "jax":
            import jax

            dev = jax.devices()[0]
            if dev.platform == "gpu":
                self.kind, self.name = "gpu", dev.device_kind
        elif framework == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            if gpus:
                self.kind = "gpu"
                self.name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")

    def reset_peak(self):
        if self.kind != "gpu":
            return
        if self.framework == "torch":
            import torch

            torch.cuda.reset_peak_memory_stats()
        elif self.framework == "tensorflow":
            import tensorflow as tf

            tf.config.experimental.reset_memory_stats("GPU:0")
        # JAX has no reset: its peak_bytes_in_use is since process start (one model per process).

    def peak_bytes(self):
        if self.kind != "gpu":
            return None
        if self.framework == "torch":
            import torch

            return int(torch.cuda.max_memory_allocated())
        if self.framework == "jax":
            import jax

            return int(jax.devices()[0].memory_stats().get("peak_bytes_in_use", 0))
        import tensorflow as tf

        return int(tf.config.experimental.get_memory_info("GPU:0")["peak"])


# ---------------------------------------------------------------------------- matmul rate
def matmul_flops(framework, n, dtype="float32", repeats=5):
    """Median and best FLOP/s of an n x n x n matmul (2 n^3 FLOPs) in `dtype`, synchronised."""
    if framework == "torch":
        import torch

        dev = "cuda" if torch.cuda.is_available() else "cpu"
        a = torch.randn(n, n, device=dev).to(getattr(torch, dtype))
        b = torch.randn(n, n, device=dev).to(getattr(torch, dtype))

        def run():
            c = a @ b
            return float(c[0, 0])  # synchronises on GPU
    elif framework == "jax":
        import jax
        import jax.numpy as jnp

        a = jax.random.normal(jax.random.PRNGKey(0), (n, n), dtype)
        b = jax.random.normal(jax.random.PRNGKey(1), (n, n), dtype)
        mm = jax.jit(jnp.matmul)

        def run():
            return mm(a, b).block_until_ready()
    else:
        import tensorflow as tf

        a = tf.cast(tf.random.normal((n, n)), dtype)
        b = tf.cast(tf.random.normal((n, n)), dtype)

        def run():
            c = tf.linalg.matmul(a, b)
            return float(c[0, 0])
    run(), run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    flops = 2.0 * n ** 3
    return {"n": n, "dtype": dtype, "median_flops": flops / statistics.median(times), "best_flops": flops / min(times)}


# ---------------------------------------------------------------------------- runners
def _images(batch, steps, size, seed=0):
    """Distinct float32 images in [0, 1], enough for `steps` batches without reuse."""
    return np.random.default_rng(seed).random((batch * steps, size, size, 3), dtype=np.float32)


class KerasRunner:
    """keras_mim MaskedAutoencoder trained with fit() on the current KERAS_BACKEND."""

    def __init__(self, req):
        import keras

        import keras_mim

        cfg = req["config"]
        if req["precision"] == "mixed_bfloat16":
            keras.mixed_precision.set_global_policy("mixed_bfloat16")
        keras.utils.set_random_seed(req.get("seed", 0))
        encoder = keras_mim.ViTEncoder(
            image_size=cfg["image_size"], patch_size=cfg["patch_size"], embed_dim=cfg["embed_dim"],
            depth=cfg["depth"], num_heads=cfg["num_heads"], name="encoder")
        self.model = keras_mim.MaskedAutoencoder(
            encoder, decoder=dict(decoder_dim=cfg["decoder_dim"], depth=cfg["decoder_depth"],
                                  num_heads=cfg["decoder_num_heads"]),
            mask_ratio=req["mask_ratio"], norm_pix_loss=True, seed=req.get("seed", 0))
        self.model.compile(optimizer=keras.optimizers.AdamW(1.5e-4, weight_decay=0.05, beta_2=0.95),
                           jit_compile=req["runner"]["jit_compile"])
        self.params = int(self.model.count_params())
        self.batch = req["batch_size"]
        self.x = _images(self.batch, req["steps"], cfg["image_size"])
        runner = self

        class StepTimer(keras.callbacks.Callback):
            def on_train_batch_begin(self, batch, logs=None):
                if batch == 0:
                    self.t = time.perf_counter()

            def on_train_batch_end(self, batch, logs=None):
                runner.loss = float(logs["loss"])  # waits for the step (async JAX/TF/CUDA)
                now = time.perf_counter()
                runner.times.append(now - self.t)
                self.t = now

        self.timer = StepTimer()
        self.loss = None

    def run(self, steps):
        self.times = []
        self.model.fit(self.x, batch_size=self.batch, epochs=1, steps_per_epoch=steps, shuffle=False,
                       verbose=0, callbacks=[self.timer])
        return self.times


class HFRunner:
    """HuggingFace ViTMAEForPreTraining, PyTorch eager, torch.optim.AdamW, same config."""

    def __init__(self, req):
        import torch
        from transformers import ViTMAEConfig, ViTMAEForPreTraining

        cfg = req["config"]
        torch.manual_seed(req.get("seed", 0))
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        config = ViTMAEConfig(
            image_size=cfg["image_size"], patch_size=cfg["patch_size"], num_channels=3,
            hidden_size=cfg["embed_dim"], num_hidden_layers=cfg["depth"], num_attention_heads=cfg["num_heads"],
            intermediate_size=4 * cfg["embed_dim"], decoder_hidden_size=cfg["decoder_dim"],
            decoder_num_hidden_layers=cfg["decoder_depth"], decoder_num_attention_heads=cfg["decoder_num_heads"],
            decoder_intermediate_size=4 * cfg["decoder_dim"], mask_ratio=req["mask_ratio"], norm_pix_loss=True,
            layer_norm_eps=1e-6, hidden_act="gelu", qkv_bias=True)
        self.model = ViTMAEForPreTraining(config).to(self.device).train()
        self.attn_implementation = getattr(self.model.config, "_attn_implementation", None)
        self.params = sum(p.numel() for p in self.model.parameters())
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1.5e-4, betas=(0.9, 0.95), weight_decay=0.05)
        x = _images(req["batch_size"], req["steps"], cfg["image_size"])
        self.batches = list(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous().to(self.device)
                            .split(req["batch_size"]))
        self.autocast = req["precision"] == "mixed_bfloat16"
        self.loss, self.torch = None, torch

    def run(self, steps):
        torch, times = self.torch, []
        for i in range(steps):
            start = time.perf_counter()
            with torch.autocast(self.device, dtype=torch.bfloat16, enabled=self.autocast):
                loss = self.model(pixel_values=self.batches[i % len(self.batches)]).loss
            loss.backward()
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
            self.loss = loss.item()  # synchronises
            times.append(time.perf_counter() - start)
        return times


class _DynamoLog(logging.Handler):
    """Keeps torch._dynamo's recompile-limit warnings (which function, why)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.hits = []

    def emit(self, record):
        msg = record.getMessage()
        if "recompile_limit" in msg or "cache_size_limit" in msg:
            lines = [s.strip() for s in msg.splitlines()]
            fn = next((s for s in lines if s.startswith("function:")), "")
            reason = next((s for s in lines if s.startswith("last reason:")), "")
            self.hits.append(f"{lines[0]} {fn} {reason}"[:400])


def dynamo_summary(handler):
    from torch._dynamo.utils import counters

    breaks = counters["graph_break"]
    return {
        "recompile_limit_hits": list(handler.hits),
        "unique_graphs": int(counters["stats"]["unique_graphs"]),
        "graph_breaks": int(sum(breaks.values())),
        "graph_break_reasons": [f"{' '.join(k.split())[:300]} (x{v})" for k, v in breaks.most_common(5)],
    }


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
        handler = _DynamoLog()
        logging.getLogger("torch._dynamo").addHandler(handler)
    rss_pre = proc_status().get("VmRSS")
    start = time.perf_counter()
    runner = (HFRunner if spec["framework"] == "hf" else KerasRunner)(req)
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
        "rss_framework_mb": _mb(rss0),
        "rss_build_mb": _mb(rss_built - rss_pre) if rss_built and rss_pre else None,
        "warmup_peak_over_model_mb": _mb(hwm - rss_built) if hwm and rss_built else None,
        "gpu_warmup_peak_mb": _mb(gpu.peak_bytes()),
    }
    if handler is not None:
        info["torch_compile"] = dynamo_summary(handler)
    info["loss"] = runner.loss
    STATE.update(runner=runner, gpu=gpu, rss_built=rss_built, handler=handler, framework=framework)
    return info


def _mb(n):
    return None if n is None else n / 2 ** 20


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
            "rss_before_mb": _mb(rss_before),
            "peak_rss_mb": _mb(hwm),
            "step_peak_growth_mb": _mb(hwm - rss_before) if hwm and rss_before else None,
            "step_peak_over_model_mb": _mb(hwm - STATE["rss_built"]) if hwm and STATE["rss_built"] else None,
            "gpu_peak_mb": _mb(gpu.peak_bytes()),
        },
    }
    if STATE.get("handler") is not None:
        out["torch_compile"] = dynamo_summary(STATE["handler"])
    return out


# ---------------------------------------------------------------------------- input pipeline
SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "retina",
                  "immunohistochemistry", "stereo_motorcycle", "colorwheel")


def source_jpegs(count, seed=0, min_side=256, max_side=512):
    """`count` JPEG strings cut from scikit-image's bundled photos at varied sizes and aspect
    ratios (shorter side uniform in [min_side, max_side], aspect in [3/4, 4/3]), as
    ImageNet-style files would arrive."""
    import skimage.data
    import tensorflow as tf

    photos = []
    for name in SKIMAGE_PHOTOS:
        try:
            image = getattr(skimage.data, name)()
        except Exception:  # not shipped in this version: skip, never download
            continue
        photos.append(np.asarray(image[0] if isinstance(image, tuple) else image)[..., :3])
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        photo = photos[i % len(photos)]
        aspect = rng.uniform(3 / 4, 4 / 3)
        h, w = photo.shape[:2]
        ch, cw = (h, min(w, round(h * aspect))) if w / h > aspect else (min(h, round(w / aspect)), w)
        top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        side = rng.uniform(min_side, max_side)
        scale = side / min(ch, cw)
        crop = tf.image.resize(photo[top:top + ch, left:left + cw], (round(ch * scale), round(cw * scale)),
                               antialias=True)
        out.append(tf.io.encode_jpeg(tf.cast(tf.clip_by_value(tf.round(crop), 0, 255), tf.uint8), quality=90))
    return out


def mae_pipeline(jpegs, image_size, batch_size, fused_decode, seed=0):
    """MAE's pretraining augmentation as a tf.data pipeline: decode, RandomResizedCrop (scale
    0.2-1, ratio 3/4-4/3, keras_mim.data.random_resized_crop_box, torchvision rule), bilinear
    antialiased resize, horizontal flip with p = 0.5, [0, 1] floats, batch, prefetch.
    `fused_decode`: decode only the crop window (tf.image.decode_and_crop_jpeg)."""
    import tensorflow as tf

    from keras_mim.data import random_resized_crop_box

    size = (image_size, image_size)

    def augment(jpeg, seed_pair):
        seeds = tf.random.experimental.stateless_split(seed_pair, 2)
        shape = tf.image.extract_jpeg_shape(jpeg)
        top, left, h, w = random_resized_crop_box(shape[:2], scale=(0.2, 1.0), seed=seeds[0])
        if fused_decode:
            crop = tf.image.decode_and_crop_jpeg(jpeg, tf.stack([top, left, h, w]), channels=3)
        else:
            crop = tf.io.decode_jpeg(jpeg, channels=3)[top:top + h, left:left + w]
        image = tf.image.resize(crop, size, method="bilinear", antialias=True) / 255.0
        return tf.image.stateless_random_flip_left_right(image, seeds[1])

    ds = tf.data.Dataset.from_tensor_slices(tf.stack(jpegs)).repeat()
    seeds = tf.data.Dataset.random(seed=seed).batch(2)
    ds = tf.data.Dataset.zip((ds, seeds)).map(augment, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def do_pipeline(req):
    start = time.perf_counter()
    jpegs = source_jpegs(req["num_source_images"], min_side=req["min_side"], max_side=req["max_side"])
    out = {"source_images": len(jpegs), "prepare_s": time.perf_counter() - start,
           "mean_jpeg_kb": float(np.mean([len(j.numpy()) for j in jpegs]) / 1024), "variants": []}
    for fused in (False, True):
        ds = iter(mae_pipeline(jpegs, req["image_size"], req["batch_size"], fused))
        for _ in range(req["warmup_batches"]):
            batch = next(ds)
        start = time.perf_counter()
        for _ in range(req["batches"]):
            batch = next(ds)
        seconds = time.perf_counter() - start
        assert tuple(batch.shape) == (req["batch_size"], req["image_size"], req["image_size"], 3), batch.shape
        out["variants"].append({
            "name": "decode_and_crop_jpeg + RRC + flip" if fused else "decode_jpeg + RRC + flip",
            "fused_decode": fused, "seconds": seconds,
            "images_per_s": req["batches"] * req["batch_size"] / seconds})
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
