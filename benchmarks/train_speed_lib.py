"""Shared parts of benchmarks/train_speed.py: configurations, runners, the analytic FLOP
count, the GPU peak table and the Markdown tables (also used by benchmarks/readme_tables.py).

Nothing here imports a deep-learning framework, so the driver stays backend-free.
"""

import math

# ---------------------------------------------------------------------------- configurations
# Architectures as plain numbers, so that keras_mim (ViTEncoder + decoder dict) and
# HuggingFace ViTMAEForPreTraining are built from the same dict. MLP ratio 4, qkv bias,
# cls token, fixed 2D sin-cos tables, exact GELU, LayerNorm eps 1e-6, norm_pix_loss on.
# batch_size, steps (timed steps per round), zero_steps (the same at mask ratio 0) and rounds
# are the CPU defaults: the default run (tiny + base) stays around 15 minutes on 2 cores.
CONFIGS = {
    "nano": dict(
        description="the demo's model (keras-mim pretrain's default preset): 64 x 4 x 4 at 16 px, patch 2 "
                    "(64 tokens), decoder 64 x 2 x 4: per-step overhead, not matmuls, decides its speed",
        same_as="mae_vit_nano_patch2_16", image_size=16, patch_size=2, embed_dim=64, depth=4, num_heads=4,
        decoder_dim=64, decoder_depth=2, decoder_num_heads=4, batch_size=32, steps=20, zero_steps=10, rounds=3),
    "tiny": dict(
        description="ViT-Ti/16 encoder (192 x 12 x 3) at 224 px with a light decoder (128 x 2 x 4): "
                    "encoder-heavy, so dropping the hidden tokens should approach MAE's 3x",
        same_as=None, image_size=224, patch_size=16, embed_dim=192, depth=12, num_heads=3,
        decoder_dim=128, decoder_depth=2, decoder_num_heads=4, batch_size=32, steps=3, zero_steps=2, rounds=3),
    "base": dict(
        description="MAE ViT-B/16 at 224 px, official decoder 512 x 8 x 16",
        same_as="mae_vit_base_patch16", image_size=224, patch_size=16, embed_dim=768, depth=12,
        num_heads=12, decoder_dim=512, decoder_depth=8, decoder_num_heads=16, batch_size=8, steps=2, zero_steps=1,
        rounds=2),
    "large": dict(
        description="MAE ViT-L/16 at 224 px, official decoder 512 x 8 x 16 (GPU only: too slow for 2 CPU cores)",
        same_as="mae_vit_large_patch16", image_size=224, patch_size=16, embed_dim=1024, depth=24,
        num_heads=16, decoder_dim=512, decoder_depth=8, decoder_num_heads=16, batch_size=8, steps=2, zero_steps=1,
        rounds=2),
    "quick": dict(
        description="toy model for the smoke test (32 px, patch 8, 64 x 2 x 2, decoder 32 x 1 x 2)",
        same_as=None, image_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=2,
        decoder_dim=32, decoder_depth=1, decoder_num_heads=2, batch_size=4, steps=2, zero_steps=2, rounds=2),
}
MLP_RATIO = 4
NUM_CHANNELS = 3

# ---------------------------------------------------------------------------- runners
# One subprocess each (Keras fixes its backend at import). Order = order within a round.
RUNNERS = {
    "hf": dict(framework="hf", backend="torch", jit_compile=False,
               label="HF ViTMAEForPreTraining (PyTorch eager)"),
    "hf-compile": dict(framework="hf", backend="torch", jit_compile=True,
                       label="HF ViTMAEForPreTraining, torch.compile"),
    "keras-torch": dict(framework="keras", backend="torch", jit_compile=False,
                        label="keras_mim, torch eager"),
    "keras-torch-compile": dict(framework="keras", backend="torch", jit_compile=True,
                                label="keras_mim, torch.compile (jit_compile=True)"),
    "keras-jax": dict(framework="keras", backend="jax", jit_compile=True, label="keras_mim, JAX jit"),
    "jax-ref": dict(framework="jaxref", backend="jax", jit_compile=True,
                    label="hand-written JAX MAE step (benchmarks/jax_reference_mae.py)"),
    "keras-tf-xla": dict(framework="keras", backend="tensorflow", jit_compile=True,
                         label="keras_mim, TF + XLA (jit_compile=True)"),
    "keras-tf": dict(framework="keras", backend="tensorflow", jit_compile=False,
                     label="keras_mim, TF graph (jit_compile=False)"),
}
RUNNER_GROUPS = {
    "all": list(RUNNERS),
    "torch": ["keras-torch", "keras-torch-compile"],
    "jax": ["keras-jax"],
    "tensorflow": ["keras-tf-xla", "keras-tf"],
}


