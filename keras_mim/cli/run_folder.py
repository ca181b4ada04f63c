"""The run folder of `keras-mim pretrain`: its layout, settings files (`--config`,
`--resume`), logs and history (checkpoints and the run lock: `pretrain_checkpoints.py`).

Layout (RUN = --output; epochs are counted from 1 in every file name, row and message):

    RUN/config.json             settings: the resolved arguments, the command line, versions
    RUN/history.csv             one row per finished epoch: epoch, loss, epoch_time_s (and any
                                other logged value); rewritten whole at each epoch's end
    RUN/history.json            the whole run's losses; written last: its presence marks a
                                complete run
    RUN/model.keras             the final model
    RUN/reconstructions.png     held-out reconstructions (pixel methods)
    RUN/value_check.json        k-NN of the encoder vs its random init (--data with class subfolders)
    RUN/figures/                reconstruction_epochNNNN.png during training (pixel methods)
    RUN/logs/                   TensorBoard logs (when TensorFlow is installed)
    RUN/checkpoints/epochNNNN.keras  the model, optimizer state and step count after epoch
                                NNNN, the latest complete one: what --resume restores; removed
                                once the run is complete
    RUN/checkpoints/last.keras  the same model under a fixed name (kept at the end)
    RUN/checkpoints/resumes.jsonl  one line per --resume
    RUN/skipped_files.txt       input files the data source skipped (if any)
    RUN/.lock                   while a run trains in the folder: its process id and command

Every file is written under a temporary name and renamed, so a run stopped at any moment
(Ctrl-C, a kill, a full disk) leaves complete files and `--resume` goes on after the newest
complete checkpoint. An epoch whose history row or figure was written but whose checkpoint
was not is trained again, and its row and figure are replaced.
"""

import argparse
import csv
import datetime
import importlib.util
import json
import os
import re
import shlex
import shutil

from keras_mim.cli.common import write_json

CHECKPOINTS = "checkpoints"
LAST_CHECKPOINT = os.path.join(CHECKPOINTS, "last.keras")
CHECKPOINT_FILE = re.compile(r"epoch(\d{4,})\.keras\Z")  # checkpoints/epochNNNN.keras
LEGACY_BACKUP = os.path.join(CHECKPOINTS, "backup")  # keras.callbacks.BackupAndRestore's, before
RESUMES = os.path.join(CHECKPOINTS, "resumes.jsonl")
SKIPPED_FILES = "skipped_files.txt"
# The files `--overwrite` replaces (folders: every file this command writes in them).
RUN_FILES = ("model.keras", "config.json", "history.json", "history.csv", "reconstructions.png",
             "value_check.json", SKIPPED_FILES, LAST_CHECKPOINT, RESUMES)
# Arguments that are not settings of the run: never read from a settings file.
NOT_SETTINGS = ("output", "overwrite", "resume", "config", "verbose")


def record_options(parser):
    """Give `parser` "store" and "store_true" actions (the default one included) that also
    remember each option given on the command line, in order, as (option, value) pairs in
    `args._given`: config.json records the command line, and with --config / --resume the
    given flags win / must agree. `options(parser)` then lists the options added.
    Call it before adding the arguments."""
    added = parser.keras_mim_options = []

    class Option(argparse.Action):
        """argparse's "store" action that records where it was given."""

        def __init__(self, option_strings, dest, **kwargs):
            super().__init__(option_strings, dest, **kwargs)
            added.append(self)

        def __call__(self, parser, namespace, values, option_string=None):
            setattr(namespace, self.dest, self.const if self.nargs == 0 else values)
            given = list(getattr(namespace, "_given", []))
            namespace._given = given + [(option_string, None if self.nargs == 0 else values)]

    class Flag(Option):
        """argparse's "store_true" action that records where it was given."""

        def __init__(self, option_strings, dest, default=False, **kwargs):
            super().__init__(option_strings, dest, nargs=0, const=True, default=default, **kwargs)

    for name, action in ((None, Option), ("store", Option), ("store_true", Flag)):
        parser.register("action", name, action)


def options(parser):
    """The options added to `parser` since `record_options(parser)`, in order."""
    return parser.keras_mim_options


def clean_run_folder(output):
    """With --overwrite: remove the files this command writes (figures, logs and the
    checkpoints included, so a new run never restores an old one's state)."""
    for name in RUN_FILES:
        path = os.path.join(output, name)
        if os.path.isfile(path):
            os.remove(path)
    remove_epoch_checkpoints(output, partial=True)
    shutil.rmtree(os.path.join(output, LEGACY_BACKUP), ignore_errors=True)
    figures = os.path.join(output, "figures")
    if os.path.isdir(figures):
        for name in os.listdir(figures):
            path = os.path.join(figures, name)
            if name.startswith("reconstruction_epoch") and name.endswith(".png") and os.path.isfile(path):
                os.remove(path)
    for root, _, names in os.walk(os.path.join(output, "logs")):
        for name in names:
            if name.startswith("events.out.tfevents."):
                os.remove(os.path.join(root, name))


