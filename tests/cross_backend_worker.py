"""Saves representative models as `.keras` files with reference outputs, under the
backend of this process; tests/test_cross_backend.py loads them under another backend.

    KERAS_BACKEND=torch python tests/cross_backend_worker.py OUTPUT_DIR

For each model in `MODELS` it writes `OUTPUT_DIR/<name>.keras` and
`OUTPUT_DIR/<name>.npz`: the fixed inputs (`in_*`, drawn from a numpy generator, so the
same on every backend) and the outputs this backend computes on them (`out_*`), on
inference paths with fixed masking noise where the model masks, and its optimizer's
variables (`opt_<index>`). Each model first takes one AdamW update, so the saved weights
are not the initial ones and the file carries optimizer state. Prints `RESULT <json>` (backend, model names, seconds) at the end. The test suite calls
`main` in its own process for the backend it runs on (no child to start).
"""

import json
import os
import pathlib
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_mim  # noqa: E402

BATCH = 2


def _numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def _noise(rng, model):
    """Per-token masking scores `(BATCH, N)` for `model`'s token grid."""
    return rng.random((BATCH, model.encoder.num_patches)).astype("float32")


def pretraining_outputs(model, inputs):
    """`call` with fixed noise (plus the encoder's latent for drop-masked models)."""
    out = {k: _numpy(v) for k, v in model(inputs["images"], noise=inputs["noise"], training=False).items()}
    if hasattr(model, "forward_decoder") and "ids_restore" in out:  # MAE family
        latent, _ = model.forward_encoder(inputs["images"], noise=inputs["noise"], training=False)
        out["latent"] = _numpy(latent)
    return out


def mae(rng):
    model = keras_mim.MaskedAutoencoder.from_preset("mae_vit_test", seed=0)
    images = rng.random((BATCH, 16, 16, 3)).astype("float32")
    return model, {"images": images, "noise": _noise(rng, model)}


def simmim(rng):
    model = keras_mim.SimMIM.from_preset("simmim_vit_test", seed=0)
    images = rng.random((BATCH, 16, 16, 3)).astype("float32")
    return model, {"images": images, "noise": _noise(rng, model)}


def videomae(rng):
    model = keras_mim.VideoMAE.from_preset("videomae_vit_test", seed=0)
    clips = rng.random((BATCH, 4, 16, 16, 3)).astype("float32")
    return model, {"images": clips, "noise": _noise(rng, model)}


def classifier(rng):
    encoder = keras_mim.MaskedAutoencoder.from_preset("mae_vit_test", seed=0).encoder
    model = keras_mim.ImageClassifier(encoder, num_classes=5, drop_path_rate=0.1, head_init_std=0.1, seed=0)
    images = rng.random((BATCH, 16, 16, 3)).astype("float32")
    return model, {"images": images, "labels": np.arange(BATCH) % 5}


def classifier_outputs(model, inputs):
    """Logits, pooled features and the encoder's tokens, in inference mode."""
    x = inputs["images"]
    return {"logits": _numpy(model(x, training=False)), "features": _numpy(model.forward_features(x, training=False)),
            "encoder": _numpy(model.encoder(x, training=False))}


#: name -> (function(rng) -> (model, inputs dict), function(model, inputs) -> outputs dict).
MODELS = {
    "mae": (mae, pretraining_outputs),
    "simmim": (simmim, pretraining_outputs),
    "videomae": (videomae, pretraining_outputs),
    "classifier": (classifier, classifier_outputs),
}


def train_one_step(model, inputs, rng):
    """One AdamW update with fixed random gradients: every weight moves off its initial
    value and the optimizer's moments are filled, so the file carries optimizer state
    (no autodiff: a traced `fit` step costs ~15 s on JAX, eager or not)."""
    loss = None if "labels" not in inputs else keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=keras.optimizers.AdamW(1e-2), loss=loss)
    grads = [keras.ops.convert_to_tensor(rng.standard_normal(tuple(v.shape)).astype("float32"))
             for v in model.trainable_variables]
    model.optimizer.apply(grads, model.trainable_variables)


def optimizer_state(model):
    """The optimizer's variables in order (iteration, learning rate, moments), keyed by
    position: their paths depend on the scope the model was built in, not on the file."""
    return {f"{i:04d}": _numpy(v) for i, v in enumerate(model.optimizer.variables)}


def main(output):
    """Write every model's files into `output`; returns (and prints) the RESULT record."""
    start = time.perf_counter()
    output = pathlib.Path(output)
    output.mkdir(parents=True, exist_ok=True)
    for index, (name, (make, outputs)) in enumerate(MODELS.items()):
        keras.utils.set_random_seed(index)
        model, inputs = make(np.random.default_rng(index))
        train_one_step(model, inputs, np.random.default_rng(100 + index))
        arrays = {f"in_{k}": v for k, v in inputs.items()}
        arrays.update({f"out_{k}": v for k, v in outputs(model, inputs).items()})
        arrays.update({f"opt_{k}": v for k, v in optimizer_state(model).items()})
        model.save(output / f"{name}.keras")
        np.savez(output / f"{name}.npz", **arrays)
    result = {"backend": keras.backend.backend(), "models": list(MODELS),
              "seconds": round(time.perf_counter() - start, 2)}
    print("RESULT " + json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main(sys.argv[1])
