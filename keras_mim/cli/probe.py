"""`keras-mim probe`: MAE's linear probe of a saved model's frozen encoder."""

import os
import sys
import time

from keras_mim.cli.common import HelpFormatter, jit_compile_setting, write_json
from keras_mim.cli.evaluate import (
    add_eval_arguments,
    add_training_arguments,
    build_classifier,
    finish,
    prepare_output,
    run_record,
    score_images,
)

PROBE_EPOCHS = 90  # MAE's linear probe: 90 epochs, 10 of warmup
PROBE_WARMUP_EPOCHS = 10
PROBE_BATCH_SIZE = 128
PROBE_BASE_LR = 0.1  # lr = base * batch / 256, as MAE's linear probe


def block_choice(value):
    """--block: 'last', 'auto' or a block index (negative from the end)."""
    import argparse

    if value in ("last", "auto"):
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'last', 'auto' or a block index, got {value!r}") from None


def add_probe_parser(commands):
    p = commands.add_parser(
        "probe", help="linear probe of a saved model's frozen encoder; writes results.json.",
        description="Train MAE's linear probe (frozen encoder, BatchNorm without affine + Dense) on "
                    "labelled images and report test accuracy in a run folder: results.json, "
                    "history.csv, config.json, probe.keras. The BatchNorm's statistics are the "
                    "training features' mean and variance (one pass), fixed while the head trains, "
                    "so a short probe is scored with the statistics it trained with. The head starts "
                    "at the closed-form ridge classifier of the standardised features (penalty by "
                    "leave-one-out), so 3 epochs score close to 90 (MAE's random head: --head-init random).",
        epilog="Optimiser: MAE uses LARS (lr 0.1 x batch/256, no weight decay); Keras has no LARS, "
               "so this uses SGD with momentum 0.9 and the same schedule (warmup, then cosine to 0), "
               "which the BatchNorm before the head makes insensitive to the feature scale.",
        formatter_class=HelpFormatter,
    )
    add_eval_arguments(p, "probe")
    add_training_arguments(p, PROBE_EPOCHS, PROBE_BATCH_SIZE, PROBE_BASE_LR, PROBE_WARMUP_EPOCHS)
    p.add_argument("--head-init", choices=("ridge", "random"), default="ridge",
                   help="the head's start: the ridge classifier of the features (closed form) or "
                        "MAE's random weights (std 0.01)")
    p.add_argument("--block", type=block_choice, default="auto",
                   help="which block's output to probe: 'auto' (default): the block and pooling (unless "
                        "--pooling is given) whose ridge probe scores best on a validation split of the "
                        "training images (20%% of each class; test images never take part; on Fashion-MNIST "
                        "it chose block 3 of 6, docs/value.md), 'last' (the encoder's output, as MAE), or a "
                        "block index (0 = first, -2 = the one before last)")
    return p


def choose_features(args, encoder, x_train, y_train, num_classes):
    """`(block, pooling, selection record or None)` from --block / --pooling."""
    if args.block != "auto":
        return (None if args.block == "last" else args.block), args.pooling, None
    from keras_mim.evaluation.probe_selection import select_probe_features

    try:
        choice = select_probe_features(encoder, x_train, y_train, num_classes=num_classes, seed=args.seed,
                                       poolings=[args.pooling] if args.pooling else None)
    except ValueError as error:  # e.g. one image a class: no validation split to choose with
        print(f"keras-mim probe: --block auto cannot choose ({error}); probing the last block", flush=True)
        return None, args.pooling, None
    best = f"{'last' if choice['block'] is None else choice['block']}/{choice['pooling']}"
    print(f"keras-mim probe: --block auto chose {best} (validation accuracy {choice['validation_accuracy']:.4f} of "
          + ", ".join(f"{k} {v:.3f}" for k, v in choice["table"].items()) + ")", flush=True)
    return choice["block"], choice["pooling"], choice


def run_probe(args):
    from keras_mim.cli.run_folder import history_logger
    from keras_mim.evaluation import fit_linear_probe
    from keras_mim.models.linear_probe import LinearProbe

    start = time.perf_counter()
    chosen = {}

    def build(encoder, num_classes, data):  # the block and pooling (--block auto: chosen on the train images)
        block, pooling, chosen["selection"] = choose_features(args, encoder, data[0], data[1], num_classes)
        return LinearProbe(encoder, num_classes, pooling=pooling, block=block, seed=args.seed)

    encoder, (x_train, y_train, x_test, y_test), skipped, num_classes, probe = build_classifier(args, build)
    selection = chosen["selection"]
    steps = -(-len(x_train) // args.batch_size)
    peak = args.base_learning_rate * args.batch_size / 256
    output = prepare_output(args, ("config.json", "results.json", "history.csv", "probe.keras"), skipped)
    config = run_record(args, encoder, {
        "num_train": len(x_train), "num_test": len(x_test), "num_classes": num_classes,
        "pooling": probe.pooling, "block": probe.block, "block_selection": selection,
        "peak_learning_rate": peak, "steps_per_epoch": steps,
        "optimizer": "SGD(momentum=0.9), warmup + cosine (MAE: LARS)",
        "features": "computed once (frozen encoder, inference mode, no augmentation)",
        "head_norm_statistics": "the training features' mean and variance (one pass), fixed while the head trains",
        "head_init": args.head_init,
    })
    write_json(os.path.join(output, "config.json"), config)
    print(f"keras-mim probe: {'random-init' if args.random_init else 'pretrained'} encoder of {args.model}, "
          f"{len(x_train)} train / {len(x_test)} test images, {args.epochs} epochs, lr {peak:g}", flush=True)
    history = fit_linear_probe(
        probe, x_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
        base_learning_rate=args.base_learning_rate, warmup_epochs=args.warmup_epochs, head_init=args.head_init,
        callbacks=[history_logger(output)],  # epochs counted from 1, as pretrain's
        jit_compile=jit_compile_setting(args.jit_compile, expected_steps=steps * args.epochs),
        verbose=1 if sys.stdout.isatty() else 2,
    )
    top1, top5 = score_images(probe, x_test, y_test, args.batch_size)  # end to end, from the images
    probe.save(os.path.join(output, "probe.keras"))
    extra = {"block": probe.block, "pooling": probe.pooling}
    if history.get("ridge"):
        extra["ridge_head"] = history["ridge"]
        print(f"keras-mim probe: the head started at the ridge classifier of the features (l2 {history['ridge']['l2']:g} "
              f"x N, leave-one-out accuracy {history['ridge']['loo_accuracy']:.4f} on the training images)", flush=True)
    return finish(args, output, start, {"top1": top1, "top5": top5, "train_loss": history["loss"],
                                        "train_accuracy": history["accuracy"], **extra})
