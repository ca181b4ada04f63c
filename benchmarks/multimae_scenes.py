"""MultiMAE on generated scenes (RGB + depth + 4 classes, `keras_mim.data.paired_scenes`):
pretrain, then probe what the RGB encoder alone (`encoder.trunk`, a ViTEncoder) knows about
the other modalities, against MAE pretrained on the RGB images only (same ViT, same
epochs and optimizer) and against the same ViT at random init.

Probes on the frozen patch tokens of held-out scenes (another seed than pretraining):
- semantic classes per patch (its pixels' majority class; scikit-learn logistic
  regression): mean IoU over the 4 classes, and the accuracy on the patches of shapes
  (square, disc or triangle: the floor, most patches, is told by colour alone);
- depth per patch (its mean depth; ridge regression): R^2 on the patches of shapes (each
  shape stands at a random depth; the floor's depth follows the row, which the position
  embedding alone gives).

Then the comparison with training from scratch: each RGB encoder, and the ViT at random init,
is fine-tuned whole (`patch_finetune.py`: LayerNorm + linear head per patch, AdamW, the same
steps for all) on the class maps of `--finetune-scenes` labelled scenes, RGB only, and scored
on the 512 held-out scenes (mean IoU over the 4 classes, accuracy on shape patches).

`--cache DIR` keeps the pretrained RGB encoders (with their losses) so a rerun only evaluates.

Writes a JSON with the command, the losses and the scores. Nothing is downloaded.
Usage (from benchmarks/): KERAS_BACKEND=jax python multimae_scenes.py --epochs 30 --finetune-scenes 512 --finetune-seeds 0,1,2 --json results/multimae_scenes_jax.json --figure ../docs/figures/multimae_scenes.png
"""

import argparse
import json
import os
import sys
import tempfile

import keras
import numpy as np

from keras_mim import MaskedAutoencoder, MultiMAE, ViTEncoder
from keras_mim.data.paired_scenes import CLASS_NAMES, paired_scenes
from patch_finetune import finetune_rows, pretrained_encoder


def patch_tokens(encoder, images, batch_size=128):
    """The frozen patch tokens `(n * N, D)` of a ViTEncoder (cls token dropped)."""
    out = [keras.ops.convert_to_numpy(encoder(images[i : i + batch_size], training=False))[:, 1:]
           for i in range(0, len(images), batch_size)]
    out = np.concatenate(out)
    return out.reshape(-1, out.shape[-1]).astype("float32")


