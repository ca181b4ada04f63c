"""What keeps a `keras-mim pretrain` run folder resumable through Ctrl-C, a kill, a full disk
and a second process: the per-epoch checkpoints, their restore, and the run lock.

Checkpoints. At each epoch's end the model (weights, optimizer state, step count) is saved
with `model.save` to `checkpoints/.epochNNNN.partial.keras`, flushed to disk and renamed
`checkpoints/epochNNNN.keras` (NNNN: the epochs it holds, counted from 1); then
`checkpoints/last.keras` is pointed at it (a hard link, a copy where links fail) and the
previous epoch's file is removed. A rename is atomic, so a file under its real name is
complete and its name says which epoch it holds: a run stopped at any moment keeps the
previous complete checkpoint. `--resume` loads the newest one that loads, saying so when it
skips an incomplete or unreadable file, and goes on after its epoch.

Why not `keras.callbacks.BackupAndRestore` (used before): it rewrites `latest.weights.h5`
in place, then the epoch into a separate JSON file. A Ctrl-C while it saved left a truncated
weights file that failed to load with a `ValueError` ("A total of 45 objects could not be
loaded"), which its `double_checkpoint` fallback does not catch (it catches `OSError`), and
a kill between the two files paired new weights with the old epoch. It also writes the HDF5
file through HDF5's own file driver: on a full disk that printed hundreds of HDF5 error
stacks and then crashed the process. `model.save` to a `.keras` file builds the HDF5 weights
in memory (when they fit, Keras' own check) and writes through Python's `zipfile`, so a
full disk is an ordinary `OSError`; a free-space check before each save (the size of the
previous checkpoint, or of the variables) stops the run before HDF5 could meet a full disk
in the other case.

Ctrl-C. A SIGINT raises `KeyboardInterrupt` wherever the main thread is, and one that lands
while TensorFlow or JAX code checks for signals can be lost there (seen on JAX: some
presses did not stop the run); `ctrl_c` also records the press, and its callback raises at
the next batch's end, so a run always stops within a batch of Ctrl-C.

The run lock. `RUN/.lock` holds the process id and command line of the run training in
the folder, under an exclusive `fcntl.flock`: a second run in the folder (`--resume`, or
`--overwrite`) refuses at once, naming that process; the kernel drops the lock when its
process ends however it ends, so a lock file left behind is taken over (with a message).
Where `fcntl` is missing (Windows) the file is written but not enforced.
"""

import contextlib
import errno
import math
import os
import shlex
import shutil
import signal
import sys
import threading

from keras_mim.cli.run_folder import (
    CHECKPOINT_FILE,
    CHECKPOINTS,
    LAST_CHECKPOINT,
    LEGACY_BACKUP,
)

try:
    import fcntl
except ImportError:  # Windows: no advisory locks
    fcntl = None

LOCK = ".lock"
DISK_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))  # the errnos of a full disk or quota


class CheckpointError(RuntimeError):
    """A checkpoint could not be written (a full disk) or no checkpoint can be loaded; the
    message names the path, what it needs where known, and what is kept."""


def checkpoint_path(output, epoch):
    return os.path.join(output, CHECKPOINTS, f"epoch{epoch:04d}.keras")


def checkpoints(output):
    """[(epoch, path)] of the complete checkpoints in RUN/checkpoints, newest first."""
    folder = os.path.join(output, CHECKPOINTS)
    found = [(int(m.group(1)), os.path.join(folder, name))
             for name in (os.listdir(folder) if os.path.isdir(folder) else ())
             for m in [CHECKPOINT_FILE.match(name)] if m]
    return sorted(found, reverse=True)


def partial_files(output):
    """Files a run stopped while writing them left in RUN/checkpoints."""
    folder = os.path.join(output, CHECKPOINTS)
    return [os.path.join(folder, name) for name in (os.listdir(folder) if os.path.isdir(folder) else ())
            if name.startswith(".") and name.endswith(".partial.keras")]


def resume_command(output):
    return f"keras-mim pretrain --resume {shlex.quote(output)}"


def latest_epoch(output):
    """The epoch of the newest complete checkpoint (0: none)."""
    found = checkpoints(output)
    return found[0][0] if found else 0


def kept(output):
    """What a stopped run keeps, as a phrase."""
    found = checkpoints(output)
    if not found:
        return "no epoch was complete, so there is no checkpoint"
    return f"the checkpoint of epoch {found[0][0]}, the last complete one, is kept ({found[0][1]})"


def save_model(model, path):
    """`model.save(path)`, flushed to the disk (the tests replace it to stop a save midway)."""
    model.save(path)
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _variables_size(model):
    """The bytes of the model's and the optimizer's variables (a first checkpoint's size)."""
    import numpy as np

    def itemsize(dtype):
        try:
            return np.dtype(dtype).itemsize
        except TypeError:  # bfloat16
            return 2

    variables = list(model.variables) + list(getattr(model.optimizer, "variables", None) or [])
    return sum(math.prod(v.shape) * itemsize(v.dtype) for v in variables)


def _mb(size):
    return f"{size / 2**20:.1f} MB"


def _remove(path):
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


def _link_or_copy(source, target):
    """`target` becomes `source`'s content atomically (a hard link, or a copy)."""
    partial = os.path.join(os.path.dirname(target), ".last.partial.keras")
    _remove(partial)
    try:
        try:
            os.link(source, partial)
        except OSError:  # a file system without hard links
            shutil.copyfile(source, partial)
        os.replace(partial, target)
    finally:
        _remove(partial)


