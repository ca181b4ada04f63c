"""What every `keras-mim` subcommand shares: backends, argument types, help format."""

import argparse
import datetime
import importlib.util
import json
import math
import os
import tempfile

# Shows `(default: ...)` except for options whose default is None or False.
from keras_mim.compat import HelpFormatter  # noqa: F401  (the subcommands' formatter_class)

BACKENDS = ("tensorflow", "jax", "torch")


def parsed(cast, accept, expected):
    """An argparse `type`: `cast(text)` if `accept` holds for it, else '<expected>, got ...'."""

    def parse(text):
        try:
            value = cast(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"must be {expected}, got {text!r}")
        return value

    return parse


positive_int = parsed(int, lambda v: v >= 1, "a positive int")
non_negative_int = parsed(int, lambda v: v >= 0, "a non-negative int")
non_negative_float = parsed(float, lambda v: math.isfinite(v) and v >= 0, "a non-negative number")
positive_float = parsed(float, lambda v: math.isfinite(v) and v > 0, "a positive number")
ratio = parsed(float, lambda v: 0.0 <= v < 1.0, "a number in [0, 1)")


def add_backend_argument(parser, help_text=None):
    parser.add_argument(
        "--backend", choices=BACKENDS, default=None,
        help=help_text or "Keras backend; default: KERAS_BACKEND, else Keras' configured one. "
        "A different one restarts the command with KERAS_BACKEND set.",
    )


def add_jit_argument(parser):
    parser.add_argument(
        "--jit-compile", choices=("auto", "true", "false"), default="auto",
        help="compile the train step (XLA on TensorFlow/JAX, torch.compile on torch); 'auto': XLA "
        "on JAX and TensorFlow (also on a CPU-only machine, where it measured faster than graph "
        "mode), eager on torch and under a TensorFlow distribution strategy",
    )


def jit_compile_setting(choice, distributed=False):
    """The `jit_compile` that `model.compile` gets for `--jit-compile choice`.

    "auto" is XLA on JAX and on TensorFlow, also on a CPU-only TensorFlow where Keras' own
    "auto" stays in graph mode (XLA measured 1.19-1.38x faster there, see docs/speed.md,
    "Fast paths"); torch stays eager and a TensorFlow `tf.distribute` run keeps Keras' choice.
    """
    import keras

    if choice != "auto":
        return {"true": True, "false": False}[choice]
    backend = keras.backend.backend()
    if backend == "jax" or (backend == "tensorflow" and not distributed):
        return True
    return "auto"


def check_output(parser, args, command):
    """Default `args.output` to runs/<command>-YYYYmmdd-HHMMSS; refuse a file, or a
    non-empty folder unless `args.overwrite` (nothing the user made is lost silently)."""
    if args.output is None:
        args.output = os.path.join("runs", f"{command}-" + datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    output = os.path.abspath(args.output)
    if os.path.exists(output):
        if not os.path.isdir(output):
            parser.error(f"--output {args.output!r} exists and is not a folder")
        entries = os.listdir(output)
        if entries and not args.overwrite:
            parser.error(
                f"run folder {args.output!r} already exists and is not empty ({len(entries)} "
                "entries); choose another --output or pass --overwrite to replace this "
                "command's files in it"
            )
    check_writable(parser, output, "--output")


def check_writable(parser, folder, flag):
    """Exit 2 unless a folder can be created in `folder` (or its nearest existing parent):
    a run must not fail at its first write, after the data are loaded."""
    existing = folder
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        parser.error(f"{flag} {folder!r} cannot be created: {existing!r} is a file")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".keras-mim-probe-", dir=existing))
    except OSError as error:
        parser.error(f"{flag} {folder!r} is not writable ({existing!r}: {error.strerror or error})")


def check_backend_installed(parser, args):
    if args.backend is not None and importlib.util.find_spec(args.backend) is None:
        parser.error(f"--backend {args.backend}: the {args.backend!r} package is not installed")


def write_json(path, data):
    with open(path, "w") as f:
        json.dump(data, f, indent=2, sort_keys=False)
        f.write("\n")
