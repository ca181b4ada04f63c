"""What every `keras-mim` subcommand shares: the argument parser, backends, argument types,
help format, quiet backend logs.

Nothing here imports Keras or a backend: `keras-mim --help`, every subcommand's `--help`
and argument errors never import one (tests/test_cli_startup.py).
"""

import argparse
import datetime
import importlib.util
import json
import math
import os
import shutil
import sys
import tempfile
import textwrap

BACKENDS = ("tensorflow", "jax", "torch")
BACKEND_MODULES = BACKENDS + ("keras",)

#: Set before a backend is imported, unless the user set them or passed --verbose: TensorFlow's and
#: XLA's C++ info and warning lines (absl's "All log messages before absl::InitializeLog()",
#: cpu_feature_guard, "XLA service ... initialized", "Compiled cluster using XLA") are hidden
#: (measured: all of a `pretrain` run's on TensorFlow 2.21); errors still show. Not hidden: TensorFlow
#: 2.21's oneDNN notice ("oneDNN custom operations are on"), which it logs whatever this says on
#: CPUs where it turns oneDNN on by itself (AMX / AVX-512 VNNI; only TF_ENABLE_ONEDNN_OPTS=0, which
#: changes the kernels, silences it).
QUIET_LOGS = {"TF_CPP_MIN_LOG_LEVEL": "2"}

