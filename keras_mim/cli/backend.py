"""Switching the Keras backend of a running command (Keras fixes it at first import)."""

import os
import subprocess
import sys

REEXEC_ENV = "KERAS_MIM_CLI_REEXEC"


def switch_backend(args, argv, from_command_line):
    """Restart with `KERAS_BACKEND=args.backend` if it differs from the running backend.

    Returns None when no restart is needed, else the child's exit status (only when
    `main` was called with an explicit `argv`; from the command line the process is
    replaced and this never returns)."""
    import keras

    current = keras.backend.backend()
    if args.backend is None or args.backend == current:
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


