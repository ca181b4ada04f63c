"""The `keras-mim` command line.

Subcommands:

- `pretrain`: pretraining (MAE by default, or any registered method, `--method NAME`:
  see `keras_mim.list_methods()`) on a built-in sample dataset (offline) or your own
  images, writing a run folder with the model, the loss history and, for methods that
  predict pixels, reconstruction figures.
- `probe`, `knn`, `finetune`: linear or attentive probe / k-NN accuracy / MAE's fine-tuning recipe for
  the encoder of a saved `.keras` model (or of the same architecture freshly initialised,
  `--random-init`), on labelled images; each writes a run folder with results.json.
- `masks`: a gallery of every masking strategy on a real photo.
- `score`: anomaly scores by reconstruction error for a folder of images (a CSV ranking,
  the AUROC when labels are given).

Run `keras-mim pretrain --help` for the options, or `python -m keras_mim.cli ...`.

Building the parsers imports no Keras and no backend (the method and mask names come
from `keras_mim/registry_snapshot.py`), so `--help` and argument errors answer at once;
the backends' C++ log lines are hidden unless `--verbose` (set before a backend is
imported). The Keras backend is fixed when Keras is first imported: `--backend` sets
KERAS_BACKEND before that, and only a `main(argv)` call in a process where Keras already
runs another backend restarts the command (see `keras_mim/cli/backend.py`).
"""

import subprocess  # noqa: F401  (the backend switch's child process; tests patch it here)
import sys

from keras_mim.cli.backend import select_backend, switch_backend, use_compile_cache
from keras_mim.cli.common import ArgumentParser, add_verbose_argument, quiet_backend_logs
from keras_mim.cli.evaluate import add_knn_parser, resolve_eval, run_knn
from keras_mim.cli.finetune import add_finetune_parser, resolve_finetune, run_finetune
from keras_mim.cli.masks import add_masks_parser, resolve_masks, run_masks
from keras_mim.cli.pretrain import (  # noqa: F401  (the defaults are part of the CLI's API)
    DEFAULT_BATCH_SIZE,
    DEFAULT_DATASET,
    DEFAULT_EPOCHS,
    DEFAULT_LEARNING_RATE,
    DEFAULT_MASK_RATIO,
    DEFAULT_PRESETS,
    NUM_HELDOUT,
    add_pretrain_parser,
    resolve_pretrain,
    run_pretrain,
)
from keras_mim.cli.probe import add_probe_parser, resolve_probe, run_probe
from keras_mim.cli.score import add_score_parser, resolve_score, run_score


def build_parser():
    """The `keras-mim` argument parser (subcommand parsers reachable as `parser.subparsers`)."""
    parser = ArgumentParser(
        prog="keras-mim",
        description="Masked image modeling in Keras 3 (TensorFlow, JAX or PyTorch backend).",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    parser.subparsers = {
        "pretrain": add_pretrain_parser(commands),
        "probe": add_probe_parser(commands),
        "knn": add_knn_parser(commands),
        "finetune": add_finetune_parser(commands),
        "masks": add_masks_parser(commands),
        "score": add_score_parser(commands),
    }
    for subparser in parser.subparsers.values():
        add_verbose_argument(subparser)
    return parser


def main(argv=None):
    """Run the `keras-mim` command; `argv` defaults to `sys.argv[1:]`. Returns the exit
    status (argument errors exit with status 2 through `SystemExit`)."""
    from_command_line = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    subparser = parser.subparsers[args.command]
    if unknown:
        subparser.error(f"unrecognized arguments: {' '.join(unknown)}")
    quiet_backend_logs(args.verbose)
    use_compile_cache()
    select_backend(subparser, args)
    # command -> (check its arguments, run it); looked up here so tests can patch either
    commands = {
        "pretrain": (resolve_pretrain, run_pretrain),
        "probe": (resolve_probe, run_probe),
        "knn": (resolve_eval, run_knn),
        "finetune": (resolve_finetune, run_finetune),
        "masks": (resolve_masks, run_masks),
        "score": (resolve_score, run_score),
    }
    resolve, run = commands[args.command]
    resolve(subparser, args)
    status = switch_backend(args, argv, from_command_line)
    if status is not None:
        return status
    run(args)
    return 0