# Descriptions and epilogs are laid out by `ArgumentParser` (paragraphs wrapped, listings kept).
HelpFormatter = argparse.RawDescriptionHelpFormatter


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser with keras-mim's conventions (its subcommand parsers are of this class too):

    - an argument error prints two lines, `PROG: error: MESSAGE` and where the options are
      (not the whole usage), and exits with status 2;
    - an option's help ends with `(default: ...)` unless its default is None or False (its
      help then says what happens);
    - `option_names` lists every option string added (`--help` included);
    - description and epilog paragraphs (separated by blank lines) that hold no line break are
      wrapped to the terminal; the others (listings such as `help_listing`'s) are kept as written.
    """

    def __init__(self, *args, **kwargs):
        self.option_names = []  # every option string added, in order (argparse keeps no public list)
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
        self.description, self.epilog = fill_paragraphs(self.description), fill_paragraphs(self.epilog)

    def add_argument(self, *args, **kwargs):
        text, default = kwargs.get("help"), kwargs.get("default")
        shows_default = not (default is None or default is False or default is argparse.SUPPRESS)
        if args and args[0].startswith("-") and text and text is not argparse.SUPPRESS and shows_default \
                and "%(default)" not in text:
            kwargs["help"] = text + " (default: %(default)s)"
        action = super().add_argument(*args, **kwargs)
        self.option_names += action.option_strings
        return action

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\nrun '{self.prog} --help' for the options\n")


def help_width():
    """The width argparse formats help to (the terminal's, less 2 columns)."""
    return max(shutil.get_terminal_size().columns - 2, 40)


def fill_paragraphs(text):
    """`text` with each blank-line separated paragraph that holds no line break wrapped to
    `help_width()`; None stays None."""
    if not text:
        return text
    paragraphs = text.split("\n\n")
    return "\n\n".join(p if "\n" in p else textwrap.fill(p, help_width()) for p in paragraphs)


def help_listing(title, entries):
    """A help section: `title:`, then one `name: description` entry a line (wrapped under itself).

    Examples:
        >>> print(help_listing("methods", {"mae": "MAE: pixels.", "simmim": "SimMIM: L1."}))
        methods:
          mae:    MAE: pixels.
          simmim: SimMIM: L1.
    """
    pad = max(len(name) for name in entries) + 4
    lines = [f"{title}:"]
    for name, description in entries.items():
        lines.append(textwrap.fill(description, help_width(), initial_indent=f"  {name + ':':<{pad - 2}}",
                                   subsequent_indent=" " * pad, break_on_hyphens=False))
    return "\n".join(lines)


def quiet_backend_logs(verbose):
    """Unless `verbose`: hide the backends' C++ info lines (`QUIET_LOGS`), leaving any of these
    variables the user set alone. Only has an effect before a backend is imported."""
    if verbose or any(name in sys.modules for name in BACKEND_MODULES):
        return
    for name, value in QUIET_LOGS.items():
        os.environ.setdefault(name, value)


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
        help=help_text or "Keras backend; default: KERAS_BACKEND, else Keras' configured one "
        "(it is set before Keras is imported: no restart)",
    )


def add_verbose_argument(parser):
    """--verbose, which every subcommand takes (`keras_mim.cli.build_parser` adds it)."""
    parser.add_argument(
        "--verbose", action="store_true",
        help="show the backends' own log lines (TensorFlow's and XLA's C++ info and warnings), hidden "
        "by default unless TF_CPP_MIN_LOG_LEVEL is set",
    )


def add_jit_argument(parser):
    parser.add_argument(
        "--jit-compile", choices=("auto", "true", "false"), default="auto",
        help="compile the train step (XLA on TensorFlow/JAX, torch.compile on torch); 'auto': XLA "
        "on JAX and TensorFlow (also on a CPU-only machine, where it measured faster than graph "
        f"mode), except graph mode for a TensorFlow run of fewer than {AUTO_XLA_MIN_STEPS} steps (it starts sooner); "
        "eager on torch and under a TensorFlow distribution strategy",
    )


#: `--steps-per-execution auto`: training steps per call of the compiled step (capped at the
#: steps of an epoch) where Keras can run several (`one_step_per_call` says where it cannot);
#: measured on the demo's model in docs/speed.md ("Small models").
AUTO_STEPS_PER_EXECUTION = 8


def steps_per_execution_type(value):
    """argparse type of `--steps-per-execution`: "auto" or a positive int."""
    return value if value == "auto" else positive_int(value)


def add_steps_per_execution_argument(parser):
    parser.add_argument(
        "--steps-per-execution", type=steps_per_execution_type, default="auto", metavar="N|auto",
        help="training steps per call of the compiled step (Keras' steps_per_execution): the fit loop, "
        "callbacks and progress bar run once per N steps; results equal one step per call. 'auto': "
        "up to 8 on JAX and TensorFlow (at most the steps of an epoch), 1 on torch (Keras' only choice there)",
    )


def one_step_per_call(backend, distributed=False):
    """Why Keras can run only one training step per call on `backend` (None: it can run several):
    its torch trainer allows no more, and under a TensorFlow distribution strategy its multi-step
    loop fails (Keras 3.15: "You must feed a value for placeholder tensor" in
    `multi_step_on_iterator`)."""
    if backend == "torch":
        return "Keras runs one training step per call on the torch backend"
    if backend == "tensorflow" and distributed:
        return "Keras' multi-step loop fails under a TensorFlow distribution strategy (--distribute)"
    return None


def check_steps_per_execution(parser, args):
    """--steps-per-execution N > 1 is refused where `one_step_per_call` gives a reason."""
    import keras

    reason = one_step_per_call(args.backend or keras.backend.backend(), getattr(args, "distribute", "none") != "none")
    if args.steps_per_execution not in ("auto", 1) and reason:
        parser.error(f"--steps-per-execution {args.steps_per_execution}: {reason}; use 1 or auto")


def steps_per_execution_setting(choice, steps_per_epoch, backend=None, distributed=False):
    """The `steps_per_execution` that `model.compile` gets for `--steps-per-execution choice`,
    with `steps_per_epoch` training steps an epoch, on `backend` (default: Keras' backend);
    "auto" is 1 where `one_step_per_call` gives a reason (`distributed`: under a distribution
    strategy).

    Examples:
        >>> steps_per_execution_setting(4, 100), steps_per_execution_setting("auto", 3, backend="jax")
        (4, 3)
        >>> steps_per_execution_setting("auto", 100, backend="jax"), steps_per_execution_setting("auto", 100, backend="torch")
        (8, 1)
        >>> steps_per_execution_setting("auto", 100, backend="tensorflow", distributed=True)
        1
    """
    if choice != "auto":
        return choice
    if backend is None:
        import keras

        backend = keras.backend.backend()
    if one_step_per_call(backend, distributed):
        return 1
    return max(1, min(steps_per_epoch, AUTO_STEPS_PER_EXECUTION))


#: `--jit-compile auto` on TensorFlow: XLA from this many training steps on, graph mode below.
#: XLA costs more to compile than graph mode costs to trace (the demo's model: first epoch
#: 28.9 s against 17.5 s) and pays it back per step: 0.26 s an epoch of 45 steps there (a
#: break-even near 2000 steps), 0.25 s a step on the tiny config (break-even within 100).
#: docs/speed.md, "Compile time".
AUTO_XLA_MIN_STEPS = 500


def jit_compile_setting(choice, distributed=False, expected_steps=None):
    """The `jit_compile` that `model.compile` gets for `--jit-compile choice`.

    "auto" is XLA on JAX and on TensorFlow, also on a CPU-only TensorFlow where Keras' own
    "auto" stays in graph mode (XLA measured 1.19-1.38x faster there, see docs/speed.md,
    "Fast paths"), unless the run is short: with fewer than `AUTO_XLA_MIN_STEPS`
    `expected_steps` (None: unknown) TensorFlow runs in graph mode, which starts sooner. Torch
    stays eager (`torch.compile`'s warm-up paid back only after ~4000 steps of the demo's
    model, docs/speed.md) and a TensorFlow
    `tf.distribute` run keeps Keras' choice.

    Examples:
        >>> jit_compile_setting("true"), jit_compile_setting("false")
        (True, False)
    """
    import keras

    if choice != "auto":
        return {"true": True, "false": False}[choice]
    backend = keras.backend.backend()
    short = expected_steps is not None and expected_steps < AUTO_XLA_MIN_STEPS
    if backend == "tensorflow" and not distributed and short:
        return False
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