def is_complete(output):
    return os.path.isfile(os.path.join(output, "history.json"))


def command_line(explicit):
    """'keras-mim pretrain ...' from the (option, value) pairs given, in their order."""
    words = ["keras-mim", "pretrain"]
    for option, value in explicit:
        words += [option] if value is None else [option, str(value)]
    return shlex.join(words)


def resolved_command_line(parser, args):
    """The command that repeats the run with every setting spelled out."""
    words = ["keras-mim", "pretrain"]
    for action in options(parser):
        value = getattr(args, action.dest, None)
        if not action.option_strings or action.dest in NOT_SETTINGS[1:] or value in (None, False):
            continue
        words += [action.option_strings[-1]] if value is True else [action.option_strings[-1], str(value)]
    return shlex.join(words)


def read_settings(parser, path, name, run=None):
    """The `args` of a run's config.json (or a flat {argument: value} JSON file), checked
    against `parser`'s arguments and types; exits with status 2 on a bad file. With `run`
    (the --resume folder) only a pretrain run's config.json is accepted."""
    try:
        with open(path) as f:
            data = json.load(f)
    except OSError as error:
        parser.error(f"{name} {path!r}: cannot read it ({error.strerror or error})")
    except ValueError as error:
        parser.error(f"{name} {path!r} is not valid JSON: {error}")
    if run is not None and not (isinstance(data, dict) and data.get("command") == "pretrain"
                                and isinstance(data.get("args"), dict)):
        parser.error(f"--resume {run!r}: {path} is not the config.json of a keras-mim pretrain run "
                     "(no 'command': 'pretrain' with its 'args')")
    if isinstance(data, dict) and "args" in data:
        if data.get("command", "pretrain") != "pretrain":
            parser.error(f"{name} {path!r} records a {data['command']!r} run, not pretrain")
        data = data["args"]
    if not isinstance(data, dict):
        parser.error(f"{name} {path!r} must hold a JSON object of arguments, got {type(data).__name__}")
    actions = {a.dest: a for a in options(parser) if a.option_strings}
    unknown = sorted(set(data) - set(actions))
    if unknown:
        parser.error(f"{name} {path!r}: unknown key(s) {', '.join(map(repr, unknown))}; "
                     f"expected argument names such as {', '.join(sorted(actions)[:6])}, ...")
    settings = {}
    for key, value in data.items():
        action = actions[key]
        if key in NOT_SETTINGS:
            continue  # where a run was written, and whether it overwrote: never inherited
        if value is None:
            settings[key] = None
            continue
        if action.nargs == 0:  # a flag
            if not isinstance(value, bool):
                parser.error(f"{name} {path!r}: {key} must be true or false, got {value!r}")
        elif not isinstance(value, (str, int, float)) or isinstance(value, bool):
            parser.error(f"{name} {path!r}: {key} must be a string or number, got {value!r}")
        else:
            try:
                value = action.type(str(value)) if action.type else str(value)
            except Exception as error:  # argparse types raise ArgumentTypeError
                parser.error(f"{name} {path!r}: {key} {error}")
            if action.choices is not None and value not in action.choices:
                parser.error(f"{name} {path!r}: {key} must be one of {', '.join(map(str, action.choices))}, "
                             f"got {value!r}")
        settings[key] = value
    return settings


def apply_config(parser, args, explicit):
    """--config FILE: the file's settings, then the flags given on the command line."""
    settings = read_settings(parser, args.config, "--config")
    given = {option_dest(parser, option) for option, _ in explicit}
    for key, value in settings.items():
        if key not in NOT_SETTINGS and key not in given:
            setattr(args, key, value)


def apply_resume(parser, args, explicit):
    """--resume RUN: the settings recorded in RUN/config.json; a flag given with a
    different value is a conflict (exit 2, naming both)."""
    run = args.resume
    if not os.path.isdir(run):
        parser.error(f"--resume {run!r}: no such run folder")
    path = os.path.join(run, "config.json")
    if not os.path.isfile(path):
        parser.error(f"--resume {run!r}: the folder has no config.json, so it is not a keras-mim "
                     "pretrain run folder (or the run stopped before its settings were written; "
                     "start it again without --resume)")
    if args.overwrite:
        parser.error("--resume continues a run in its folder; it cannot be combined with --overwrite")
    if args.config is not None:
        parser.error("--resume reads the run's own config.json; drop --config")
    if args.output is not None and os.path.abspath(args.output) != os.path.abspath(run):
        parser.error(f"--output {args.output!r} conflicts with --resume {run!r}: a resumed run "
                     "writes into its own folder")
    settings = read_settings(parser, path, "--resume config", run=run)
    for option, _ in explicit:
        key = option_dest(parser, option)
        if key in NOT_SETTINGS or key not in settings:
            continue
        if getattr(args, key) != settings[key]:
            parser.error(f"{option} {getattr(args, key)} conflicts with the recorded {settings[key]} in "
                         f"{path}; --resume continues the run with its own settings")
    for key, value in settings.items():
        if key not in NOT_SETTINGS:
            setattr(args, key, value)
    args.output = run


