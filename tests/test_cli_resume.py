"""keras-mim pretrain's run folder: --resume after a SIGKILL, --config, a non-finite loss."""

import csv
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
from keras_mim.cli import run_folder
from keras_mim.cli.pretrain_checkpoints import latest_epoch
from tests.test_cli import REPO_ROOT, TINY, _snapshot

pytestmark = pytest.mark.one_backend  # end to end: one pass of a CI run runs each test (tests/conftest.py);
# the per-backend parts (each method's fit, saving, the data pipelines) are tested on every backend

EPOCHS = 4
STEPS = 256  # 1024 images / batch 4: long enough epochs to be killed in the middle of one
KILLED_RUN = ["--epochs", str(EPOCHS), "--num-images", "1024", "--batch-size", "4", "--preset", "mae_vit_test",
              "--figure-every", "1", "--seed", "1"]


def _backup_epoch(run):
    """The epoch of the newest complete checkpoint (checkpoints/epochNNNN.keras; 0: none)."""
    return latest_epoch(str(run))


def _csv_epochs(run):
    with open(run / "history.csv", newline="") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


@pytest.mark.slow
@pytest.mark.one_backend(backend="jax")  # one CI pass, the fastest for this run
def test_sigkill_mid_epoch_then_resume(tmp_path, capsys):
    run = tmp_path / "run"
    env = dict(os.environ, KERAS_BACKEND=keras.backend.backend(), TF_CPP_MIN_LOG_LEVEL="3")
    log = open(tmp_path / "log.txt", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "keras_mim.cli", "pretrain", *KILLED_RUN, "--output", str(run)],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
    )
    try:
        deadline = time.monotonic() + 900  # generous: a loaded 2-core machine
        while _backup_epoch(run) < 1:  # one complete epoch checkpointed
            assert process.poll() is None, (tmp_path / "log.txt").read_text()
            assert time.monotonic() < deadline, "no epoch finished in time"
            time.sleep(0.05)
        time.sleep(0.3)  # into the next epoch
        assert process.poll() is None, "the run finished before it could be killed"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
        log.close()
    done = _backup_epoch(run)
    assert 1 <= done < EPOCHS and not (run / "history.json").exists() and not (run / "model.keras").exists()
    # A row and a figure per checkpointed epoch (counted from 1); one more if the kill fell
    # between an epoch's row and its checkpoint (that epoch is trained again, its row and
    # figure replaced).
    rows = _csv_epochs(run)
    assert rows in (list(range(1, done + 1)), list(range(1, done + 2)))
    # (and the lock and a half-written file the kill left behind: --resume takes them over)
    before = {k: v for k, v in _snapshot(run).items()
              if not k.startswith("checkpoints") and not os.path.basename(k).startswith(".")}
    assert sorted(k for k in before if k.startswith("figures")) == [
        os.path.join("figures", f"reconstruction_epoch{e:04d}.png") for e in range(1, len(rows) + 1)]
    csv_lines = before.pop("history.csv").decode().splitlines(keepends=True)

    assert cli.main(["pretrain", "--resume", str(run)]) == 0
    assert f"resuming after epoch {done} of {EPOCHS}" in capsys.readouterr().out

    after = _snapshot(run)
    for name, data in before.items():  # nothing of the checkpointed epochs deleted or altered
        if not name.startswith("figures") or int(name[-8:-4]) <= done:
            assert after[name] == data, name
    assert after["history.csv"].decode().startswith("".join(csv_lines[:done + 1]))  # header and rows 1..done
    assert _csv_epochs(run) == list(range(1, EPOCHS + 1))  # each epoch once
    assert sorted(k for k in after if k.startswith("figures")) == [
        os.path.join("figures", f"reconstruction_epoch{e:04d}.png") for e in range(1, EPOCHS + 1)]
    history = json.loads((run / "history.json").read_text())
    assert len(history["loss"]) == EPOCHS and np.all(np.isfinite(history["loss"]))
    assert history["loss"] == run_folder.read_history(str(run))["loss"]  # the resumed epochs' too
    assert history["resumed_after_epochs"] == [done]
    # The optimizer's step count (hence the learning-rate schedule) went on from the backup:
    # restarted from 0 it would have counted (EPOCHS - done) * STEPS updates.
    model = keras.saving.load_model(run / "model.keras")
    assert int(model.optimizer.iterations) == EPOCHS * STEPS
    assert sorted(os.listdir(run / "checkpoints")) == ["last.keras", "resumes.jsonl"]  # epoch files dropped


