"""`keras-mim finetune` of an Audio-MAE or Point-MAE model: the recipes of the two papers'
fine-tuning, sized for small data.

- Audio-MAE: an `ImageClassifier` on the model's log-mel spectrograms (avg pooling,
  fc_norm, drop path, layer-wise lr decay 0.75), SpecAugment (one band of frames and one
  of mel bins per clip, masked with the value raw log-mel 0 takes after the model's
  normalisation, as Audio-MAE masks before normalising), mixup off unless `--mixup`
  (Audio-MAE: 0.5 on AudioSet), no flips, RandAugment or cutmix; base lr 4e-3 (the
  "light" image recipe's) unless given.
- Point-MAE: a `PointClassifier` (max + mean pooling, MLP head), clouds scaled in
  [2/3, 3/2] and shifted by up to 0.2 per axis (the official `PointcloudScaleAndTranslate`),
  no layer decay (official), base lr 4e-3 = the official 5e-4 at batch 32 (x 256 / 32).
"""

import os
import time

from keras_mim.cli.common import write_json
from keras_mim.cli.classifier_training import finetune_setup, train_classifier
from keras_mim.cli.evaluate import noun, prepare_output, run_record

SIGNAL_BASE_LR = 4e-3
#: Options of the image recipe that do not apply, and the values that mean "off".
IMAGE_ONLY = (("rand_augment_ops", 0), ("cutmix", 0.0), ("translate", 0.0))
MODEL = {"audio": "an Audio-MAE model", "points": "a Point-MAE model"}


def resolve_signal_recipe(parser, args):
    """Fill the recipe of an audio or point-cloud model (`args._kind`); refuse the image
    recipe's options."""
    if args.augmentation == "mae":
        parser.error(f"--augmentation mae is the image recipe; {MODEL[args._kind]} fine-tunes with its own "
                     "(see keras-mim finetune --help)")
    wrong = [f"--{name.replace('_', '-')}" for name, off in IMAGE_ONLY if getattr(args, name) not in (None, off)]
    if args._kind == "points" and args.mixup not in (None, 0.0):
        wrong.append("--mixup")
    if args._kind == "points" and (args.time_mask is not None or args.frequency_mask is not None):
        wrong += [f for f, v in (("--time-mask", args.time_mask), ("--frequency-mask", args.frequency_mask)) if v is not None]
    if wrong:
        parser.error(f"{', '.join(wrong)} {'does' if len(wrong) == 1 else 'do'} not apply to {MODEL[args._kind]}")
    args.augmentation = {"audio": "specaugment", "points": "scale-translate"}[args._kind]
    args.rand_augment_ops, args.cutmix, args.translate, args.horizontal_flip = 0, 0.0, 0.0, "false"
    args.mixup = args.mixup or 0.0
    if args.base_learning_rate is None:
        args.base_learning_rate = SIGNAL_BASE_LR
    if args.layer_decay is None:
        args.layer_decay = 0.75 if args._kind == "audio" else 1.0
    return args


def spec_mask_settings(args, encoder):
    """`(time_mask, frequency_mask, mask_value)` of an Audio-MAE run: the given widths, or
    Audio-MAE's AudioSet fractions of the encoder's frames (192 / 1024) and bins (48 / 128)."""
    frames, bins = encoder.image_size
    time_mask = round(frames * 192 / 1024) if args.time_mask is None else args.time_mask
    frequency_mask = round(bins * 48 / 128) if args.frequency_mask is None else args.frequency_mask
    settings = args._frontend
    value = -settings["spectrogram_mean"] / (2.0 * settings["spectrogram_std"])  # raw log-mel 0, normalised
    return min(time_mask, frames), min(frequency_mask, bins), value


def run_finetune_signals(args):
    start = time.perf_counter()
    points = args._kind == "points"

    def build(encoder, num_classes, data):
        if points:
            from keras_mim.models.point_classifier import PointClassifier

            return PointClassifier(encoder, num_classes, seed=args.seed)
        from keras_mim.models.image_classifier import ImageClassifier

        return ImageClassifier(encoder, num_classes, pooling=args.pooling, drop_path_rate=args.drop_path,
                               seed=args.seed)

    encoder, (x_train, y_train, x_test, y_test), skipped, num_classes, model, steps, optimizer = finetune_setup(
        args, build)
    if points:
        from keras_mim.data.point_augment import point_finetune_dataset

        train = point_finetune_dataset(x_train, y_train, num_classes, batch_size=args.batch_size,
                                       label_smoothing=args.label_smoothing, seed=args.seed)
        recipe = {"augmentation": "per-axis scale [2/3, 3/2] and shift [-0.2, 0.2] (official)"}
    else:
        from keras_mim.data.finetune_augment import finetune_dataset

        time_mask, frequency_mask, mask_value = spec_mask_settings(args, encoder)
        train = finetune_dataset(
            x_train, y_train, num_classes=num_classes, batch_size=args.batch_size, training=True,
            rand_augment_ops=0, horizontal_flip=False, mixup_alpha=args.mixup, cutmix_alpha=0.0,
            label_smoothing=args.label_smoothing, seed=args.seed, time_mask=time_mask,
            frequency_mask=frequency_mask, mask_value=mask_value,
        )
        recipe = {"augmentation": "SpecAugment", "time_mask": time_mask, "frequency_mask": frequency_mask,
                  "mask_value": mask_value, "mixup": args.mixup}
    output = prepare_output(args, ("config.json", "results.json", "history.csv", "classifier.keras"), skipped)
    peak = args.base_learning_rate * args.batch_size / 256
    write_json(os.path.join(output, "config.json"), run_record(args, encoder, {
        "num_train": len(x_train), "num_test": len(x_test), "num_classes": num_classes,
        "classifier": type(model).__name__, "peak_learning_rate": peak, "steps_per_epoch": steps,
        "optimizer": "AdamW, layer-wise lr decay, no weight decay on biases/norms/tokens/pos, warmup + cosine",
        **recipe,
    }))
    print(f"keras-mim finetune: {'random-init' if args.random_init else 'pretrained'} {args._kind} encoder of "
          f"{args.model}, {len(x_train)} train / {len(x_test)} test {noun(args)}, {args.epochs} epochs x {steps} "
          f"steps, lr {peak:g}, layer decay {args.layer_decay:g}, "
          + ", ".join(f"{k.replace('_', ' ')} {v:g}" if isinstance(v, float) else f"{k.replace('_', ' ')} {v}"
                      for k, v in recipe.items()), flush=True)
    return train_classifier(args, model, optimizer, train, steps, output, start, (x_test, y_test))
