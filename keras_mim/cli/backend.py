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

#: Where `keras-mim` keeps compiled programs between runs: a folder, or "off". Default: the
#: user's cache folder ($XDG_CACHE_HOME or ~/.cache)/keras_mim/compile.
COMPILE_CACHE_ENV = "KERAS_MIM_COMPILE_CACHE"
TF_CACHE_FLAG = "--tf_xla_persistent_cache_directory"


def compile_cache_folder(environ=os.environ):
    """The compile cache folder that `KERAS_MIM_COMPILE_CACHE` in `environ` names (None: "off").

    Examples:
        >>> compile_cache_folder({"KERAS_MIM_COMPILE_CACHE": "off"}) is None
        True
        >>> compile_cache_folder({"XDG_CACHE_HOME": "/cache"})
        '/cache/keras_mim/compile'
    """
    value = environ.get(COMPILE_CACHE_ENV, "")
    if value == "off":
        return None
    if value:
        return os.path.abspath(value)
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "keras_mim", "compile")


def use_compile_cache():
    """Keep compiled training steps between runs, so that a second run of the same model and
    batch skips most of its compile time: JAX's persistent compilation cache
    (`JAX_COMPILATION_CACHE_DIR`) and XLA's on TensorFlow (`TF_XLA_FLAGS`
    `--tf_xla_persistent_cache_directory`), both set through the environment before the backend
    is imported (so no backend import here); torch runs eagerly and has nothing to keep. A
    variable the user set already wins. Returns the folder, or None when off or too late (a
    backend already imported, e.g. `main(argv)` called from a notebook).
    """
    folder = compile_cache_folder()
    if folder is None or "jax" in sys.modules or "tensorflow" in sys.modules:
        return None
    try:
        os.makedirs(os.path.join(folder, "jax"), exist_ok=True)
        os.makedirs(os.path.join(folder, "tensorflow"), exist_ok=True)
    except OSError:  # a read-only home: compile as before
        return None
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(folder, "jax"))
    flags = os.environ.get("TF_XLA_FLAGS", "")
    if TF_CACHE_FLAG not in flags:
        os.environ["TF_XLA_FLAGS"] = f"{flags} {TF_CACHE_FLAG}={os.path.join(folder, 'tensorflow')}".strip()
    return folder


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