def _fake_run(folder, complete=False, **args):
    folder.mkdir()
    args = {"preset": "mae_vit_test", "epochs": 1, "num_images": 32, "batch_size": 16, **args}
    (folder / "config.json").write_text(json.dumps({"command": "pretrain", "args": args}))
    if complete:
        (folder / "history.json").write_text("{}")
    return folder


def test_resume_of_a_complete_run_changes_nothing(tmp_path, capsys, monkeypatch):
    run = _fake_run(tmp_path / "run", complete=True)
    before = _snapshot(run)
    monkeypatch.setattr("keras_mim.cli.pretrain_run._run_pretrain", lambda args: pytest.fail("trained"))
    assert cli.main(["pretrain", "--resume", str(run)]) == 0
    assert "is already complete" in capsys.readouterr().out
    assert _snapshot(run) == before


@pytest.mark.parametrize("argv, message", [
    (["--resume", "{missing}"], "no such run folder"),
    (["--resume", "{empty}"], "the folder has no config.json"),
    (["--resume", "{run}", "--preset", "mae_vit_nano_patch2_16"],
     "--preset mae_vit_nano_patch2_16 conflicts with the recorded mae_vit_test"),
    (["--resume", "{run}", "--epochs", "3"], "--epochs 3 conflicts with the recorded 1"),
    (["--resume", "{run}", "--overwrite"], "cannot be combined with --overwrite"),
    (["--resume", "{run}", "--output", "{empty}"], "conflicts with --resume"),
    (["--resume", "{run}", "--config", "{run}/config.json"], "drop --config"),
    (["--resume", "{bad}"], "unknown key(s) 'colour'"),
])
def test_resume_errors_exit_2(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "run_pretrain", lambda args: pytest.fail("training started"))
    folders = {"missing": tmp_path / "missing", "empty": tmp_path / "empty", "run": _fake_run(tmp_path / "run"),
               "bad": _fake_run(tmp_path / "bad", colour="red")}
    (tmp_path / "empty").mkdir()
    before = _snapshot(tmp_path)
    with pytest.raises(SystemExit) as error:
        cli.main(["pretrain", *[a.format(**folders) for a in argv]])
    assert error.value.code == 2
    assert message in capsys.readouterr().err
    assert _snapshot(tmp_path) == before


def test_resume_with_agreeing_flags_is_accepted(tmp_path, monkeypatch):
    run = _fake_run(tmp_path / "run")
    seen = []
    monkeypatch.setattr(cli, "run_pretrain", seen.append)
    assert cli.main(["pretrain", "--resume", str(run), "--epochs", "1", "--preset", "mae_vit_test"]) == 0
    args = seen[0]
    assert (args.output, args.epochs, args.num_images, args.batch_size) == (str(run), 1, 32, 16)