def resolve_runners(spec):
    """`"hf,jax"` -> `["hf", "keras-jax"]` in RUNNERS order; raises ValueError on unknown names."""
    chosen = set()
    for name in (s.strip() for s in spec.split(",")):
        if name in RUNNER_GROUPS:
            chosen.update(RUNNER_GROUPS[name])
        elif name in RUNNERS:
            chosen.add(name)
        else:
            raise ValueError(f"Unknown backend/runner {name!r} in --backends={spec!r}; expected some of "
                             f"{sorted(RUNNER_GROUPS) + list(RUNNERS)}.")
    return [r for r in RUNNERS if r in chosen]


def approx_params(cfg):
    """Weights of the MAE (matrices only, ~12 d^2 per block): enough to budget memory."""
    p = cfg["patch_size"] ** 2 * NUM_CHANNELS
    d, dd = cfg["embed_dim"], cfg["decoder_dim"]
    return cfg["depth"] * 12 * d * d + cfg["decoder_depth"] * 12 * dd * dd + p * d + d * dd + dd * p


# ---------------------------------------------------------------------------- FLOPs
def block_forward_flops(tokens, width, mlp_ratio=MLP_RATIO):
    """Matmul FLOPs (multiply + add = 2) of one pre-norm transformer block on `tokens` tokens:
    qkv 3d^2, out-proj d^2, MLP 2 * r d^2 weight products per token, plus attention scores
    Q K^T and the weighted sum A V, each T^2 d. LayerNorm, GELU, softmax, residuals are
    left out (elementwise, by the usual MFU convention)."""
    t, d = tokens, width
    return 2 * t * d * d * (3 + 1 + 2 * mlp_ratio) + 2 * 2 * t * t * d


