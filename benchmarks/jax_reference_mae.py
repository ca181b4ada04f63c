"""A hand-written MAE training step in plain JAX (jax.numpy only, no Flax, no Keras), the
`jax-ref` runner of benchmarks/train_speed.py.

Why it exists: keras_mim's JAX step is slower than HuggingFace's PyTorch eager step at small
sizes on a CPU (docs/speed.md). This step computes the same model (the official MAE
architecture as keras_mim builds it: [CLS] token, fixed 2-D sin-cos positions, pre-norm blocks
with qkv bias, exact GELU, LayerNorm eps 1e-6, a decoder with a mask token, norm-pix loss on the
hidden patches) with the same optimizer (AdamW, beta_2 0.95, weight decay 0.05 on every
weight, as the Keras runner), so that the two compiled programs differ only by what Keras and
keras_mim add. Timing both in one run separates Keras' overhead from XLA:CPU's code for the
model itself; `hlo_summary` counts the ops of both programs.

It is a benchmark, not library code: nothing in keras_mim imports it.

Example:
>>> import numpy as np
>>> cfg = dict(image_size=16, patch_size=4, embed_dim=32, depth=1, num_heads=2, decoder_dim=16,
...            decoder_depth=1, decoder_num_heads=2)
>>> trainer = ReferenceMAE(cfg, mask_ratio=0.75, num_channels=3, seed=0)
>>> loss = trainer.step(np.random.default_rng(0).random((4, 16, 16, 3), dtype=np.float32))
>>> bool(np.isfinite(loss))
True
"""

import collections
import math
import re

import jax
import jax.numpy as jnp
import numpy as np

LN_EPS = 1e-6
MLP_RATIO = 4


