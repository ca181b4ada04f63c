"""Anomaly scores by reconstruction error on real data: MAE pretrained on the digits of some
classes (normal), scored on test digits of every class (the other classes anomalous), against
the same model at random init and against the constructed case (inverted digits).

Writes a JSON with the command, the AUROCs and the losses. Nothing is downloaded.
Usage: KERAS_BACKEND=torch python benchmarks/anomaly_digits.py --epochs 40 --json benchmarks/results/anomaly_digits_torch.json
"""

import argparse
import json
import sys
import time

import keras
import numpy as np

from keras_mim import MaskedAutoencoder
from keras_mim.data import load_labelled_digits
from keras_mim.evaluation.anomaly import anomaly_auroc, reconstruction_scores


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--normal", default="0,1,2,3,4", help="the normal classes (pretraining data)")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--preset", default="mae_vit_nano_patch2_16")
    p.add_argument("--num-masks", type=int, default=8)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    normal = [int(c) for c in args.normal.split(",")]
    keras.utils.set_random_seed(0)
    x_train, y_train = load_labelled_digits("train", image_size=(16, 16), seed=0)
    x_test, y_test = load_labelled_digits("test", image_size=(16, 16), seed=0)
    x_train = x_train[np.isin(y_train, normal)]
    labels = (~np.isin(y_test, normal)).astype(int)  # 1 = a class never seen in pretraining

    def build():
        return MaskedAutoencoder.from_preset(args.preset, num_channels=1, norm_pix_loss=False, seed=0)

    model = build()
    model.compile(optimizer=keras.optimizers.AdamW(2e-3, weight_decay=0.05, beta_2=0.95))
    start = time.time()
    history = model.fit(x_train, batch_size=32, epochs=args.epochs, verbose=2)
    result = {"command": " ".join(["python"] + sys.argv), "backend": keras.backend.backend(),
              "preset": args.preset, "normal_classes": normal, "num_train": int(len(x_train)),
              "num_test": int(len(x_test)), "num_anomalous": int(labels.sum()), "epochs": args.epochs,
              "loss_first_last": [history.history["loss"][0], history.history["loss"][-1]],
              "train_time_s": round(time.time() - start, 1), "num_masks": args.num_masks}
    inverted = np.concatenate([x_test, 1.0 - x_test])
    inverted_labels = np.array([0] * len(x_test) + [1] * len(x_test))
    for name, m in (("pretrained", model), ("random_init", build())):
        scores, _ = reconstruction_scores(m, x_test, num_masks=args.num_masks, verbose=0)
        inv_scores, _ = reconstruction_scores(m, inverted, num_masks=args.num_masks, verbose=0)
        result[name] = {"auroc_unseen_classes": round(anomaly_auroc(scores, labels), 4),
                        "auroc_inverted": round(anomaly_auroc(inv_scores, inverted_labels), 4)}
        print(name, result[name], flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
