"""The trainers a benchmarks/train_speed.py runner process times: keras_mim's
MaskedAutoencoder under fit(), HuggingFace's ViTMAEForPreTraining and the hand-written JAX
step of benchmarks/jax_reference_mae.py, built from one config.

Each has `params`, `loss` (of the last step) and `run(steps)` -> per-step seconds.
"""

import time

import numpy as np


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
        if not self.model.built:  # every shape is known from the config; count_params needs the weights
            self.model.build()
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
    """HuggingFace ViTMAEForPreTraining, torch.optim.AdamW, same config: PyTorch eager, or the
    model wrapped in `torch.compile` (default mode) when the runner's `jit_compile` is set. HF
    draws its mask with `torch.rand` + `argsort` inside the model, which compiles."""

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
        self.forward = torch.compile(self.model) if req["runner"]["jit_compile"] else self.model
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
                loss = self.forward(pixel_values=self.batches[i % len(self.batches)]).loss
            loss.backward()
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
            self.loss = loss.item()  # synchronises
            times.append(time.perf_counter() - start)
        return times



class JaxReferenceRunner:
    """The plain-JAX MAE step (benchmarks/jax_reference_mae.py), one jitted call per step."""

    def __init__(self, req):
        from jax_reference_mae import ReferenceMAE

        cfg = req["config"]
        self.trainer = ReferenceMAE(cfg, req["mask_ratio"], num_channels=3, seed=req.get("seed", 0))
        self.params = self.trainer.params
        self.batch = req["batch_size"]
        self.batches = np.split(_images(self.batch, req["steps"], cfg["image_size"]), req["steps"])
        self.loss = None

    def run(self, steps):
        times = []
        for i in range(steps):
            start = time.perf_counter()
            self.loss = self.trainer.step(self.batches[i % len(self.batches)])
            times.append(time.perf_counter() - start)
        return times