def option_dest(parser, option):
    for action in options(parser):
        if option in action.option_strings:
            return action.dest
    return None


def record_resume(output, epoch, line):
    with open(os.path.join(output, RESUMES), "a") as f:
        f.write(json.dumps({"after_epoch": epoch, "command_line": line,
                            "time": datetime.datetime.now().isoformat(timespec="seconds")}) + "\n")


def resumes(output):
    try:
        with open(os.path.join(output, RESUMES)) as f:
            return [json.loads(line)["after_epoch"] for line in f if line.strip()]
    except OSError:
        return []


def write_skipped_files(output, skipped):
    """The hook for data sources that skip unreadable files: (path, reason) pairs."""
    if skipped:
        with open(os.path.join(output, SKIPPED_FILES), "a") as f:
            for path, reason in skipped:
                f.write(f"{path}\t{reason}\n")


def history_logger(output):
    """The callback writing RUN/history.csv: one row per finished epoch, counted from 1.

    Not `keras.callbacks.CSVLogger`, which counts epochs from 0, adds `val_*` columns that
    stay empty without validation data, keeps its file open (a stopped run left it
    unclosed) and, appending on --resume, kept an epoch trained again twice or with its
    first, discarded loss. Here each epoch's end rewrites the file under a temporary name
    and renames it: the rows of earlier epochs, then this epoch's (an older row of this or
    a later epoch, from training that a stop discarded, is dropped); the columns are
    epoch, loss and the other values logged, none left empty."""
    import keras

    path = os.path.join(output, "history.csv")

    class HistoryCSV(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            rows = [row for row in _history_rows(output) if int(row["epoch"]) <= epoch]
            rows.append({"epoch": str(epoch + 1), **{k: _text(v) for k, v in (logs or {}).items()}})
            keys = {key for row in rows for key in row} - {"epoch", "loss"}
            columns = ["epoch"] + (["loss"] if any("loss" in row for row in rows) else []) + sorted(keys)
            partial = os.path.join(output, ".history.partial.csv")
            with open(partial, "w", newline="") as f:
                writer = csv.DictWriter(f, columns, restval="")
                writer.writeheader()
                writer.writerows(rows)
            os.replace(partial, path)

    return HistoryCSV()


def _text(value):
    try:
        return repr(float(value))
    except (TypeError, ValueError):
        return str(value)


def _history_rows(output):
    try:
        with open(os.path.join(output, "history.csv"), newline="") as f:
            return list(csv.DictReader(f))
    except FileNotFoundError:
        return []


def tensorboard_callback(output):
    """keras.callbacks.TensorBoard into RUN/logs (epoch steps counted from 1), or None (one
    printed line) where its summary writer is missing: it needs the tensorflow and
    tensorboard packages, on every backend."""
    import keras

    missing = [name for name in ("tensorflow", "tensorboard") if importlib.util.find_spec(name) is None]
    if missing:
        print(f"keras-mim: no TensorBoard logs: {' and '.join(missing)} not installed (pip install "
              "tensorflow-cpu tensorboard for logs/)", flush=True)
        return None

    class TensorBoard(keras.callbacks.TensorBoard):
        def on_epoch_end(self, epoch, logs=None):  # epochs counted from 1, as in history.csv
            super().on_epoch_end(epoch + 1, logs)

    return TensorBoard(log_dir=os.path.join(output, "logs"), write_graph=False)


def read_history(output):
    """history.csv as {column: [values per epoch]}, in epoch order (epochs from 1)."""
    rows = {int(row["epoch"]): row for row in _history_rows(output)}
    columns = {"epoch": sorted(rows)}
    for key in next(iter(rows.values()), {}):
        if key != "epoch":
            columns[key] = [_number(rows[e].get(key)) for e in columns["epoch"]]
    return columns


def _number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def remove_epoch_checkpoints(output, partial=False):
    """Remove checkpoints/epochNNNN.keras (and with `partial`, the files of a stopped save)."""
    folder = os.path.join(output, CHECKPOINTS)
    for name in os.listdir(folder) if os.path.isdir(folder) else ():
        if CHECKPOINT_FILE.match(name) or (partial and name.startswith(".") and name.endswith(".partial.keras")):
            os.remove(os.path.join(folder, name))


def finish(output, record):
    """Write history.json (marking the run complete), then drop the epoch checkpoints
    (checkpoints/last.keras stays)."""
    partial = os.path.join(output, ".history.partial.json")  # renamed: never a half-written marker
    write_json(partial, record)
    os.replace(partial, os.path.join(output, "history.json"))
    remove_epoch_checkpoints(output)
