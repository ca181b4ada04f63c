"""`keras-mim finetune`: fine-tune the encoder of a saved `.keras` model with MAE's recipe."""

import os
import time

from keras_mim.cli.classifier_training import finetune_setup, train_classifier
from keras_mim.cli.common import HelpFormatter, non_negative_float, non_negative_int, ratio, write_json
from keras_mim.cli.evaluate import (
    add_eval_arguments,
    add_training_arguments,
    noun,
    prepare_output,
    run_record,
)

# MAE's ViT-B recipe: 100 epochs, blr 5e-4 (x batch / 256), layer decay 0.65 (0.75 for L/H),
# weight decay 0.05, drop path 0.1, mixup 0.8, cutmix 1.0, smoothing 0.1, RandAugment m9 n2,
# 5 warmup epochs. The epochs here suit small data and models on a CPU.
FINETUNE_EPOCHS = 30
FINETUNE_WARMUP_EPOCHS = 3
FINETUNE_BATCH_SIZE = 64

#: `--augmentation`: what each recipe sets (an option given on the command line wins). "mae" is
#: MAE's ImageNet recipe (with our epochs and base lr); "light" is flips only (no RandAugment,
#: mixup, cutmix) and a 4x higher base lr. Fashion-MNIST, 94 labels a class, 560 updates, the
#: MAE-pretrained micro ViT (docs/value.md): "mae" 0.637, flips only at base lr 1e-3 0.761
#: (train accuracy 0.85: under-fitted), at 4e-3 0.798; 10% shifts added 0.792. Digits:
#: docs/study.md.
AUGMENTATIONS = {
    "mae": {"rand_augment_ops": 2, "mixup": 0.8, "cutmix": 1.0, "translate": 0.0, "base_learning_rate": 1e-3},
    "light": {"rand_augment_ops": 0, "mixup": 0.0, "cutmix": 0.0, "translate": 0.0, "base_learning_rate": 4e-3},
}
#: `--augmentation auto`: "light" below this many training images (the value study measured up
#: to 10000), "mae" from there (the recipe MAE fine-tuned ImageNet's 1.28M images with).
LIGHT_BELOW = 20000


