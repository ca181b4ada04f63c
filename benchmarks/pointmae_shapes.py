"""Point-MAE on generated shapes: pretrain on point clouds of six surface types (sphere, cube,
cylinder, cone, torus, pyramid; random scales, rotations and noise), then k-NN and a ridge
linear probe on the frozen encoder's pooled features (max and mean of the group tokens),
against the same encoder at random init. Test clouds come from another seed.

Writes a JSON with the command, the losses and the accuracies. Nothing is downloaded.
Usage: KERAS_BACKEND=torch python benchmarks/pointmae_shapes.py --epochs 40 --json benchmarks/results/pointmae_shapes_torch.json
"""

import argparse
import json
import sys
import time

import keras
import numpy as np

from keras_mim import PointMAE
from keras_mim.data.sample_points import shape_clouds
from frozen_scores import frozen_accuracies


def pooled_features(encoder, clouds, batch_size=64):
    """Max and mean of the group tokens, joined: `(n, 2D)` (the classifier head's input)."""
    out = []
    for i in range(0, len(clouds), batch_size):
        tokens = keras.ops.convert_to_numpy(encoder(clouds[i : i + batch_size], training=False))
        out.append(np.concatenate([tokens.max(1), tokens.mean(1)], axis=-1))
    return np.concatenate(out).astype("float32")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--num-train", type=int, default=1200)
    p.add_argument("--num-test", type=int, default=600)
    p.add_argument("--preset", default="pointmae_tiny")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    keras.utils.set_random_seed(0)
    model = PointMAE.from_preset(args.preset, seed=0)
    n = model.encoder.num_points
    x_train, y_train, names = shape_clouds(args.num_train, num_points=n, seed=1)
    x_test, y_test, _ = shape_clouds(args.num_test, num_points=n, seed=2)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3, weight_decay=0.05))
    start = time.time()
    history = model.fit(x_train, batch_size=64, epochs=args.epochs, verbose=2)
    result = {"command": " ".join(["python"] + sys.argv), "backend": keras.backend.backend(), "preset": args.preset,
              "classes": list(names), "num_train": args.num_train, "num_test": args.num_test, "epochs": args.epochs,
              "loss_first_last": [history.history["loss"][0], history.history["loss"][-1]],
              "train_time_s": round(time.time() - start, 1)}
    for name, m in (("pretrained", model), ("random_init", PointMAE.from_preset(args.preset, seed=0))):
        train_f, test_f = pooled_features(m.encoder, x_train), pooled_features(m.encoder, x_test)
        result[name] = frozen_accuracies(train_f, y_train, test_f, y_test, num_classes=len(names))
        print(name, result[name], flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
