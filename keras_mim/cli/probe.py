"""`keras-mim probe`: MAE's linear probe (`--head linear`, the default) or V-JEPA's attentive
probe (`--head attentive`) of a saved model's frozen encoder."""

import os
import sys
import time

from keras_mim.cli.common import HelpFormatter, jit_compile_setting, non_negative_float, positive_float, write_json
from keras_mim.cli.evaluate import (
    add_eval_arguments,
    add_training_arguments,
    build_classifier,
    fail,
    finish,
    noun,
    prepare_output,
    resolve_eval,
    run_record,
    score_images,
)


class _DefaultInt(int):
    """A default, not given on the command line: `resolve_probe` puts the --head's own in its
    place, and `run_attentive_probe` raises the attentive head's epochs to ATTENTIVE_MIN_STEPS."""


class _DefaultFloat(float):
    """As `_DefaultInt`, for a float option."""


PROBE_EPOCHS = 90  # MAE's linear probe: 90 epochs, 10 of warmup
PROBE_WARMUP_EPOCHS = 10
PROBE_BATCH_SIZE = 128
PROBE_BASE_LR = 0.1  # lr = base * batch / 256, as MAE's linear probe
# V-JEPA's attentive probe (evals/image_classification_frozen): AdamW at lr 1e-3 (not scaled
# with the batch), weight decay 1e-3, no warmup, 20 epochs, batch 16 x 64 GPUs; batch 32 here
# (1438 digits: 45 steps an epoch, not 2), and by default at least 1000 steps: the pooler starts
# from scratch, and with 10 digits a class (4 steps an epoch) it scored 0.25 after 20 epochs,
# 0.59 after 100, 0.66 after 250 (an MAE test-preset encoder pretrained for 1 epoch).
ATTENTIVE_EPOCHS = 20
ATTENTIVE_MIN_STEPS = 1000
ATTENTIVE_BATCH_SIZE = 32
ATTENTIVE_LR = 1e-3
ATTENTIVE_WEIGHT_DECAY = 1e-3
ATTENTIVE_WARMUP_EPOCHS = 0
HEAD_DEFAULTS = {
    "linear": {"epochs": PROBE_EPOCHS, "batch_size": PROBE_BATCH_SIZE, "base_learning_rate": PROBE_BASE_LR,
               "warmup_epochs": PROBE_WARMUP_EPOCHS, "head_init": "ridge", "block": "auto"},
    "attentive": {"epochs": _DefaultInt(ATTENTIVE_EPOCHS), "batch_size": ATTENTIVE_BATCH_SIZE,
                  "learning_rate": ATTENTIVE_LR, "weight_decay": ATTENTIVE_WEIGHT_DECAY,
                  "warmup_epochs": ATTENTIVE_WARMUP_EPOCHS, "standardize_tokens": "true", "block": "last"},
}
#: The options of one head only (the other refuses them).
HEAD_ONLY = {"linear": ("pooling", "head_init", "base_learning_rate"),
             "attentive": ("learning_rate", "weight_decay", "standardize_tokens")}


