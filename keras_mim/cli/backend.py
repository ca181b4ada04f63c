"""Choosing the Keras backend of a command (Keras fixes it when it is first imported).

`--backend X` sets `KERAS_BACKEND=X` before anything imports Keras (`select_backend`), so
the command runs on X in its own process. Only when Keras is already imported on another
backend (`keras_mim.cli.main(argv)` called from a notebook or a test) does the command
restart on X (`switch_backend`): `os.execve` from the command line, else a child process
whose exit status `main` returns, so the calling process is not replaced.
"""

import os
import subprocess
import sys

from keras_mim.cli.common import check_backend_installed

REEXEC_ENV = "KERAS_MIM_CLI_REEXEC"


def select_backend(parser, args):
    """Make `args.backend` the backend Keras will load, if Keras is not imported yet.

    Exits with status 2 (`parser.error`) if the backend's package is not installed. Call it
    again once `args.backend` may have changed (read from a run's settings), before Keras
    is imported."""
    if args.backend is None:
        return
    check_backend_installed(parser, args)
    if "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = args.backend


def switch_backend(args, argv, from_command_line):
    """Restart with `KERAS_BACKEND=args.backend` if Keras already runs another backend.

    Returns None when no restart is needed, else the child's exit status (only when
    `main` was called with an explicit `argv`; from the command line the process is
    replaced and this never returns)."""
    if args.backend is None or "keras" not in sys.modules:
        return None  # Keras will load the backend select_backend set
    import keras

    current = keras.backend.backend()
    if args.backend == current:
        return None
    if os.environ.get(REEXEC_ENV) == args.backend:
        # Restarted with KERAS_BACKEND set, yet Keras runs another backend.
        print(
            f"keras-mim: error: restarted with KERAS_BACKEND={args.backend} but Keras still "
            f"uses {current!r}.",
            file=sys.stderr,
        )
        return 1
    env = dict(os.environ, KERAS_BACKEND=args.backend, **{REEXEC_ENV: args.backend})
    command = [sys.executable, "-m", "keras_mim.cli", *argv]
    print(f"keras-mim: switching backend {current} -> {args.backend} (restarting the command)", flush=True)
    if from_command_line:
        sys.stderr.flush()
        os.execve(sys.executable, command, env)
    return subprocess.call(command, env=env)


def backend_version(name):
    module = sys.modules.get(name)  # already imported by Keras; never imported here
    return getattr(module, "__version__", None)
