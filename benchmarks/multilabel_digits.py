"""Multi-label fine-tuning on real data, pretrained against random init: 32 px mosaics of four
scikit-learn digits, labelled with the digit classes they show (10 classes, several per image).

MAE pretrains on mosaics cut from the digits' train split (no labels); `keras-mim finetune
--multi-label` then fine-tunes and evaluates on a folder of mosaics cut from the test split,
with its labels CSV (the ChestX-ray14 layout), once from the pretrained encoder and once from
the same architecture at random init. Writes a JSON with the command and both results.
Usage: KERAS_BACKEND=torch python benchmarks/multilabel_digits.py --json benchmarks/results/multilabel_digits_torch.json
"""

import argparse
import json
import os
import sys
import tempfile

import keras
import numpy as np
from PIL import Image

from keras_mim import MaskedAutoencoder
from keras_mim.cli import main as keras_mim_main
from keras_mim.data import load_labelled_digits


def mosaics(split, count, seed):
    digits, labels = load_labelled_digits(split, image_size=(16, 16), seed=0)
    rng = np.random.default_rng(seed)
    picks = np.stack([rng.choice(len(digits), 4, replace=False) for _ in range(count)])
    tiles = digits[picks, :, :, 0]  # (count, 4, 16, 16)
    images = np.concatenate([np.concatenate([tiles[:, 0], tiles[:, 1]], 2),
                             np.concatenate([tiles[:, 2], tiles[:, 3]], 2)], 1)[..., None]
    return images.astype("float32"), labels[picks]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pretrain-images", type=int, default=2000)
    p.add_argument("--finetune-images", type=int, default=800)
    p.add_argument("--pretrain-epochs", type=int, default=30)
    p.add_argument("--finetune-epochs", type=int, default=15)
    p.add_argument("--preset", default="mae_vit_micro_patch4_32")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    work = tempfile.mkdtemp(prefix="multilabel_digits_")
    keras.utils.set_random_seed(0)
    x_pre, _ = mosaics("train", args.pretrain_images, seed=1)
    model = MaskedAutoencoder.from_preset(args.preset, num_channels=1, seed=0)
    model.compile(optimizer=keras.optimizers.AdamW(1.5e-3, weight_decay=0.05, beta_2=0.95))
    history = model.fit(x_pre, batch_size=64, epochs=args.pretrain_epochs, verbose=2).history
    model.save(os.path.join(work, "mae.keras"))
    x_ft, y_ft = mosaics("test", args.finetune_images, seed=2)
    folder = os.path.join(work, "mosaics")
    os.makedirs(folder)
    rows = ["Image Index,Finding Labels"]
    for i, (image, digits) in enumerate(zip(x_ft, y_ft)):
        Image.fromarray((image[..., 0] * 255).astype("uint8")).save(os.path.join(folder, f"m{i:04d}.png"))
        rows.append(f"m{i:04d}.png,{'|'.join(f'digit{d}' for d in sorted(set(digits)))}")
    with open(os.path.join(folder, "labels.csv"), "w") as f:
        f.write("\n".join(rows) + "\n")
    result = {"command": " ".join(["python"] + sys.argv), "backend": keras.backend.backend(),
              "preset": args.preset, "pretrain_images": args.pretrain_images, "pretrain_epochs": args.pretrain_epochs,
              "pretrain_loss_first_last": [history["loss"][0], history["loss"][-1]],
              "finetune_images": args.finetune_images, "finetune_epochs": args.finetune_epochs}
    for name, extra in (("pretrained", []), ("random_init", ["--random-init"])):
        record = keras_mim_main(["finetune", os.path.join(work, "mae.keras"), "--multi-label", "--data", folder,
                                 "--labels", os.path.join(folder, "labels.csv"), "--epochs", str(args.finetune_epochs),
                                 "--batch-size", "32", "--horizontal-flip", "false",
                                 "--output", os.path.join(work, name), *extra])
        with open(os.path.join(work, name, "results.json")) as f:
            record = json.load(f)
        result[name] = {"mean_auc": round(record["mean_auc"], 4), "mean_ap": round(record["mean_ap"], 4),
                        "final_train_loss": round(record["train_loss"][-1], 4)}
        print(name, result[name], flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
