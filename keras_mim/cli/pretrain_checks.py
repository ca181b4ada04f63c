"""The checks of `keras-mim pretrain` that need the method's registry record, the data or the
devices: the method's options, the --data scan and --distribute (called by
`pretrain.resolve_pretrain`, before anything heavy)."""

import math
import os

from keras_mim.cli.pretrain_options import (
    DEFAULT_MASK_RATIO,
    NUM_HELDOUT,
    check_masking,
    methods_taking,
    takes_masking,
    takes_norm_pix_loss,
    takes_target,
)
from keras_mim.utils import check_mask_ratio


def check_method_options(parser, args, spec, grid, patch):
    """--mask-ratio, --masking, --norm-pix-loss, --target and --teacher against what the
    method's model takes (the registry record), and what it can do on the token `grid`."""
    if not takes_masking(spec) and (args.masking is not None or args.mask_ratio is not None):
        parser.error(f"--method {args.method} does not hide tokens ({spec.model.__name__} takes no mask ratio): "
                     "drop --masking/--mask-ratio")
    if args.mask_ratio is not None:
        try:
            check_mask_ratio(args.mask_ratio, math.prod(grid), name="--mask-ratio")
        except ValueError as error:
            parser.error(str(error).replace("`", ""))
    if args.masking is not None:
        default = None if args.masking == "time_frequency" else DEFAULT_MASK_RATIO  # derives its own ratio
        check_masking(parser, args.masking, default if args.mask_ratio is None else args.mask_ratio,
                      patch[0], grid)
    if args.norm_pix_loss is not None and not takes_norm_pix_loss(spec):
        parser.error(f"--norm-pix-loss applies to the methods {', '.join(methods_taking('norm_pix_loss'))}, "
                     f"not --method {args.method}")
    if args.target is not None:
        from keras_mim.targets import TARGETS

        if not takes_target(spec):
            parser.error(f"--target applies to the methods {', '.join(methods_taking('target'))}, "
                         f"not --method {args.method}")
        if args.target not in TARGETS:
            parser.error(f"unknown --target {args.target!r}; expected one of {', '.join(sorted(TARGETS))}")
        if args.norm_pix_loss is not None:
            parser.error("--norm-pix-loss configures the default pixel target; drop it with --target")
    if spec.teacher and args.teacher is None:
        parser.error(f"--method {args.method} learns from a frozen teacher: pass --teacher MODEL.keras "
                     "(e.g. the model.keras of an earlier `keras-mim pretrain` run)")
    if args.teacher is not None:
        if not spec.teacher:
            parser.error(f"--teacher is only used by the methods {', '.join(methods_taking('teacher'))}")
        if not args.teacher.endswith(".keras") or not os.path.isfile(args.teacher):
            parser.error(f"--teacher {args.teacher!r} must be an existing .keras file")


def scan_data(parser, args):
    """Check --data (the folder is scanned, a tfds set must be prepared) before anything
    heavy; keeps the source in `args._data` and returns the number of training images."""
    from keras_mim.cli.pretrain_data import data_source

    try:
        args._data, available = data_source(args, seed=args.seed)
    except (ValueError, FileNotFoundError, ImportError) as error:
        parser.error(f"--data {args.data!r}: {error}")
    return available


def check_distribute(parser, args):
    """--distribute: exit with status 2 if the backend cannot, or if --batch-size (and, on
    JAX, the held-out batch) does not split evenly over the devices."""
    import keras

    from keras_mim import distribute

    backend = args.backend or keras.backend.backend()
    try:
        distribute.check_kind(args.distribute, backend, name="--distribute")
        if args.distribute != "none" and backend == keras.backend.backend():  # else the restarted command checks
            devices = distribute.num_replicas(args.distribute)
            distribute.check_global_batch(args.batch_size, devices, name="--batch-size")
            if backend == "jax":  # JAX shards every batch evenly, held-out evaluation included
                distribute.check_global_batch(NUM_HELDOUT, devices, name="held-out batch")
    except ValueError as error:
        parser.error(str(error).replace("`", ""))