def test_config_repeats_a_run_with_overrides(tmp_path, monkeypatch):
    run = tmp_path / "run"
    assert cli.main(["pretrain", *TINY, "--output", str(run), "--mask-ratio", "0.5", "--figure-every", "0"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["command_line"] == ("keras-mim pretrain " + " ".join(TINY) + f" --output {run} "
                                      "--mask-ratio 0.5 --figure-every 0")
    assert "--weight-decay 0.05" in config["resolved_command_line"]
    assert config["args"]["backend"] == keras.backend.backend()
    assert os.path.isdir(run / "checkpoints") and (run / "checkpoints" / "last.keras").exists()

    seen = []
    monkeypatch.setattr(cli, "run_pretrain", seen.append)
    new = tmp_path / "new"
    assert cli.main(["pretrain", "--config", str(run / "config.json"), "--output", str(new), "--seed", "7"]) == 0
    args = {k: v for k, v in vars(seen[0]).items() if k in config["args"]}
    expected = dict(config["args"], seed=7, output=str(new), config=str(run / "config.json"))
    assert args == expected
    # Without --output: a new folder, never the recorded one.
    seen.clear()
    monkeypatch.chdir(tmp_path)
    assert cli.main(["pretrain", "--config", str(run / "config.json")]) == 0
    assert os.path.dirname(seen[0].output) == "runs" and not seen[0].overwrite


@pytest.mark.parametrize("content, message", [
    ("{not json", "is not valid JSON"),
    ("[1, 2]", "must hold a JSON object of arguments"),
    ('{"epochs": 2, "colour": "red"}', "unknown key(s) 'colour'"),
    ('{"epochs": 0}', "epochs must be a positive int, got '0'"),
    ('{"dataset": "mnist"}', "dataset must be one of digits, photos, shapes"),
    ('{"overwrite": "yes"}', None),  # never inherited: accepted and ignored
    ('{"command": "finetune", "args": {}}', "records a 'finetune' run"),
    (None, "cannot read it"),
])
def test_config_bad_files_exit_2(content, message, tmp_path, capsys, monkeypatch):
    seen = []
    monkeypatch.setattr(cli, "run_pretrain", seen.append)
    path = tmp_path / "config.json"
    if content is not None:
        path.write_text(content)
    argv = ["pretrain", "--config", str(path), "--output", str(tmp_path / "out")]
    if message is None:
        assert cli.main(argv) == 0 and seen[0].overwrite is False
        return
    with pytest.raises(SystemExit) as error:
        cli.main(argv)
    assert error.value.code == 2
    err = capsys.readouterr().err
    assert "--config" in err and message in err
    assert not (tmp_path / "out").exists()


def test_non_finite_loss_stops_the_run_and_keeps_the_last_good_epoch(tmp_path, capsys):
    # A learning rate of 1e30 (reached after the first step's warmup) overflows the weights:
    # the first batch of epoch 2 has a NaN loss on every backend.
    run = tmp_path / "run"
    with pytest.raises(SystemExit) as error:
        cli.main(["pretrain", *TINY, "--epochs", "2", "--learning-rate", "1e30", "--output", str(run)])
    assert error.value.code == 1
    err = capsys.readouterr().err
    assert "keras-mim pretrain: error: the training loss became nan at epoch 2 of 2, batch 1 of 2" in err
    assert "learning rate" in err and "the checkpoint of epoch 1, the last complete one, is kept" in err
    assert not (run / "model.keras").exists() and not (run / "history.json").exists()
    assert _csv_epochs(run) == [1]
    assert _backup_epoch(run) == 1  # the checkpoint was neither deleted nor overwritten
    assert os.listdir(run / "figures") == ["reconstruction_epoch0001.png"]
    last = keras.saving.load_model(run / "checkpoints" / "last.keras")
    assert int(last.optimizer.iterations) == 2  # the weights after epoch 1 (2 steps)
    assert all(np.all(np.isfinite(keras.ops.convert_to_numpy(w))) for w in last.weights)


def test_history_rows_count_epochs_from_1_and_a_redone_epoch_replaces_its_row(tmp_path):
    # A stop after epoch 2's row, before its checkpoint: the resumed run trains epoch 2 again.
    (tmp_path / "history.csv").write_text("epoch,loss,epoch_time_s\n1,1.0,2.0\n2,0.5,2.0\n")
    logger = run_folder.history_logger(str(tmp_path))
    logger.set_model(keras.Sequential([keras.layers.Dense(1)]))
    for epoch, loss in ((1, 0.6), (2, 0.4)):  # Keras' 0-based epoch indices
        logger.on_epoch_end(epoch, {"loss": loss, "epoch_time_s": 1.5})
    assert (tmp_path / "history.csv").read_text() == (
        "epoch,loss,epoch_time_s\n1,1.0,2.0\n2,0.6,1.5\n3,0.4,1.5\n")  # no val_* column, no partial file
    assert run_folder.read_history(str(tmp_path)) == {"epoch": [1, 2, 3], "loss": [1.0, 0.6, 0.4],
                                                       "epoch_time_s": [2.0, 1.5, 1.5]}
    assert os.listdir(tmp_path) == ["history.csv"]
