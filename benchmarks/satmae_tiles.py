"""SatMAE on generated multispectral tiles (`keras_mim.data.multispectral_scenes`, SatMAE's 10
of Sentinel-2's 13 bands, each normalised as SatMAE's `SentinelNormalize`): pretrain, then probe
what the frozen encoder knows about the land cover, against MAE on the same 10-band stack
(one patch embedding for all bands, the paper's baseline; same width, depth, epochs and
optimizer) and against SatMAE's encoder at random init.

Probes on the frozen tokens of held-out tiles (another seed than pretraining), one feature
per 4 x 4 patch (SatMAE: the mean of its band groups' tokens at that place), scikit-learn
logistic regression on 512 tiles, scored on 512 others:
- the patch's majority land cover (soil, vegetation, water, built-up): mean IoU over the 4
  covers; the cover shows in the patch's own spectrum;
- the kind of shape the patch belongs to (square, disc, triangle; shape patches only): each
  kind is a random cover per tile, so only the shape's outline, beyond the patch, tells it.

Then the comparison with training from scratch: each encoder, and SatMAE's at random init, is
fine-tuned whole (`patch_finetune.py`: LayerNorm + linear head per patch place, AdamW, the same
steps for all) on the shape-kind maps (floor, square, disc, triangle) of `--finetune-tiles`
labelled tiles, and scored on the 512 held-out tiles (mean IoU over the 4 classes, accuracy on
shape patches).

`--cache DIR` keeps the pretrained encoders (`DIR/<name>_<preset>_<epochs>ep_<num-train>_encoder.keras`, with their losses) so
a rerun only fine-tunes.

Writes a JSON with the command, the losses and the scores. Nothing is downloaded.
Usage (from benchmarks/): KERAS_BACKEND=jax python satmae_tiles.py --epochs 40 --cache /tmp/satcache --json results/satmae_tiles_40ep_jax.json --figure ../docs/figures/satmae_tiles.png
"""

import argparse
import json
import os
import sys
import tempfile

import keras
import numpy as np

from keras_mim import MaskedAutoencoder, SatMAE, ViTEncoder
from keras_mim.data.multispectral import (SATMAE_BANDS, SENTINEL2_BANDS, band_normalize, band_statistics,
                                          multispectral_scenes)
from keras_mim.data.paired_scenes import CLASS_NAMES
from keras_mim.data.multispectral import COVER_NAMES
from multimae_scenes import optimizer
from patch_finetune import finetune_rows, majority_labels, pretrained_encoder


