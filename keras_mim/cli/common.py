"""What every `keras-mim` subcommand shares: backends, argument types, help format."""

import argparse
import math

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
positive_float = parsed(float, lambda v: math.isfinite(v) and v > 0, "a positive number")
ratio = parsed(float, lambda v: 0.0 <= v < 1.0, "a number in [0, 1)")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows `(default: ...)` except for options whose default is None or False
    (their help text says what happens)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def add_backend_argument(parser, help_text=None):
    parser.add_argument(
        "--backend", choices=BACKENDS, default=None,
        help=help_text or "Keras backend; default: KERAS_BACKEND, else Keras' configured one. "
        "A different one restarts the command with KERAS_BACKEND set.",
    )