def add_finetune_parser(commands):
    p = commands.add_parser(
        "finetune", help="fine-tune a saved model's encoder as a classifier (MAE's recipe); "
                         "writes results.json.",
        description="Fine-tune the encoder of a saved model end to end with MAE's recipe: an "
                    "ImageClassifier (avg pooling + fc_norm, head init std 2e-5, drop path), AdamW "
                    "with layer-wise lr decay and no weight decay on biases / norms / tokens, warmup "
                    "+ cosine, RandAugment, mixup / cutmix and label smoothing. Writes "
                    "results.json (test accuracy), history.csv, config.json and classifier.keras.",
        epilog="MAE's ViT-B/16 ImageNet recipe is 100 epochs, --base-learning-rate 5e-4 with "
               "batch 1024, --layer-decay 0.65; the defaults here are sized for small data "
               "and models on a CPU.",
        formatter_class=HelpFormatter,
    )
    add_eval_arguments(p, "finetune")
    add_training_arguments(p, FINETUNE_EPOCHS, FINETUNE_BATCH_SIZE, None, FINETUNE_WARMUP_EPOCHS)
    p.add_argument("--augmentation", choices=("auto", *AUGMENTATIONS), default="auto",
                   help="the recipe filling --rand-augment-ops, --mixup, --cutmix, --translate and "
                        "--base-learning-rate where not given: 'mae' (RandAugment 2 ops, mixup 0.8, cutmix "
                        "1.0, base lr 1e-3), 'light' (flips only, base lr 4e-3), 'auto': "
                        f"light below {LIGHT_BELOW} training images, else mae")
    p.add_argument("--layer-decay", type=ratio_or_one, default=None,
                   help="layer-wise lr decay: block i trains at decay^(depth + 1 - (i + 1)) x lr; default 0.75 "
                        "(MAE's ViT-L, Audio-MAE's), 1 (none) for a Point-MAE model, as the official Point-MAE")
    p.add_argument("--weight-decay", type=non_negative_float, default=0.05, help="AdamW weight decay")
    p.add_argument("--drop-path", type=ratio, default=0.1, help="stochastic depth of the last block")
    p.add_argument("--mixup", type=non_negative_float, default=None, help="mixup alpha (0: off; default: --augmentation)")
    p.add_argument("--cutmix", type=non_negative_float, default=None,
                   help="cutmix alpha in [0, 1] (0: off; default: --augmentation)")
    p.add_argument("--label-smoothing", type=ratio, default=0.1, help="label smoothing")
    p.add_argument("--horizontal-flip", choices=("true", "false"), default="true",
                   help="random left-right flips (MAE: on; turn off for digits, text, ...)")
    p.add_argument("--translate", type=ratio, default=None,
                   help="random shifts up to this fraction of the image size (not in MAE's recipe; 0: off; "
                        "default: --augmentation)")
    p.add_argument("--rand-augment-ops", type=int, choices=range(0, 6), default=None, metavar="N",
                   help="RandAugment ops per image, 0-5 (0: off; default: --augmentation)")
    p.add_argument("--multi-label", action="store_true",
                   help="several labels per image or clip (chest X-ray findings, AudioSet-style sound events): "
                        "labels from --labels, a sigmoid head with binary cross-entropy, per-class AUC and AP "
                        "(mAUC, mAP) on a --test-fraction split (default 0.2); no label smoothing; images: flips "
                        "only; Audio-MAE models: SpecAugment, --mixup allowed (Audio-MAE's AudioSet: 0.5)")
    p.add_argument("--labels", default=None,
                   help="with --multi-label: a CSV beside --data, the file path (relative to --data) first, then "
                        "either one column of '|'-separated findings ('No Finding' = none; NIH ChestX-ray14) or "
                        "one 0/1 column per class (-1, uncertain, read as 0; CheXpert-style)")
    p.add_argument("--time-mask", type=non_negative_int, default=None,
                   help="Audio-MAE models: SpecAugment's widest band of frames masked per training clip (0: off; "
                        "default 3/16 of the frames, Audio-MAE's 192 of 1024 on AudioSet)")
    p.add_argument("--frequency-mask", type=non_negative_int, default=None,
                   help="Audio-MAE models: SpecAugment's widest band of mel bins masked per training clip (0: off; "
                        "default 3/8 of the bins, Audio-MAE's 48 of 128)")
    p.add_argument("--rand-augment-factor", type=ratio_or_one, default=0.9,
                   help="RandAugment strength in (0, 1] (timm's m9 = 0.9; Keras' ops differ from timm's: "
                        "its rotation reaches factor x 360 degrees, timm's 30)")
    return p


def ratio_or_one(text):
    from keras_mim.cli.common import parsed

    return parsed(float, lambda v: 0.0 < v <= 1.0, "a number in (0, 1]")(text)


def image_recipe_defaults(parser, args):
    """An image model's fine-tuning: no SpecAugment options; layer decay 0.75 unless given."""
    if args.time_mask is not None or args.frequency_mask is not None:
        parser.error("--time-mask and --frequency-mask apply to Audio-MAE models (spectrograms) only")
    if args.layer_decay is None:
        args.layer_decay = 0.75


