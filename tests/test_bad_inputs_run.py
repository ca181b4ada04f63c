"""The run-folder part of the bad-input catalogue (see tests/test_bad_inputs.py): a
`keras-mim pretrain` run stopped or disturbed while it trains. Ctrl-C in an epoch or while a
checkpoint is written, a full disk, a second process on the same folder, a lock left by a
process that ended.

Each case checks the exit status, one message naming the path or process, that the run
folder stays resumable (a resume finishes, the earlier epochs' files unchanged), and that
the user's other files in the working folder are byte for byte as they were. Ctrl-C and the
full disk are raised in-process at the right moment (cheap); one test sends a real SIGINT to
a training process, and checks on the way that a second run refuses its folder.
"""

import csv
import errno
import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from keras_mim import cli
from keras_mim.cli import pretrain_checkpoints
from tests.test_bad_inputs import _snapshot, workspace  # noqa: F401 (`workspace` is the fixture)
from tests.test_cli import REPO_ROOT

pytestmark = pytest.mark.one_backend  # end to end: one pass of a CI run runs each test (tests/conftest.py)

RUN_CASES = [
    "Ctrl-C during training",  # a real SIGINT to a training process
    "a second run while one trains in the folder",  # the same process, as it trains
    "--resume of a run another process holds",
    "--overwrite into a folder another process holds",
    "a lock left by a process that ended",
    "a Ctrl-C swallowed by library code",  # seen on JAX
    "Ctrl-C while a checkpoint is written",
    "a damaged newest checkpoint and a half-written one",  # the resume after the Ctrl-C above
    "disk full while a checkpoint is written",
    "too little free space for the next checkpoint",
]
TWO_EPOCHS = ["--epochs", "2", "--num-images", "32", "--batch-size", "16", "--preset", "mae_vit_test"]


def _others(workspace, run):
    """The snapshot of the working folder without the run folder `run` (a path under it)."""
    name = os.path.relpath(run, workspace)
    return {k: v for k, v in _snapshot(workspace).items() if k != name and not k.startswith(name + os.sep)}


def _rows(run):
    with open(os.path.join(run, "history.csv"), newline="") as f:
        return list(csv.DictReader(f))


def _epoch_files(run, done):
    """The files that must not change once epoch `done` is checkpointed: settings, the
    figures and history rows of epochs 1..done."""
    files = {k: v for k, v in _snapshot(run).items() if k == "config.json" or k.startswith("figures" + os.sep)
             and not os.path.basename(k).startswith(".") and int(k[-8:-4]) <= done}
    files["rows"] = [row for row in _rows(run) if int(row["epoch"]) <= done]
    return files


def _check_resumed(run, done, before, out, epochs=2):
    """A resume after epoch `done` finished the run: one row per epoch (1-based) with the
    resumed epochs' losses, in history.json too, and the earlier epochs' files unchanged."""
    assert f"resuming after epoch {done} of {epochs}" in out
    rows = _rows(run)
    assert [int(row["epoch"]) for row in rows] == list(range(1, epochs + 1))
    assert list(rows[0]) == ["epoch", "loss", "epoch_time_s"]  # no empty val_* column
    history = json.loads((run / "history.json").read_text())
    assert history["loss"] == [float(row["loss"]) for row in rows] and np.all(np.isfinite(history["loss"]))
    assert history["resumed_after_epochs"] == [done]
    assert _epoch_files(run, done) == before
    assert sorted(os.listdir(run / "figures")) == [f"reconstruction_epoch{e:04d}.png" for e in range(1, epochs + 1)]
    assert sorted(os.listdir(run / "checkpoints")) == ["last.keras", "resumes.jsonl"]
    assert not (run / ".lock").exists()


def _stop_saving_at(monkeypatch, epoch, error):
    """Make the save of epoch `epoch`'s checkpoint write a few bytes, then raise `error`;
    returns {"kept": the bytes of the previous checkpoint at that moment}."""
    real, seen = pretrain_checkpoints.save_model, {}

    def save(model, path):
        if f".epoch{epoch:04d}." not in path:
            return real(model, path)
        seen["kept"] = _snapshot(os.path.dirname(path))
        with open(path, "wb") as f:
            f.write(b"PK\x03\x04" + bytes(1000))
        raise error

    monkeypatch.setattr(pretrain_checkpoints, "save_model", save)
    return seen