def place_features(encoder, images, batch_size=128):
    """Frozen features `(n * N, D)`, one per patch place: a ViT's patch tokens, or the mean
    over band groups of a SatMAE encoder's tokens at that place (cls token dropped)."""
    groups = len(getattr(encoder, "channel_groups", None) or [()])
    out = []
    for i in range(0, len(images), batch_size):
        tokens = keras.ops.convert_to_numpy(encoder(images[i : i + batch_size], training=False))[:, 1:]
        b, gn, d = tokens.shape
        out.append(tokens.reshape(b, groups, gn // groups, d).mean(axis=1))
    out = np.concatenate(out)
    return out.reshape(-1, out.shape[-1]).astype("float32")


def probe_scores(encoder, probe_train, probe_test, patch):
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import jaccard_score
    from sklearn.preprocessing import StandardScaler

    x_train, x_test = place_features(encoder, probe_train[0]), place_features(encoder, probe_test[0])
    scaler = StandardScaler().fit(x_train)
    x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)
    scores = {}
    for target, index in (("cover", 1), ("shape_kind", 2)):
        y_train, y_test = (majority_labels(c[index], patch, len(CLASS_NAMES)).ravel() for c in (probe_train, probe_test))
        if target == "shape_kind":  # shape patches only
            x_fit, y_train, x_eval, y_test = x_train[y_train > 0], y_train[y_train > 0], x_test[y_test > 0], y_test[y_test > 0]
        else:
            x_fit, x_eval = x_train, x_test
        predicted = LogisticRegression(max_iter=2000).fit(x_fit, y_train).predict(x_eval)
        if target == "cover":
            scores["cover_mean_iou"] = round(float(jaccard_score(y_test, predicted, average="macro")), 4)
        else:
            scores["shape_kind_accuracy"] = round(float(np.mean(predicted == y_test)), 4)
    return scores


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--num-train", type=int, default=2048)
    p.add_argument("--num-probe", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--preset", default="satmae_vit_tiny")
    p.add_argument("--finetune-tiles", default="64,512", help="labelled tiles per fine-tuning run, comma-separated")
    p.add_argument("--finetune-steps", type=int, default=300)
    p.add_argument("--finetune-seeds", default="0", help="one fine-tuning run per seed, comma-separated")
    p.add_argument("--cache", default=None, help="folder keeping the pretrained encoders between runs")
    p.add_argument("--json", default=None)
    p.add_argument("--figure", default=None, help="PNG of the pretrained SatMAE on held-out tiles")
    args = p.parse_args(argv)
    cache = args.cache or tempfile.mkdtemp()
    os.makedirs(cache, exist_ok=True)
    keras.utils.set_random_seed(0)
    satmae = SatMAE.from_preset(args.preset, seed=0)
    size, patch = satmae.encoder.image_size[0], satmae.encoder.patch_size[0]
    bands = list(SATMAE_BANDS)
    train = multispectral_scenes(args.num_train, image_size=size, seed=1)[0][..., bands]
    mean, std = band_statistics(train)
    train = band_normalize(train, mean, std)
    probe_train, probe_test = (multispectral_scenes(args.num_probe, image_size=size, seed=s) for s in (2, 3))
    probe_train, probe_test = ((band_normalize(t[..., bands], mean, std), c, k) for t, c, k in (probe_train, probe_test))
    steps = args.epochs * (args.num_train // args.batch_size)
    enc = satmae.encoder
    vit = ViTEncoder(image_size=size, patch_size=patch, num_channels=len(bands), embed_dim=enc.embed_dim,
                     depth=enc.depth, num_heads=enc.get_config()["num_heads"], name="encoder")
    mae = MaskedAutoencoder(vit, seed=0, decoder={"decoder_dim": 128, "depth": 2, "num_heads": 4})
    result = {"command": " ".join(["python"] + sys.argv), "backend": keras.backend.backend(), "preset": args.preset,
              "num_train": args.num_train, "num_probe": args.num_probe, "epochs": args.epochs,
              "batch_size": args.batch_size, "covers": list(COVER_NAMES), "shape_kinds": list(CLASS_NAMES[1:]),
              "bands": [SENTINEL2_BANDS[b] for b in bands], "channel_groups": [list(g) for g in enc.channel_groups]}
    key = f"{args.preset}_{args.epochs}ep_{args.num_train}"
    for name, model in (("satmae", satmae), ("mae_stacked_bands", mae)):
        result[name], trained = pretrained_encoder(cache, f"{name}_{key}", model, train, lambda m: m.encoder, fit=dict(
            optimizer=optimizer(steps), batch_size=args.batch_size, epochs=args.epochs))
        if trained and name == "satmae" and args.figure:
            from keras_mim.viz_multimodal import plot_band_group_reconstructions

            plot_band_group_reconstructions(
                satmae, probe_test[0], path=args.figure, max_samples=2, band_names=result["bands"],
                title=f"SatMAE {args.preset}, {args.epochs} epochs on {args.num_train} generated tiles: held-out tiles")
    encoders = {name: (lambda name=name: keras.saving.load_model(os.path.join(cache, f"{name}_{key}_encoder.keras")))
                for name in ("satmae", "mae_stacked_bands")}
    encoders["random_init"] = lambda: SatMAE.from_preset(args.preset, seed=1).encoder
    for name, make in encoders.items():
        result.setdefault(name, {}).update(probe_scores(make(), probe_train, probe_test, patch))
        result[name].update(finetune_rows(make, (probe_train[0], probe_train[2]), (probe_test[0], probe_test[2]), patch,
                                          len(CLASS_NAMES), args.finetune_tiles, "tiles", args.finetune_steps,
                                          args.finetune_seeds))
        print(name, result[name], flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