def write_checkpoint(model, output, epoch):
    """Save the checkpoint of `epoch` (counted from 1) atomically, keeping the previous one
    until it is complete. Raises `CheckpointError` (nothing half-written left) if the disk
    has too little space or a write fails; a `KeyboardInterrupt` also leaves no partial file."""
    folder = os.path.join(output, CHECKPOINTS)
    os.makedirs(folder, exist_ok=True)
    path = checkpoint_path(output, epoch)
    previous = checkpoints(output)
    needed = os.path.getsize(previous[0][1]) if previous else _variables_size(model)
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise CheckpointError(f"no space left on the device for the checkpoint of epoch {epoch} in {folder}: it "
                              f"needs about {_mb(needed)}, {_mb(free)} are free; {kept(output)}. Free some "
                              f"space, then continue with: {resume_command(output)}")
    partial = os.path.join(folder, f".epoch{epoch:04d}.partial.keras")
    try:
        save_model(model, partial)
        os.replace(partial, path)
        _link_or_copy(path, os.path.join(output, LAST_CHECKPOINT))
    except OSError as error:
        raise CheckpointError(f"cannot write the checkpoint of epoch {epoch} to {path} "
                              f"({error.strerror or error}; it needs about {_mb(needed)}); {kept(output)}. "
                              f"{'Free some space' if error.errno in DISK_FULL else 'Fix that'}, then continue "
                              f"with: {resume_command(output)}") from None
    finally:
        _remove(partial)
    for done, old in previous:
        if done != epoch:
            _remove(old)


def checkpoint_callback(output):
    """The callback that writes `write_checkpoint` at every epoch's end."""
    import keras

    class EpochCheckpoint(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            write_checkpoint(self.model, output, epoch + 1)

    return EpochCheckpoint()


def restore(model, output):
    """Load the newest checkpoint of RUN that loads into the compiled, built `model`
    (weights, optimizer state, step count); returns (its epoch, its path), or (0, None) when
    no epoch was complete. Incomplete files are removed and unreadable ones skipped, each
    with a printed line; raises `CheckpointError` if checkpoints exist but none loads."""
    for path in partial_files(output):
        print(f"keras-mim: ignoring {path}: the run stopped while writing it", flush=True)
        _remove(path)
    found = checkpoints(output)
    if not found:
        if os.path.isdir(os.path.join(output, LEGACY_BACKUP)):
            raise CheckpointError(f"{os.path.join(output, LEGACY_BACKUP)} was written by an earlier keras-mim "
                                  "(keras.callbacks.BackupAndRestore); resume this run with that version")
        return 0, None
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    failures = []
    for epoch, path in found:
        try:
            model.load_weights(path)
        except Exception as error:  # a damaged file: zipfile, HDF5 and Keras raise various errors
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            failures.append(f"{path}: {reason}")
            print(f"keras-mim: the checkpoint {path} cannot be loaded ({reason[:200]}); trying an earlier one",
                  file=sys.stderr, flush=True)
            continue
        return epoch, path
    raise CheckpointError("no checkpoint of the run can be loaded (" + "; ".join(failures)[:500] + "); start it "
                          "again with --overwrite")


class CtrlC:
    """While entered (in the main thread, where SIGINT raises `KeyboardInterrupt`): records
    each Ctrl-C, so that `check()` and `callback()` raise `KeyboardInterrupt` again after
    one that was swallowed."""

    def __init__(self):
        self.pressed = False
        self._previous = None

    def __enter__(self):
        self.pressed = False
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def _handler(self, signum, frame):
        self.pressed = True
        raise KeyboardInterrupt

    def check(self):
        """Raise `KeyboardInterrupt` if Ctrl-C was pressed."""
        if self.pressed:
            raise KeyboardInterrupt

    def callback(self):
        """A callback that calls `check` after every batch and before every epoch."""
        import keras

        check = self.check

        class StopOnCtrlC(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                check()

            def on_epoch_begin(self, epoch, logs=None):
                check()

        return StopOnCtrlC()


ctrl_c = CtrlC()


@contextlib.contextmanager
def run_lock(output, command):
    """Hold RUN/.lock while training; refuse (exit status 2, one line naming the process that
    holds it and the lock file) if another process holds it. Creates RUN if missing (and
    removes it again if it is still empty at the end)."""
    created = not os.path.isdir(output)
    os.makedirs(output, exist_ok=True)
    path = os.path.join(output, LOCK)
    fd = _acquire(path)
    try:
        previous = os.read(fd, 4096).decode(errors="replace").split("\n")
        if previous[0].strip() and previous[0].strip() != str(os.getpid()):
            print(f"keras-mim: taking over the lock {path} of process {previous[0].strip()}, which has ended",
                  flush=True)
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{os.getpid()}\n{command}\n".encode())
        yield path
    finally:
        _remove(path)
        os.close(fd)
        if created:
            with contextlib.suppress(OSError):
                os.rmdir(output)  # only if empty: a run stopped before writing anything


def _acquire(path):
    """An open descriptor of `path` under an exclusive lock (retried if the file was replaced
    between the open and the lock)."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is None:
            return fd
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 4096).decode(errors="replace").split("\n")
            os.close(fd)
            pid = holder[0].strip() or "?"
            command = holder[1].strip() if len(holder) > 1 else ""
            print(f"keras-mim pretrain: error: run folder {os.path.dirname(path)} is in use by process {pid}"
                  + (f" ({command})" if command else "") + f"; lock file {path}. Wait for that run to end "
                  "or stop it, then try again", file=sys.stderr, flush=True)
            raise SystemExit(2) from None
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # released and removed by its holder meanwhile: lock the new file