def patch_labels(scenes, patch):
    """Per patch: the majority class of its pixels and its mean depth, flattened row-major."""
    n, h, w = scenes["semseg"].shape
    cells = lambda x: x.reshape(n, h // patch, patch, w // patch, patch).transpose(0, 1, 3, 2, 4).reshape(  # noqa: E731
        n * (h // patch) * (w // patch), patch * patch)
    classes = cells(scenes["semseg"])
    majority = np.array([np.bincount(c, minlength=len(CLASS_NAMES)).argmax() for c in classes])
    return majority, cells(scenes["depth"][..., 0]).mean(1)


def probe_scores(encoder, probe_train, probe_test, patch):
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.metrics import jaccard_score, r2_score
    from sklearn.preprocessing import StandardScaler

    x_train, x_test = patch_tokens(encoder, probe_train["rgb"]), patch_tokens(encoder, probe_test["rgb"])
    scaler = StandardScaler().fit(x_train)
    x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)
    (c_train, d_train), (c_test, d_test) = patch_labels(probe_train, patch), patch_labels(probe_test, patch)
    classifier = LogisticRegression(max_iter=2000).fit(x_train, c_train)
    predicted = classifier.predict(x_test)
    depth = Ridge(alpha=1.0).fit(x_train, d_train).predict(x_test)
    shapes = c_test > 0
    return {"class_mean_iou": round(float(jaccard_score(c_test, predicted, average="macro")), 4),
            "shape_class_accuracy": round(float(np.mean(predicted[shapes] == c_test[shapes])), 4),
            "shape_depth_r2": round(float(r2_score(d_test[shapes], depth[shapes])), 4)}


def optimizer(steps, peak=1e-3):
    schedule = keras.optimizers.schedules.CosineDecay(0.0, steps - steps // 10, warmup_target=peak,
                                                      warmup_steps=steps // 10)
    return keras.optimizers.AdamW(schedule, weight_decay=0.05, beta_2=0.95)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--num-train", type=int, default=2048)
    p.add_argument("--num-probe", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--preset", default="multimae_vit_tiny")
    p.add_argument("--finetune-scenes", default="64,512", help="labelled scenes per fine-tuning run, comma-separated")
    p.add_argument("--finetune-steps", type=int, default=300)
    p.add_argument("--finetune-seeds", default="0", help="one fine-tuning run per seed, comma-separated")
    p.add_argument("--cache", default=None, help="folder keeping the pretrained encoders between runs")
    p.add_argument("--json", default=None)
    p.add_argument("--figure", default=None, help="PNG of the pretrained MultiMAE on held-out scenes")
    args = p.parse_args(argv)
    cache = args.cache or tempfile.mkdtemp()
    os.makedirs(cache, exist_ok=True)
    key = f"{args.preset}_{args.epochs}ep_{args.num_train}"
    keras.utils.set_random_seed(0)
    multimae = MultiMAE.from_preset(args.preset, seed=0)
    size, patch = multimae.encoder.image_size[0], multimae.encoder.patch_size[0]
    train = paired_scenes(args.num_train, image_size=size, seed=1)
    probe_train = paired_scenes(args.num_probe, image_size=size, seed=2)
    probe_test = paired_scenes(args.num_probe, image_size=size, seed=3)
    steps = args.epochs * (args.num_train // args.batch_size)
    trunk = multimae.encoder.trunk.get_config()
    mae = MaskedAutoencoder(ViTEncoder.from_config({**trunk, "name": "encoder"}), seed=0,
                            decoder={"decoder_dim": 128, "depth": 2, "num_heads": 4})
    result = {"command": " ".join(["python"] + sys.argv), "backend": keras.backend.backend(), "preset": args.preset,
              "num_train": args.num_train, "num_probe": args.num_probe, "epochs": args.epochs,
              "batch_size": args.batch_size, "classes": list(CLASS_NAMES)}
    for name, model, x in (("multimae", multimae, train), ("mae_rgb_only", mae, train["rgb"])):
        result[name], trained = pretrained_encoder(
            cache, f"{name}_{key}", model, x, lambda m: m.encoder.trunk if m is multimae else m.encoder,
            fit=dict(optimizer=optimizer(steps), batch_size=args.batch_size, epochs=args.epochs))
        if trained and name == "multimae" and args.figure:
            from keras_mim.viz_multimodal import plot_multimodal_reconstructions

            plot_multimodal_reconstructions(multimae, probe_test, path=args.figure, max_samples=3, title=(
                f"MultiMAE {args.preset}, {args.epochs} epochs on {args.num_train} generated scenes: held-out scenes"))
    encoders = {name: (lambda name=name: keras.saving.load_model(os.path.join(cache, f"{name}_{key}_encoder.keras")))
                for name in ("multimae", "mae_rgb_only")}
    encoders["random_init"] = lambda: ViTEncoder.from_config({**trunk, "name": "random"})
    for name, make in encoders.items():
        result.setdefault(name, {}).update(probe_scores(make(), probe_train, probe_test, patch))
        result[name].update(finetune_rows(make, (probe_train["rgb"], probe_train["semseg"]),
                                          (probe_test["rgb"], probe_test["semseg"]), patch, len(CLASS_NAMES),
                                          args.finetune_scenes, "scenes", args.finetune_steps, args.finetune_seeds))
        print(name, result[name], flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