def resolve_finetune(parser, args):
    from keras_mim.cli.evaluate import resolve_eval

    if args.multi_label:
        return resolve_multilabel(parser, args)
    if args.labels is not None:
        parser.error("--labels goes with --multi-label (single-label classes are --data's subfolders)")
    if args.cutmix is not None and args.cutmix > 1.0:
        parser.error(f"--cutmix must be in [0, 1] (Keras' CutMix factor), got {args.cutmix}")
    if args.pooling is None:
        args.pooling = "avg"
    args = resolve_eval(parser, args)
    if args._kind != "images":
        from keras_mim.cli.finetune_signals import resolve_signal_recipe

        return resolve_signal_recipe(parser, args)
    image_recipe_defaults(parser, args)
    num_train = len(args._data["train_labels"])
    if args.augmentation == "auto":
        args.augmentation = "light" if num_train < LIGHT_BELOW else "mae"
    for name, value in AUGMENTATIONS[args.augmentation].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def resolve_multilabel(parser, args):
    """--multi-label: its data checks, then the model file (an image or Audio-MAE model), the
    recipe of its kind, run folder and backend."""
    from keras_mim.cli.common import check_backend_installed, check_output
    from keras_mim.cli.evaluate_signals import frontend_settings
    from keras_mim.cli.finetune_multilabel import check_multilabel_args
    from keras_mim.evaluation import data_kind, inspect_keras_file

    if args.dataset is not None or args.labels_per_class is not None:
        parser.error("--multi-label reads --data and --labels; --dataset and --labels-per-class do not apply")
    try:
        config = inspect_keras_file(args.model, name="model")
    except (ValueError, OSError) as error:
        parser.error(str(error))
    args._kind, args._frontend = data_kind(config), frontend_settings(config)
    if args._kind == "points":
        parser.error(f"--multi-label fine-tunes image and Audio-MAE models; {args.model} holds a Point-MAE model "
                     "(multi-label point clouds are not supported)")
    check_multilabel_args(parser, args)
    if args._kind == "audio":
        from keras_mim.cli.finetune_signals import resolve_signal_recipe

        resolve_signal_recipe(parser, args)
    else:
        image_recipe_defaults(parser, args)
        if args.augmentation == "mae":
            parser.error("--multi-label trains with flips only; --augmentation mae does not apply")
        args.augmentation = "light"
        for name, value in AUGMENTATIONS["light"].items():
            if getattr(args, name) is None:
                setattr(args, name, value)
    if args.pooling is None:
        args.pooling = "avg"
    check_output(parser, args, args.command)
    check_backend_installed(parser, args)
    return args


def run_finetune(args):
    if args.multi_label:
        from keras_mim.cli.finetune_multilabel import run_finetune_multilabel

        return run_finetune_multilabel(args)
    if args._kind != "images":
        from keras_mim.cli.finetune_signals import run_finetune_signals

        return run_finetune_signals(args)

    from keras_mim.data.finetune_augment import finetune_dataset
    from keras_mim.models.image_classifier import ImageClassifier

    start = time.perf_counter()
    encoder, (x_train, y_train, x_test, y_test), skipped, num_classes, model, steps, optimizer = finetune_setup(
        args, lambda encoder, n, data: ImageClassifier(encoder, n, pooling=args.pooling,
                                                       drop_path_rate=args.drop_path, seed=args.seed))
    train = finetune_dataset(
        x_train, y_train, num_classes=num_classes, batch_size=args.batch_size, training=True,
        rand_augment_ops=args.rand_augment_ops, rand_augment_factor=args.rand_augment_factor,
        horizontal_flip=args.horizontal_flip == "true", translate=args.translate,
        mixup_alpha=args.mixup, cutmix_alpha=args.cutmix, label_smoothing=args.label_smoothing, seed=args.seed,
    )
    output = prepare_output(args, ("config.json", "results.json", "history.csv", "classifier.keras"), skipped)
    peak = args.base_learning_rate * args.batch_size / 256
    write_json(os.path.join(output, "config.json"), run_record(args, encoder, {
        "num_train": len(x_train), "num_test": len(x_test), "num_classes": num_classes,
        "pooling": model.pooling, "peak_learning_rate": peak, "steps_per_epoch": steps,
        "optimizer": "AdamW, layer-wise lr decay, no weight decay on biases/norms/tokens/pos, warmup + cosine",
    }))
    print(f"keras-mim finetune: {'random-init' if args.random_init else 'pretrained'} encoder of {args.model}, "
          f"{len(x_train)} train / {len(x_test)} test {noun(args)}, {args.epochs} epochs x {steps} steps, "
          f"lr {peak:g}, layer decay {args.layer_decay:g}, augmentation {args.augmentation} (RandAugment "
          f"{args.rand_augment_ops} ops, mixup {args.mixup:g}, cutmix {args.cutmix:g}, shifts {args.translate:g})",
          flush=True)
    return train_classifier(args, model, optimizer, train, steps, output, start, (x_test, y_test))
