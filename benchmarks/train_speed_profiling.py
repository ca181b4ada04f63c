"""Profiling helpers of a benchmarks/train_speed.py runner process: the GPU's name and
allocator peak, the reference matmul rate, and torch.compile's recompiles and graph breaks.

Each framework is imported only when asked for (one framework per process).
"""

import logging
import statistics
import time


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


class DynamoLog(logging.Handler):
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
    """What torch._dynamo counted so far (graphs, graph breaks), with `handler`'s recompile-limit hits."""
    from torch._dynamo.utils import counters

    breaks = counters["graph_break"]
    return {
        "recompile_limit_hits": list(handler.hits),
        "unique_graphs": int(counters["stats"]["unique_graphs"]),
        "graph_breaks": int(sum(breaks.values())),
        "graph_break_reasons": [f"{' '.join(k.split())[:300]} (x{v})" for k, v in breaks.most_common(5)],
    }