def sincos_2d(embed_dim, grid):
    """MAE's fixed 2-D sin-cos table (grid*grid, embed_dim), with a zero row for [CLS] first."""
    def one_axis(dim, pos):
        omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    h, w = np.meshgrid(np.arange(grid, dtype=np.float64), np.arange(grid, dtype=np.float64), indexing="ij")
    table = np.concatenate([one_axis(embed_dim // 2, w), one_axis(embed_dim // 2, h)], axis=1)
    return jnp.asarray(np.concatenate([np.zeros((1, embed_dim)), table]), jnp.float32)


def _dense(key, fan_in, fan_out):
    limit = math.sqrt(6.0 / (fan_in + fan_out))  # Xavier uniform, as MAE
    return {"w": jax.random.uniform(key, (fan_in, fan_out), jnp.float32, -limit, limit),
            "b": jnp.zeros((fan_out,), jnp.float32)}


def _norm(dim):
    return {"g": jnp.ones((dim,), jnp.float32), "b": jnp.zeros((dim,), jnp.float32)}


def _block(key, dim):
    k = jax.random.split(key, 4)
    return {"ln1": _norm(dim), "qkv": _dense(k[0], dim, 3 * dim), "proj": _dense(k[1], dim, dim),
            "ln2": _norm(dim), "fc1": _dense(k[2], dim, MLP_RATIO * dim), "fc2": _dense(k[3], MLP_RATIO * dim, dim)}


def init_params(cfg, num_channels, key):
    patch_dim = cfg["patch_size"] ** 2 * num_channels
    keys = iter(jax.random.split(key, 6 + cfg["depth"] + cfg["decoder_depth"]))
    return {
        "patch_embed": _dense(next(keys), patch_dim, cfg["embed_dim"]),
        "cls": 0.02 * jax.random.normal(next(keys), (1, 1, cfg["embed_dim"]), jnp.float32),
        "blocks": [_block(next(keys), cfg["embed_dim"]) for _ in range(cfg["depth"])],
        "norm": _norm(cfg["embed_dim"]),
        "decoder_embed": _dense(next(keys), cfg["embed_dim"], cfg["decoder_dim"]),
        "mask_token": 0.02 * jax.random.normal(next(keys), (1, 1, cfg["decoder_dim"]), jnp.float32),
        "decoder_blocks": [_block(next(keys), cfg["decoder_dim"]) for _ in range(cfg["decoder_depth"])],
        "decoder_norm": _norm(cfg["decoder_dim"]),
        "pred": _dense(next(keys), cfg["decoder_dim"], patch_dim),
    }


def layer_norm(x, p):
    mean = jnp.mean(x, -1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), -1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + LN_EPS) * p["g"] + p["b"]


def block(x, p, num_heads):
    b, n, d = x.shape
    qkv = (layer_norm(x, p["ln1"]) @ p["qkv"]["w"] + p["qkv"]["b"]).reshape(b, n, 3, num_heads, d // num_heads)
    q, k, v = (qkv[:, :, i].transpose(0, 2, 1, 3) for i in range(3))         # (B, H, N, D/H)
    attn = jax.nn.softmax(q @ k.transpose(0, 1, 3, 2) / math.sqrt(d // num_heads), axis=-1)
    x = x + ((attn @ v).transpose(0, 2, 1, 3).reshape(b, n, d) @ p["proj"]["w"] + p["proj"]["b"])
    h = jax.nn.gelu(layer_norm(x, p["ln2"]) @ p["fc1"]["w"] + p["fc1"]["b"], approximate=False)
    return x + (h @ p["fc2"]["w"] + p["fc2"]["b"])


def patchify(images, patch):
    b, hgt, wid, c = images.shape
    x = images.reshape(b, hgt // patch, patch, wid // patch, patch, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (hgt // patch) * (wid // patch), patch * patch * c)  # (B, L, p*p*C)


def random_masking(key, batch, length, mask_ratio):
    len_keep = int(length * (1 - mask_ratio))
    ids_shuffle = jnp.argsort(jax.random.uniform(key, (batch, length)), axis=1)
    ids_restore = jnp.argsort(ids_shuffle, axis=1)
    mask = jnp.ones((batch, length), jnp.float32).at[:, :len_keep].set(0.0)
    return ids_shuffle[:, :len_keep], ids_restore, jnp.take_along_axis(mask, ids_restore, axis=1)


def forward_loss(params, images, key, cfg, mask_ratio, pos, decoder_pos):
    patches = patchify(images, cfg["patch_size"])                              # (B, L, p*p*C)
    b, length, _ = patches.shape
    ids_keep, ids_restore, mask = random_masking(key, b, length, mask_ratio)
    x = patches @ params["patch_embed"]["w"] + params["patch_embed"]["b"] + pos[1:]
    x = jnp.take_along_axis(x, ids_keep[..., None], axis=1)                    # (B, keep, D)
    x = jnp.concatenate([jnp.broadcast_to(params["cls"] + pos[:1], (b, 1, x.shape[-1])), x], axis=1)
    for p in params["blocks"]:
        x = block(x, p, cfg["num_heads"])
    x = layer_norm(x, params["norm"]) @ params["decoder_embed"]["w"] + params["decoder_embed"]["b"]
    mask_tokens = jnp.broadcast_to(params["mask_token"], (b, length + 1 - x.shape[1], x.shape[-1]))
    y = jnp.take_along_axis(jnp.concatenate([x[:, 1:], mask_tokens], axis=1), ids_restore[..., None], axis=1)
    y = jnp.concatenate([x[:, :1], y], axis=1) + decoder_pos                   # (B, 1 + L, Dd)
    for p in params["decoder_blocks"]:
        y = block(y, p, cfg["decoder_num_heads"])
    pred = (layer_norm(y, params["decoder_norm"]) @ params["pred"]["w"] + params["pred"]["b"])[:, 1:]
    mean = jnp.mean(patches, -1, keepdims=True)
    var = jnp.var(patches, -1, keepdims=True, ddof=1)                          # torch .var(): unbiased
    target = (patches - mean) / jnp.sqrt(var + 1e-6)
    per_patch = jnp.mean(jnp.square(pred - target), -1)
    return jnp.sum(per_patch * mask) / jnp.sum(mask)


def adamw(params, grads, m, v, t, lr=1.5e-4, b1=0.9, b2=0.95, eps=1e-7, wd=0.05):
    """Keras' AdamW (epsilon 1e-7, decay applied to every weight before the Adam update)."""
    t = t + 1
    m = jax.tree.map(lambda m_, g: b1 * m_ + (1 - b1) * g, m, grads)
    v = jax.tree.map(lambda v_, g: b2 * v_ + (1 - b2) * g * g, v, grads)
    step = lr * jnp.sqrt(1 - b2 ** t) / (1 - b1 ** t)
    params = jax.tree.map(lambda p, m_, v_: p - lr * wd * p - step * m_ / (jnp.sqrt(v_) + eps), params, m, v)
    return params, m, v, t


class ReferenceMAE:
    """Parameters, AdamW state and the jitted training step (state donated, as Keras does)."""

    def __init__(self, cfg, mask_ratio, num_channels, seed=0):
        key, self.key = jax.random.split(jax.random.PRNGKey(seed))
        grid = cfg["image_size"] // cfg["patch_size"]
        pos, decoder_pos = sincos_2d(cfg["embed_dim"], grid), sincos_2d(cfg["decoder_dim"], grid)
        params = init_params(cfg, num_channels, key)
        zeros = jax.tree.map(jnp.zeros_like, params)
        self.state = (params, zeros, jax.tree.map(jnp.zeros_like, params), jnp.zeros((), jnp.float32))
        self.params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))

        def train_step(state, images, key):
            params, m, v, t = state
            loss, grads = jax.value_and_grad(forward_loss)(params, images, key, cfg, mask_ratio, pos, decoder_pos)
            return (*adamw(params, grads, m, v, t),), loss

        self.train_step = jax.jit(train_step, donate_argnums=0)

    def step(self, images):
        self.key, key = jax.random.split(self.key)
        self.state, loss = self.train_step(self.state, jnp.asarray(images), key)
        return float(loss)  # waits for the step, as Keras' per-step logs do

    def lowered(self, images):
        return self.train_step.lower(self.state, jnp.asarray(images), self.key)


def hlo_summary(compiled_text):
    """Counts of an optimized HLO module: fusions, dots, and the ops of its entry computation."""
    entry = compiled_text[compiled_text.index("\nENTRY"):]
    ops = collections.Counter(re.findall(r"= \S+ ([a-z][\w-]*)\(", entry))
    return {"entry_ops": sum(ops.values()), "fusions": ops["fusion"], "dots_outside_fusions": ops["dot"],
            "hlo_lines": compiled_text.count("\n"), "dots_total": len(re.findall(r" dot\(", compiled_text)),
            "scatters": len(re.findall(r" scatter\(", compiled_text)),
            "sorts": len(re.findall(r" sort\(", compiled_text))}


def keras_train_step(cfg, mask_ratio, batch, seed=0):
    """keras_mim's MaskedAutoencoder for `cfg`, compiled as benchmarks/train_speed.py's Keras runner
    builds it, with its train step jitted outside `fit` (not donating: the model's variables keep
    their buffers for `fit`)."""
    import keras

    import keras_mim

    keras.utils.set_random_seed(seed)
    encoder = keras_mim.ViTEncoder(image_size=cfg["image_size"], patch_size=cfg["patch_size"],
                                   embed_dim=cfg["embed_dim"], depth=cfg["depth"], num_heads=cfg["num_heads"])
    model = keras_mim.MaskedAutoencoder(
        encoder, decoder=dict(decoder_dim=cfg["decoder_dim"], depth=cfg["decoder_depth"],
                              num_heads=cfg["decoder_num_heads"]), mask_ratio=mask_ratio, norm_pix_loss=True, seed=seed)
    model.compile(optimizer=keras.optimizers.AdamW(1.5e-4, weight_decay=0.05, beta_2=0.95), jit_compile=True)
    images = np.random.default_rng(seed).random((2 * batch, cfg["image_size"], cfg["image_size"], 3), np.float32)
    model.fit(images, batch_size=batch, epochs=1, verbose=0)  # builds the optimizer and metrics
    state = model._get_jax_state(trainable_variables=True, non_trainable_variables=True,  # Keras' own layout
                                 optimizer_variables=True, metrics_variables=True)
    return model, jax.jit(model.train_step), state


def compare(config, steps=None, rounds=None, mask_ratio=0.75):
    """Seconds per step of (a) `model.fit` (Keras' loop, callbacks, logs), (b) the same Keras
    train step called directly, (c) the hand-written step, interleaved in rounds in this one
    process, and the HLO counts of (b) and (c)."""
    import time

    import train_speed_lib

    cfg = train_speed_lib.CONFIGS[config]
    batch, steps, rounds = cfg["batch_size"], steps or cfg["steps"], rounds or cfg["rounds"]
    images = np.random.default_rng(1).random((steps * batch, cfg["image_size"], cfg["image_size"], 3), np.float32)
    batches = [jnp.asarray(b) for b in np.split(images, steps)]
    model, step, state = keras_train_step(cfg, mask_ratio, batch)
    reference = ReferenceMAE(cfg, mask_ratio, num_channels=3)
    holder = {"state": state}

    def keras_direct():
        times = []
        for b in batches:
            start = time.perf_counter()
            logs, holder["state"] = step(holder["state"], (b,))
            float(logs["loss"])
            times.append(time.perf_counter() - start)
        return times

    def keras_fit():
        model.fit(images, batch_size=batch, epochs=1, shuffle=False, verbose=0)  # warm: traced in keras_train_step
        return None

    def reference_run():
        times = []
        for b in batches:
            start = time.perf_counter()
            reference.step(b)
            times.append(time.perf_counter() - start)
        return times

    for run in (keras_direct, keras_fit, reference_run):  # warm up (compiles)
        run()
    results = {"keras_fit": [], "keras_step_direct": [], "jax_reference": []}
    for _ in range(rounds):
        start = time.perf_counter()
        keras_fit()
        results["keras_fit"].append((time.perf_counter() - start) / steps)
        results["keras_step_direct"].append(float(np.median(keras_direct())))
        results["jax_reference"].append(float(np.median(reference_run())))
    keras_hlo = step.lower(holder["state"], (batches[0],)).compile().as_text()
    reference_hlo = reference.lowered(batches[0]).compile().as_text()
    best = {name: min(values) for name, values in results.items()}
    return {"config": config, "batch_size": batch, "steps": steps, "rounds": rounds, "mask_ratio": mask_ratio,
            "seconds_per_step": results, "best_seconds_per_step": best,
            "ratios_to_reference": {name: round(value / best["jax_reference"], 3) for name, value in best.items()},
            "hlo": {"keras_step": hlo_summary(keras_hlo), "jax_reference": hlo_summary(reference_hlo)},
            "params": {"keras": int(model.count_params()), "jax_reference": reference.params}}


if __name__ == "__main__":
    import argparse
    import json
    import os
    import platform

    os.environ.setdefault("KERAS_BACKEND", "jax")
    parser = argparse.ArgumentParser(description="keras_mim's JAX MAE step vs a hand-written one, on this CPU")
    parser.add_argument("--configs", nargs="+", default=["nano"])
    parser.add_argument("--steps", type=int, default=None, help="default: the config's (train_speed_lib)")
    parser.add_argument("--rounds", type=int, default=None, help="default: the config's")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    record = {"what": __doc__.split("\n\n")[0], "command": "KERAS_BACKEND=jax python benchmarks/jax_reference_mae.py "
              + " ".join(["--configs", *args.configs] + [f"--{k} {v}" for k, v in (("steps", args.steps), ("rounds", args.rounds)) if v]),
              "jax": jax.__version__, "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores", "runs": []}
    for config in args.configs:
        record["runs"].append(compare(config, args.steps, args.rounds))
        print(json.dumps(record["runs"][-1]["best_seconds_per_step"]), record["runs"][-1]["ratios_to_reference"],
              flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1)