def mae_forward_flops(cfg, mask_ratio):
    """Forward matmul FLOPs of MAE on ONE image, split by part.

    N = (image / patch)^2 patches, K = int(N * (1 - mask_ratio)) visible (as keras_mim and HF
    count them), P = patch^2 * 3 pixels per patch.
      patch embedding   2 N P D             (both implementations embed all N, then drop)
      encoder           depth x block(K + 1 tokens incl. cls, width D)
      decoder embed     2 (K + 1) D Dd
      decoder           decoder_depth x block(N + 1 tokens, width Dd)   (mask tokens included)
      prediction head   2 (N + 1) Dd P       (the cls row is predicted, then dropped)
    """
    n = (cfg["image_size"] // cfg["patch_size"]) ** 2
    k = int(n * (1.0 - mask_ratio))
    p = cfg["patch_size"] ** 2 * NUM_CHANNELS
    d, dd = cfg["embed_dim"], cfg["decoder_dim"]
    parts = {
        "patch_embed": 2 * n * p * d,
        "encoder": cfg["depth"] * block_forward_flops(k + 1, d),
        "decoder_embed": 2 * (k + 1) * d * dd,
        "decoder": cfg["decoder_depth"] * block_forward_flops(n + 1, dd),
        "decoder_pred": 2 * (n + 1) * dd * p,
    }
    parts["total"] = sum(parts.values())
    return parts


def mae_train_flops(cfg, mask_ratio, batch_size):
    """Model FLOPs of one training step: 3 x forward (backward = 2 x forward: gradients with
    respect to activations and to weights), times the batch. Slightly generous: the patch
    embedding needs no input gradient. The optimizer update is not counted."""
    return 3 * batch_size * mae_forward_flops(cfg, mask_ratio)["total"]


# ---------------------------------------------------------------------------- GPU peaks
# Dense (no sparsity) BF16 tensor-core peaks, TFLOP/s, from NVIDIA's data sheets: H100
# (SXM 989, PCIe 756, NVL 835), H200 (SXM 989, NVL 835), A100 (312), L40S (362), L4 (121),
# A10 (125). Matched in this order against the device name, so that "H100 PCIe" wins over
# "H100", "A100" over "A10" and "L40S" over "L4".
GPU_BF16_PEAK_TFLOPS = (
    ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H200 NVL", 835.0),
    ("H100", 989.0), ("H200", 989.0), ("GH200", 989.0),
    ("A100", 312.0), ("L40S", 362.0), ("L4", 121.0), ("A10", 125.0),
)


def gpu_bf16_peak(device_name):
    """Dense BF16 peak FLOP/s for a GPU name (e.g. "NVIDIA H100 80GB HBM3"), else None."""
    if not device_name:
        return None
    name = device_name.upper()
    for key, tflops in GPU_BF16_PEAK_TFLOPS:
        if key.upper() in name:
            return tflops * 1e12
    return None


# ---------------------------------------------------------------------------- results
def mask_speedups(runs, mask_ratio):
    """Per config and runner with both phases ok: measured step-time ratio (mask 0 / masked)
    next to the analytic FLOP ratio and the decoder's share of the masked step's FLOPs."""
    out = []
    for masked in runs:
        if masked["mask_ratio"] != mask_ratio or masked["status"] != "ok":
            continue
        zero = next((r for r in runs if r["config"] == masked["config"] and r["runner"] == masked["runner"]
                     and r["mask_ratio"] == 0.0 and r["status"] == "ok"), None)
        if zero is None:
            continue
        cfg = CONFIGS[masked["config"]]
        fm, f0 = mae_forward_flops(cfg, mask_ratio), mae_forward_flops(cfg, 0.0)
        out.append({"config": masked["config"], "runner": masked["runner"], "masked_s": masked["median_step_s"],
                    "unmasked_s": zero["median_step_s"], "speedup": zero["median_step_s"] / masked["median_step_s"],
                    "flop_ratio": f0["total"] / fm["total"],
                    "decoder_share_masked": (fm["decoder_embed"] + fm["decoder"] + fm["decoder_pred"]) / fm["total"],
                    "encoder_share_unmasked": f0["encoder"] / f0["total"]})
    return out


def add_ratios(runs):
    """`time_vs_hf` (this runner's median step / HF eager's, same config and mask ratio) on each
    run, and `time_vs_hf_compile` (the same against HF under torch.compile) where that ran."""
    for key, peer in (("time_vs_hf", "hf"), ("time_vs_hf_compile", "hf-compile")):
        for r in runs:
            ref = next((h for h in runs if h["runner"] == peer and h["config"] == r["config"]
                        and h["mask_ratio"] == r["mask_ratio"] and h["status"] == "ok"), None)
            if r["status"] == "ok" and ref is not None:
                r[key] = r["median_step_s"] / ref["median_step_s"]


# ---------------------------------------------------------------------------- tables
def _fmt(value, spec, missing="–"):
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return missing
    return format(value, spec)


def _pct(value):
    return _fmt(None if value is None else 100 * value, ".1f") + ("" if value is None else " %")


def render_tables(result):
    """Markdown tables (a str) of one train_speed result dict."""
    m = result["machine"]
    bf16 = result["args"]["precision"] == "mixed_bfloat16"
    matmul_key = "fraction_of_bf16_matmul" if bf16 else "fraction_of_matmul"
    gpu = any(r.get("fraction_of_bf16_peak") for r in result["runs"])  # a column only where it means something
    vs_compiled = any(r.get("time_vs_hf_compile") for r in result["runs"])
    lines = [
        f"Machine: {m.get('cpu_model', '?')}, {m.get('cpu_cores', '?')} cores"
        + (f", {m['gpu']}" if m.get("gpu") else "") + f"; precision {result['args']['precision']}; "
        + ", ".join(f"{k} {v}" for k, v in sorted(m.get("versions", {}).items()) if v) + ".",
        "",
        f"| config | runner | batch | s / step | images / s | vs HF |{' vs HF compiled |' if vs_compiled else ''} "
        f"TFLOP/s | % of {'bf16' if bf16 else 'fp32'} matmul |{' % of bf16 peak |' if gpu else ''} step memory (MB) |",
        "|---|---|---|---|---|---|---|---|" + ("---|" if gpu else "") + ("---|" if vs_compiled else "") + "---|",
    ]
    mem_key = "gpu_peak_mb" if any((r.get("memory") or {}).get("gpu_peak_mb") for r in result["runs"]) \
        else "step_peak_over_model_mb"
    for r in result["runs"]:
        if r["mask_ratio"] != result["args"]["mask_ratio"]:
            continue
        if r["status"] != "ok":
            why = (r.get("error") or r.get("note") or "").splitlines()
            lines.append(f"| {r['config']} | {r['runner']} | {r['batch_size']} | {r['status']}"
                         f"{': ' + why[0][:80] if why else ''} | | | | |{' |' if gpu else ''}"
                         f"{' |' if vs_compiled else ''} |")
            continue
        mem = (r.get("memory") or {}).get(mem_key)
        lines.append(
            f"| {r['config']} | {r['runner']} | {r['batch_size']} | {_fmt(r['median_step_s'], '.3f')} | "
            f"{_fmt(r['images_per_s'], '.1f')} | {_fmt(r.get('time_vs_hf'), '.2f')}"
            f"{'x' if r.get('time_vs_hf') else ''} | "
            + (f"{_fmt(r.get('time_vs_hf_compile'), '.2f')}{'x' if r.get('time_vs_hf_compile') else ''} | "
               if vs_compiled else "")
            + f"{_fmt(r['achieved_tflops'], '.3g')} | {_pct(r.get(matmul_key))} | "
            + (f"{_pct(r.get('fraction_of_bf16_peak'))} | " if gpu else "") + f"{_fmt(mem, '.0f')} |"
        )
    lines += ["", "s / step: median over all timed steps of all rounds; vs HF: this runner's time / HF's "
              "(lower is faster); TFLOP/s: analytic model FLOPs (3 x forward matmuls) / time; % of matmul: of "
              f"the best large {'bfloat16' if bf16 else 'float32'} matmul measured in the same process; "
              "step memory: "
              + ("the backend's peak GPU allocation." if mem_key == "gpu_peak_mb" else
                 "peak RSS during the timed steps minus RSS of the built model (optimizer state, gradients, "
                 "activations, allocator caches).")]
    if result.get("mask_speedup"):
        lines += ["", f"| config | runner | s / step at mask {result['args']['mask_ratio']} | s / step at mask 0 | "
                  "measured speedup | FLOP ratio | decoder share of FLOPs (masked) |", "|---|---|---|---|---|---|---|"]
        for s in result["mask_speedup"]:
            lines.append(f"| {s['config']} | {s['runner']} | {_fmt(s['masked_s'], '.3f')} | "
                         f"{_fmt(s['unmasked_s'], '.3f')} | {_fmt(s['speedup'], '.2f')}x | "
                         f"{_fmt(s['flop_ratio'], '.2f')}x | {_pct(s['decoder_share_masked'])} |")
    pipe = result.get("pipeline")
    if pipe and pipe.get("status") == "ok":
        best = max((r["images_per_s"] for r in result["runs"] if r["status"] == "ok"
                    and r["mask_ratio"] == result["args"]["mask_ratio"] and r["images_per_s"]), default=None)
        lines += ["", "| input pipeline (tf.data, all cores) | image size | batch | images / s | "
                  "x fastest training runner |", "|---|---|---|---|---|"]
        for v in pipe["variants"]:
            lines.append(f"| {v['name']} | {pipe['image_size']} | {pipe['batch_size']} | "
                         f"{_fmt(v['images_per_s'], '.0f')} | "
                         f"{_fmt(v['images_per_s'] / best if best else None, '.1f')} |")
    notes = [f"- {r['config']} / {r['runner']} (mask {r['mask_ratio']}): {r['note']}"
             for r in result["runs"] if r.get("note")]
    if notes:
        lines += ["", "Notes:"] + notes
    return "\n".join(lines) + "\n"