def given(args, name):
    """Whether option `name` was given on the command line (not None, not a marked default)."""
    value = getattr(args, name)
    return value is not None and not isinstance(value, (_DefaultInt, _DefaultFloat))


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
        "probe", help="linear or attentive probe of a saved model's frozen encoder; writes results.json.",
        description="Train MAE's linear probe (frozen encoder, BatchNorm without affine + Dense) on "
                    "labelled images and report test accuracy in a run folder: results.json, "
                    "history.csv, config.json, probe.keras. The BatchNorm's statistics are the "
                    "training features' mean and variance (one pass), fixed while the head trains, "
                    "so a short probe is scored with the statistics it trained with. The head starts "
                    "at the closed-form ridge classifier of the standardised features (penalty by "
                    "leave-one-out), so 3 epochs score close to 90 (MAE's random head: --head-init random). "
                    "--head attentive trains V-JEPA's attentive probe instead (keras_mim.models.AttentiveProbe): "
                    "a learned query cross-attends to all the encoder's tokens, then an MLP and a Dense head; "
                    "results.json, history.csv, config.json, probe.keras likewise.",
        epilog="Optimiser, linear: MAE uses LARS (lr 0.1 x batch/256, no weight decay); Keras has no LARS, "
               "so this uses SGD with momentum 0.9 and the same schedule (warmup, then cosine to 0), "
               "which the BatchNorm before the head makes insensitive to the feature scale; defaults "
               f"{PROBE_EPOCHS} epochs, batch {PROBE_BATCH_SIZE}, base lr {PROBE_BASE_LR:g}, "
               f"{PROBE_WARMUP_EPOCHS} warmup epochs. Attentive: V-JEPA's AdamW at --learning-rate "
               f"{ATTENTIVE_LR:g} (not scaled with the batch), cosine to 0, --weight-decay {ATTENTIVE_WEIGHT_DECAY:g} "
               f"(not on biases and norms), {ATTENTIVE_EPOCHS} epochs (more if that makes fewer than "
               f"{ATTENTIVE_MIN_STEPS} steps, unless --epochs is given), no warmup; batch {ATTENTIVE_BATCH_SIZE} "
               "(V-JEPA: 1024, which leaves small labelled sets a few steps an epoch). Both train on "
               "once-computed frozen features or tokens (no augmentation).",
        formatter_class=HelpFormatter,
    )
    add_eval_arguments(p, "probe")
    # the linear head's defaults, marked: --head attentive takes its own unless the option is given
    add_training_arguments(p, _DefaultInt(PROBE_EPOCHS), _DefaultInt(PROBE_BATCH_SIZE),
                           _DefaultFloat(PROBE_BASE_LR), _DefaultInt(PROBE_WARMUP_EPOCHS))
    p.add_argument("--head", choices=("linear", "attentive"), default="linear",
                   help="linear (default): MAE's linear probe of pooled features; attentive: V-JEPA's "
                        "attentive probe, a learned query cross-attending to all tokens (the evaluation of "
                        "JEPA-style encoders, whose pooled features are not linearly separable)")
    p.add_argument("--head-init", choices=("ridge", "random"), default=None,
                   help="linear head: its start, the ridge classifier of the features (closed form, default) "
                        "or MAE's random weights (std 0.01)")
    p.add_argument("--learning-rate", type=positive_float, default=None,
                   help=f"attentive head: AdamW's peak learning rate (default {ATTENTIVE_LR:g}, V-JEPA's)")
    p.add_argument("--weight-decay", type=non_negative_float, default=None,
                   help=f"attentive head: AdamW's weight decay (default {ATTENTIVE_WEIGHT_DECAY:g}, V-JEPA's)")
    p.add_argument("--standardize-tokens", choices=("true", "false"), default=None,
                   help="attentive head: standardise the tokens per channel with the training tokens' mean and "
                        "variance first (default true; not in V-JEPA's probe, which then stayed near chance on a "
                        "short-pretrained I-JEPA encoder whose tokens barely vary between images; docs/evaluation.md)")
    p.add_argument("--block", type=block_choice, default=None,
                   help="which block's output to probe: 'auto' (the linear head's default): the block and "
                        "pooling (unless --pooling is given) whose ridge probe scores best on a validation split "
                        "of the training images (20%% of each class; test images never take part; on Fashion-MNIST "
                        "it chose block 3 of 6, docs/value.md), 'last' (the encoder's output, as MAE; the "
                        "attentive head's default: all its tokens), or a block index (0 = first, -2 = the one "
                        "before last)")
    return p