@pytest.fixture
def python_sigint():
    """Python's own SIGINT handler for the test (a pytest-xdist worker runs with another one,
    as a process started by a shell script may): what a `keras-mim` command starts with."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_a_swallowed_ctrl_c_stops_the_run_at_the_next_batch(python_sigint):
    callback = pretrain_checkpoints.ctrl_c.callback()
    with pretrain_checkpoints.ctrl_c:
        callback.on_train_batch_end(0)  # nothing pressed: training goes on
        try:  # library code that catches everything, as some C++ bindings do
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:
            pass
        with pytest.raises(KeyboardInterrupt):
            callback.on_train_batch_end(1)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def test_ctrl_c_while_a_checkpoint_is_written_then_resume_falls_back(workspace, monkeypatch, capsys):
    run = workspace / "runs" / "new"
    before = _others(workspace, run)
    _stop_saving_at(monkeypatch, 2, KeyboardInterrupt())
    with pytest.raises(SystemExit) as stop:
        cli.main(["pretrain", *TWO_EPOCHS, "--output", "runs/new"])
    assert stop.value.code == 130
    out, err = capsys.readouterr()
    assert "keras-mim: building mae on mae_vit_test ..." in out  # progress before the silent parts
    compiled = keras.backend.backend() != "torch"  # torch's train step runs eagerly: no compilation
    assert ("keras-mim: compiling the training step; the first epoch may take a minute ..." in out) == compiled
    assert err.strip() == (f"keras-mim pretrain: interrupted; epoch 1 of 2 is the last complete one "
                           f"({run / 'checkpoints' / 'epoch0001.keras'}). Continue the run with: "
                           f"keras-mim pretrain --resume {run}")
    assert sorted(os.listdir(run / "checkpoints")) == ["epoch0001.keras", "last.keras"]  # no partial file
    assert not (run / ".lock").exists() and [r["epoch"] for r in _rows(run)] == ["1", "2"]
    epoch1 = _epoch_files(run, 1)

    # What a disk error and a kill could leave: a damaged newest checkpoint, a half-written one.
    monkeypatch.undo()
    monkeypatch.chdir(workspace)
    (run / "checkpoints" / "epoch0002.keras").write_bytes(b"PK\x03\x04 damaged")
    (run / "checkpoints" / ".epoch0003.partial.keras").write_bytes(b"PK\x03\x04")
    assert cli.main(["pretrain", "--resume", "runs/new"]) == 0
    out, err = capsys.readouterr()
    assert f"ignoring {run / 'checkpoints' / '.epoch0003.partial.keras'}: the run stopped while writing it" in out
    assert f"the checkpoint {run / 'checkpoints' / 'epoch0002.keras'} cannot be loaded" in err
    assert f"weights, optimizer state and step count from {run / 'checkpoints' / 'epoch0001.keras'}" in out
    assert "epoch(s) 2 were recorded in history.csv but not checkpointed" in out
    _check_resumed(run, 1, epoch1, out)
    assert int(keras.saving.load_model(run / "model.keras").optimizer.iterations) == 4  # 2 epochs x 2 steps
    assert _others(workspace, run) == before


def test_disk_full_while_a_checkpoint_is_written(workspace, monkeypatch, capsys):
    run = workspace / "runs" / "new"
    before = _others(workspace, run)
    seen = _stop_saving_at(monkeypatch, 2, OSError(errno.ENOSPC, "No space left on device"))
    with pytest.raises(SystemExit) as stop:
        cli.main(["pretrain", *TWO_EPOCHS, "--output", "runs/new"])
    assert stop.value.code == 1
    err = capsys.readouterr().err
    checkpoint = run / "checkpoints" / "epoch0001.keras"
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and "HDF5" not in err
    assert err.startswith(f"keras-mim pretrain: error: cannot write the checkpoint of epoch 2 to "
                          f"{run / 'checkpoints' / 'epoch0002.keras'} (No space left on device; it needs about ")
    assert f"the checkpoint of epoch 1, the last complete one, is kept ({checkpoint})" in err
    assert f"continue with: keras-mim pretrain --resume {run}" in err
    assert _snapshot(run / "checkpoints") == seen["kept"]  # epoch 1's checkpoint byte for byte, no partial
    assert not (run / "model.keras").exists() and not (run / "history.json").exists()
    assert not (run / ".lock").exists()
    assert _others(workspace, run) == before


def test_too_little_space_for_the_next_checkpoint_stops_before_writing(tmp_path, monkeypatch):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    model.optimizer.build(model.trainable_variables)
    pretrain_checkpoints.write_checkpoint(model, str(tmp_path), 1)
    before = _snapshot(tmp_path)
    size = os.path.getsize(tmp_path / "checkpoints" / "epoch0001.keras")
    monkeypatch.setattr(pretrain_checkpoints.shutil, "disk_usage", lambda path: type("U", (), {"free": 10})())
    with pytest.raises(pretrain_checkpoints.CheckpointError) as error:
        pretrain_checkpoints.write_checkpoint(model, str(tmp_path), 2)
    assert str(error.value) == (
        f"no space left on the device for the checkpoint of epoch 2 in {tmp_path / 'checkpoints'}: it needs about "
        f"{size / 2**20:.1f} MB, 0.0 MB are free; the checkpoint of epoch 1, the last complete one, is kept "
        f"({tmp_path / 'checkpoints' / 'epoch0001.keras'}). Free some space, then continue with: "
        f"keras-mim pretrain --resume {tmp_path}")
    assert _snapshot(tmp_path) == before


def _fake_run(folder):
    folder.mkdir(parents=True)
    args = {"preset": "mae_vit_test", "epochs": 1, "num_images": 32, "batch_size": 16}
    (folder / "config.json").write_text(json.dumps({"command": "pretrain", "args": args}))
    return folder


@pytest.mark.parametrize("argv", [["--resume", "runs/held"], [*TWO_EPOCHS, "--output", "runs/held", "--overwrite"]],
                         ids=["resume", "overwrite"])
def test_a_second_run_refuses_a_folder_another_process_holds(argv, workspace, monkeypatch, capsys):
    run = _fake_run(workspace / "runs" / "held")
    monkeypatch.setattr("keras_mim.cli.pretrain_run._run_pretrain", lambda args: pytest.fail("training started"))
    with pretrain_checkpoints.run_lock(str(run), "keras-mim pretrain --output runs/held"):
        before = _snapshot(workspace)
        with pytest.raises(SystemExit) as stop:
            cli.main(["pretrain", *argv])
        assert _snapshot(workspace) == before
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip() == (
        f"keras-mim pretrain: error: run folder {run} is in use by process {os.getpid()} (keras-mim pretrain "
        f"--output runs/held); lock file {run / '.lock'}. Wait for that run to end or stop it, then try again")
    assert sorted(os.listdir(run)) == ["config.json"]  # the lock is gone with its holder


def test_a_lock_left_by_an_ended_process_is_taken_over(workspace, monkeypatch, capsys):
    run = _fake_run(workspace / "runs" / "old")
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                           check=True)
    (run / ".lock").write_text(f"{ended.stdout.strip()}\nkeras-mim pretrain --output runs/old\n")
    before = _others(workspace, run)
    seen = []
    monkeypatch.setattr("keras_mim.cli.pretrain_run._run_pretrain",
                        lambda args: seen.append((run / ".lock").read_text()))
    assert cli.main(["pretrain", "--resume", "runs/old"]) == 0
    assert (f"taking over the lock {run / '.lock'} of process {ended.stdout.strip()}, which has ended"
            in capsys.readouterr().out)
    assert seen == [f"{os.getpid()}\nkeras-mim pretrain --resume runs/old\n"]
    assert sorted(os.listdir(run)) == ["config.json"] and _others(workspace, run) == before


# `python -m keras_mim.cli ...` with Ctrl-C's KeyboardInterrupt, also where this process has
# SIGINT ignored (a background job) and its children would inherit that.
INTERRUPTIBLE_CLI = ("import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
                     "sys.argv = sys.argv[1:]; runpy.run_module('keras_mim.cli', run_name='__main__')")


def test_ctrl_c_during_training_leaves_the_run_resumable(workspace, capsys):
    run = workspace / "runs" / "sigint"
    before = _others(workspace, run)
    env = dict(os.environ, KERAS_BACKEND=keras.backend.backend(), TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=str(REPO_ROOT))
    log_path = workspace.parent / f"{workspace.name}-log.txt"  # outside the snapshots
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, "-c", INTERRUPTIBLE_CLI, "keras-mim", "pretrain", *TWO_EPOCHS,
                                    "--output", str(run)], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 600  # generous: a loaded 2-core machine
            while pretrain_checkpoints.latest_epoch(str(run)) < 1:  # one complete epoch checkpointed
                assert process.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, "no epoch finished in time"
                time.sleep(0.01)
            process.send_signal(signal.SIGSTOP)  # held in epoch 2, whatever the machine's load
            # A second run in the folder refuses at once, naming the process that trains there.
            with pytest.raises(SystemExit) as second:
                cli.main(["pretrain", "--resume", str(run)])
            assert second.value.code == 2
            assert f"run folder {run} is in use by process {process.pid} " in capsys.readouterr().err
            process.send_signal(signal.SIGINT)
            process.send_signal(signal.SIGCONT)
            assert process.wait(timeout=120) == 130
        finally:
            if process.poll() is None:
                process.kill()
    log = log_path.read_text()
    assert pretrain_checkpoints.latest_epoch(str(run)) == 1 and "Traceback" not in log, log
    assert (f"keras-mim pretrain: interrupted; epoch 1 of 2 is the last complete one "
            f"({run / 'checkpoints' / 'epoch0001.keras'}). Continue the run with: "
            f"keras-mim pretrain --resume {run}") in log
    assert "keras-mim: building mae on mae_vit_test ..." in log
    assert not (run / ".lock").exists() and not (run / "history.json").exists()
    earlier = _epoch_files(run, 1)

    assert cli.main(["pretrain", "--resume", str(run)]) == 0
    _check_resumed(run, 1, earlier, capsys.readouterr().out)
    assert _others(workspace, run) == before


def test_catalogue_lists_distinct_cases():
    assert len(set(RUN_CASES)) == len(RUN_CASES) >= 8