def resolve_probe(parser, args):
    """Check the options of --head (before anything heavy is loaded), fill that head's
    defaults, then the shared checks (`resolve_eval`)."""
    other = "attentive" if args.head == "linear" else "linear"
    wrong = [f"--{name.replace('_', '-')}" for name in HEAD_ONLY[other] if given(args, name)]
    if wrong:
        parser.error(f"{', '.join(wrong)} {'applies' if len(wrong) == 1 else 'apply'} to --head {other} only")
    if args.head == "attentive" and args.block == "auto":
        parser.error("--block auto chooses by ridge probes of pooled features (--head linear); the attentive "
                     "probe reads 'last' (default) or a block index")
    for name, value in HEAD_DEFAULTS[args.head].items():
        if not given(args, name):
            setattr(args, name, value)
    for name in HEAD_ONLY[other]:  # e.g. the linear head's base learning rate on an attentive run
        setattr(args, name, None)
    return resolve_eval(parser, args)


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
    if args.head == "attentive":
        return run_attentive_probe(args)
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
        "num_train": len(x_train), "num_test": len(x_test), "num_classes": num_classes, "head": "linear",
        "pooling": probe.pooling, "block": probe.block, "block_selection": selection,
        "peak_learning_rate": peak, "steps_per_epoch": steps,
        "optimizer": "SGD(momentum=0.9), warmup + cosine (MAE: LARS)",
        "features": "computed once (frozen encoder, inference mode, no augmentation)",
        "head_norm_statistics": "the training features' mean and variance (one pass), fixed while the head trains",
        "head_init": args.head_init,
    })
    write_json(os.path.join(output, "config.json"), config)
    print(f"keras-mim probe: {'random-init' if args.random_init else 'pretrained'} encoder of {args.model}, "
          f"{len(x_train)} train / {len(x_test)} test {noun(args)}, {args.epochs} epochs, lr {peak:g}", flush=True)
    history = fit_linear_probe(
        probe, x_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
        base_learning_rate=args.base_learning_rate, warmup_epochs=args.warmup_epochs, head_init=args.head_init,
        callbacks=[history_logger(output)],  # epochs counted from 1, as pretrain's
        jit_compile=jit_compile_setting(args.jit_compile, expected_steps=steps * args.epochs),
        verbose=1 if sys.stdout.isatty() else 2,
    )
    top1, top5 = score_images(probe, x_test, y_test, args.batch_size)  # end to end, from the images
    probe.save(os.path.join(output, "probe.keras"))
    extra = {"head": "linear", "block": probe.block, "pooling": probe.pooling}
    if history.get("ridge"):
        extra["ridge_head"] = history["ridge"]
        print(f"keras-mim probe: the head started at the ridge classifier of the features (l2 {history['ridge']['l2']:g} "
              f"x N, leave-one-out accuracy {history['ridge']['loo_accuracy']:.4f} on the training images)", flush=True)
    return finish(args, output, start, {"top1": top1, "top5": top5, "train_loss": history["loss"],
                                        "train_accuracy": history["accuracy"], **extra})


def run_attentive_probe(args):
    from keras_mim.cli.run_folder import history_logger
    from keras_mim.evaluation import fit_attentive_probe
    from keras_mim.models.attentive_probe import AttentiveProbe

    start = time.perf_counter()
    block = None if args.block == "last" else args.block
    standardize = args.standardize_tokens == "true"

    def build(encoder, num_classes, data):
        return AttentiveProbe(encoder, num_classes, block=block, standardize_tokens=standardize, seed=args.seed)

    encoder, (x_train, y_train, x_test, y_test), skipped, num_classes, probe = build_classifier(args, build)
    steps = -(-len(x_train) // args.batch_size)
    if not given(args, "epochs"):  # V-JEPA's 20, or more for at least ATTENTIVE_MIN_STEPS steps
        args.epochs = max(int(args.epochs), -(-ATTENTIVE_MIN_STEPS // steps))
    output = prepare_output(args, ("config.json", "results.json", "history.csv", "probe.keras"), skipped)
    config = run_record(args, encoder, {
        "num_train": len(x_train), "num_test": len(x_test), "num_classes": num_classes, "head": "attentive",
        "block": probe.block, "num_heads": probe.num_heads, "num_queries": probe.num_queries,
        "tokens": probe.num_tokens, "standardize_tokens": standardize, "peak_learning_rate": args.learning_rate,
        "weight_decay": args.weight_decay, "steps_per_epoch": steps,
        "optimizer": "AdamW(0.9, 0.999, eps 1e-8), warmup + cosine to 0, no decay on biases and norms "
                     "(V-JEPA: the weight decay also follows a cosine)",
        "features": "tokens computed once (frozen encoder, inference mode, no augmentation)",
    })
    write_json(os.path.join(output, "config.json"), config)
    print(f"keras-mim probe: attentive probe of the {'random-init' if args.random_init else 'pretrained'} encoder "
          f"of {args.model}, {len(x_train)} train / {len(x_test)} test {noun(args)}, {args.epochs} epochs, "
          f"lr {args.learning_rate:g}", flush=True)
    try:
        history = fit_attentive_probe(
            probe, x_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
            learning_rate=args.learning_rate, weight_decay=args.weight_decay, warmup_epochs=args.warmup_epochs,
            callbacks=[history_logger(output)],
            jit_compile=jit_compile_setting(args.jit_compile, expected_steps=steps * args.epochs),
            verbose=1 if sys.stdout.isatty() else 2,
        )
    except ValueError as error:
        fail(args.command, str(error))
    top1, top5 = score_images(probe, x_test, y_test, args.batch_size)  # end to end, from the images
    probe.save(os.path.join(output, "probe.keras"))
    return finish(args, output, start, {"top1": top1, "top5": top5, "train_loss": history["loss"],
                                        "train_accuracy": history["accuracy"], "head": "attentive",
                                        "block": probe.block})
