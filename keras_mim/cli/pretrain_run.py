"""The training run of `keras-mim pretrain`: data, model, optimizer, callbacks, and the
run folder's files (see `run_folder.py` for the layout and `--resume`, and
`pretrain_checkpoints.py` for the checkpoints and the run lock)."""

import datetime
import os
import platform
import sys
import time

from keras_mim.cli import pretrain_checkpoints, run_folder
from keras_mim.cli.backend import backend_version
from keras_mim.cli.common import jit_compile_setting, steps_per_execution_setting, write_json
from keras_mim.cli.pretrain_data import load_data, view_pairs
from keras_mim.cli.pretrain_figures import figure_images, figure_kind, final_figure
from keras_mim.cli.pretrain_multimodal import encoder_overrides
from keras_mim.cli.pretrain_value import monitor_callback, run_value_check
from keras_mim.cli.pretrain_options import (
    NO_WEIGHT_DECAY,
    NUM_HELDOUT,
    VIDEO_DATASET,
    architecture_overrides,
    steps_per_epoch,
    takes_norm_pix_loss,
    writes_figures,
)
from keras_mim.models.methods import get_method_spec


def load_teacher(path):
    """The frozen teacher in a `.keras` file: a pretraining model's encoder, or the model."""
    import keras

    model = keras.saving.load_model(path)
    return getattr(model, "encoder", model)


def build_model(args, num_channels, total_steps=None):
    """The method's model on the preset's architecture; bad combinations exit with status 2
    (before anything is written). Schedules spanning the run (the record's
    `schedule_steps`, e.g. I-JEPA's momentum ramp) last `total_steps`, unless the preset
    sets them."""
    from keras_mim.models.presets import PRESETS, build_method

    spec = get_method_spec(args.method)
    kwargs = dict(image_size=args.image_size, num_channels=num_channels, seed=args.seed, **architecture_overrides(args))
    if spec.data == "points":  # the preset fixes points and groups
        del kwargs["image_size"], kwargs["num_channels"]
    if spec.data == "paired":  # channels per modality: the preset's or --modalities
        del kwargs["num_channels"]
    if spec.data == "multispectral":  # each band normalised with the training set's statistics
        kwargs["band_mean"], kwargs["band_std"] = (v.tolist() for v in args._band_stats)
    kwargs.update(encoder_overrides(args))
    if spec.data == "audio":  # the preset's frames x mel bins; the training set's log-mel statistics
        del kwargs["image_size"]
        kwargs["spectrogram_mean"], kwargs["spectrogram_std"] = args._spectrogram_stats
    preset = PRESETS.get(args.preset, {})
    preset_kwargs = preset.get("kwargs", {}) if preset.get("method") == spec.name else {}
    for argument in spec.schedule_steps if total_steps else ():
        if argument not in preset_kwargs:
            kwargs[argument] = int(total_steps)
    if args.mask_ratio is not None:
        kwargs["mask_ratio"] = args.mask_ratio
    if args.masking is not None:
        kwargs["mask_generator"] = args.masking
    if args.target is not None:
        kwargs["target"] = args.target
    elif args.norm_pix_loss is not None:
        kwargs["norm_pix_loss"] = args.norm_pix_loss == "true"
    elif takes_norm_pix_loss(spec) and writes_figures(spec):
        kwargs["norm_pix_loss"] = False  # default for runs with figures: honest reconstructions
    try:
        if args.teacher is not None:
            kwargs["teacher"] = load_teacher(args.teacher)
        return build_method(args.method, args.preset, **kwargs)
    except (ValueError, TypeError) as error:
        print(f"keras-mim pretrain: error: --method {args.method} with preset {args.preset!r}: {error}",
              file=sys.stderr)
        raise SystemExit(2) from None




def run_pretrain(args):
    """Train as `args` say (already checked by `resolve_pretrain`); returns the history dict,
    or None when `--resume` finds the run already complete. Holds the run folder's lock
    (another run there: exit status 2). A stop leaves the folder resumable and says how to
    go on, in one message: Ctrl-C (exit status 130), a non-finite loss or a full disk
    (exit status 1)."""
    import keras

    from keras_mim.callbacks import NonFiniteLossError
    from keras_mim.distribute import distribution_scope

    if getattr(args, "_complete", False):
        print(f"keras-mim: run folder {os.path.abspath(args.output)} is already complete (its "
              "history.json is written); nothing to resume", flush=True)
        return None
    output = os.path.abspath(args.output)
    resume = pretrain_checkpoints.resume_command(output)
    command = getattr(args, "_command_line", "keras-mim pretrain")
    with pretrain_checkpoints.run_lock(output, command), pretrain_checkpoints.ctrl_c:
        previous = keras.mixed_precision.global_policy()
        keras.mixed_precision.set_global_policy(args.precision)  # before any layer is built
        try:
            with distribution_scope(args.distribute):  # the model is built, compiled and fitted in it
                return _run_pretrain(args)
        except NonFiniteLossError as error:
            _stop(f"{error}\nIn {output}, {pretrain_checkpoints.kept(output)}; model.keras and history.json "
                  "were not written. --resume would repeat the recorded settings; change them in a new run "
                  "(e.g. --config RUN/config.json --learning-rate ...).")
        except pretrain_checkpoints.CheckpointError as error:
            _stop(str(error))
        except OSError as error:
            if error.errno not in pretrain_checkpoints.DISK_FULL:
                raise
            _stop(f"cannot write {error.filename or 'a file of the run'} ({error.strerror}); "
                  f"{pretrain_checkpoints.kept(output)}. Free some space, then continue with: {resume}")
        except KeyboardInterrupt:
            if not os.path.isfile(os.path.join(output, "config.json")):
                _stop("interrupted before training started; nothing to resume", status=130)
            done = pretrain_checkpoints.latest_epoch(output)
            state = (f"epoch {done} of {args.epochs} is the last complete one "
                     f"({pretrain_checkpoints.checkpoint_path(output, done)})" if done else "no epoch was complete")
            _stop(f"interrupted; {state}. Continue the run with: {resume}", status=130)
        finally:
            keras.mixed_precision.set_global_policy(previous)


def _stop(message, status=1):
    """One message on stderr, then exit with `status`."""
    print(f"keras-mim pretrain: {'error: ' if status == 1 else ''}{message}", file=sys.stderr, flush=True)
    raise SystemExit(status)


def _is_dataset(data):
    return callable(getattr(data, "cardinality", None))  # a tf.data.Dataset, already batched


def _optimizer(args, update_steps):
    """AdamW as MAE, its learning rate warmed up linearly then decayed with a cosine."""
    import keras

    fraction = args.warmup_fraction  # a run recorded before the option resumes with the parser's default
    warmup_steps = max(1, round(fraction * update_steps)) if update_steps > 1 and fraction > 0 else 0
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup_steps else args.learning_rate,
        decay_steps=max(1, update_steps - warmup_steps),
        alpha=0.01,
        warmup_target=args.learning_rate if warmup_steps else None,
        warmup_steps=warmup_steps,
    )
    optimizer = keras.optimizers.AdamW(
        learning_rate=schedule, weight_decay=args.weight_decay, beta_1=0.9, beta_2=0.95,
        gradient_accumulation_steps=args.gradient_accumulation if args.gradient_accumulation > 1 else None,
    )
    optimizer.exclude_from_weight_decay(var_names=NO_WEIGHT_DECAY)
    return optimizer, warmup_steps


def _config(args, model, backend, output, resolved):
    import keras
    import numpy as np

    import keras_mim

    recorded = {k: v for k, v in vars(args).items()
                if not k.startswith("_") and k not in ("num_tokens", "num_frames", "command")}
    recorded["backend"] = backend  # --config and --resume run on it again
    resolved.update(
        backend=backend, output_dir=output, num_heldout_images=NUM_HELDOUT,
        lr_schedule="linear warmup 0 -> learning_rate, then cosine decay to 1% of it",
        optimizer={"name": "AdamW", "beta_1": 0.9, "beta_2": 0.95,
                   "weight_decay": args.weight_decay, "no_weight_decay": NO_WEIGHT_DECAY},
        method=args.method, model_class=type(model).__name__,
        mask_ratio=getattr(model, "mask_ratio", None), model_parameters=int(model.count_params()),
    )
    return {
        "command": "pretrain",
        "command_line": args._command_line,
        "resolved_command_line": args._resolved_command_line,
        "args": recorded,
        "resolved": resolved,
        "versions": {
            "keras_mim": keras_mim.__version__,
            "keras": keras.__version__,
            backend: backend_version(backend),
            "numpy": np.__version__,
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
    }


def _callbacks(args, model, output, heldout, noise, steps, resume, pixels, done):
    """In the order their epoch ends run: timing, history row, figure, then the checkpoint,
    so the checkpoint of epoch k means its row and figure are written. A stop after the row
    but before the checkpoint makes --resume train that epoch again, replacing its row and
    figure."""
    import keras

    from keras_mim.callbacks import ReconstructionFigureCallback, StopOnNonFiniteLoss

    class EpochTimer(keras.callbacks.Callback):  # adds epoch_time_s to the logs (and CSV)
        def on_epoch_begin(self, epoch, logs=None):
            self._t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            if logs is not None:
                logs["epoch_time_s"] = round(time.perf_counter() - self._t, 3)

    callbacks = [EpochTimer(), StopOnNonFiniteLoss(), pretrain_checkpoints.ctrl_c.callback()]
    # Methods with a training schedule of their own (e.g. HPM's easy-to-hard ratio) say so.
    if hasattr(model, "training_callbacks"):
        callbacks += model.training_callbacks(epochs=args.epochs, steps_per_epoch=steps)
    monitor = monitor_callback(args, model, initial_epoch=done)
    callbacks += [monitor] if monitor else []  # before the history row, which records its numbers
    callbacks.append(run_folder.history_logger(output))
    if args.figure_every and pixels:
        # A resumed run writes the epochs after its checkpoint only: a figure there is from
        # training the stop discarded, and is replaced.
        callbacks.append(ReconstructionFigureCallback(
            heldout, os.path.join(output, "figures"), every_n_epochs=args.figure_every, noise=noise,
            seed=args.seed, max_images=figure_images(heldout), overwrite=args.overwrite or resume,
            spectrogram=get_method_spec(args.method).data == "audio", figure=figure_kind(args),
        ))
    tensorboard = run_folder.tensorboard_callback(output)
    return callbacks + ([tensorboard] if tensorboard else []) + [pretrain_checkpoints.checkpoint_callback(output)]


def _restore(model, output, epochs):
    """--resume: load the newest complete checkpoint; returns its epoch (0: none)."""
    done, path = pretrain_checkpoints.restore(model, output)
    redone = [e for e in run_folder.read_history(output)["epoch"] if e > done]
    print(f"keras-mim: resuming after epoch {done} of {epochs}" + (
        f" (weights, optimizer state and step count from {path})" if path else " (no epoch was complete)"), flush=True)
    if redone:
        print(f"keras-mim: epoch(s) {', '.join(map(str, redone))} were recorded in history.csv but not "
              "checkpointed: trained again, their rows and figures are replaced", flush=True)
    return done


def _run_pretrain(args):
    import keras
    import numpy as np

    from keras_mim.distribute import num_replicas

    start = time.perf_counter()
    backend = keras.backend.backend()
    output = os.path.abspath(args.output)
    resume = args.resume is not None
    print(f"keras-mim: backend {backend} (keras {keras.__version__}); run folder {output}", flush=True)

    keras.utils.set_random_seed(args.seed)
    train, heldout, skipped = load_data(args)
    replicas = num_replicas(args.distribute)
    spec = get_method_spec(args.method)
    two_views = spec.two_views
    if _is_dataset(train):
        steps = int(train.cardinality())
        if steps < 1:
            raise ValueError(f"the training dataset must have a known, positive cardinality, got {steps}")
        num_examples, num_channels = args.num_images if args.data else None, int(train.element_spec.shape[-1])
    elif isinstance(train, dict):  # paired modalities: channels per modality, from the preset
        num_examples, num_channels = len(next(iter(train.values()))), None
        steps = steps_per_epoch(num_examples, args.batch_size, two_views)
    else:
        train = train[: len(train) - len(train) % args.batch_size % replicas]  # even last batch on every device
        num_examples, num_channels = len(train), int(train.shape[-1])
        steps = steps_per_epoch(num_examples, args.batch_size, two_views)
    print(f"keras-mim: building {args.method} on {args.preset} ...", flush=True)
    model = build_model(args, num_channels, total_steps=steps * args.epochs)
    if two_views:  # fresh view pairs every epoch; fixed held-out pairs
        train, heldout = view_pairs(args, train, heldout)
    # figures and pixel metrics (single-input pixel methods)
    pixels = writes_figures(spec) and args.target in (None, "pixels")
    total_steps = steps * args.epochs  # resolve_pretrain checked: at least one optimizer update
    update_steps = total_steps // args.gradient_accumulation  # the schedule counts optimizer updates
    optimizer, warmup_steps = _optimizer(args, update_steps)
    jit_compile = jit_compile_setting(args.jit_compile, distributed=args.distribute != "none",
                                      expected_steps=total_steps)
    steps_per_execution = steps_per_execution_setting(args.steps_per_execution, steps,
                                                      distributed=args.distribute != "none")
    model.compile(optimizer=optimizer, jit_compile=jit_compile, steps_per_execution=steps_per_execution)
    model.build()

    os.makedirs(output, exist_ok=True)
    if args.overwrite:
        run_folder.clean_run_folder(output)
    run_folder.write_skipped_files(output, skipped)
    rng = np.random.default_rng(args.seed)
    noise = rng.random((NUM_HELDOUT, args.num_tokens)).astype("float32")  # fixed masks for figures
    resolved = {"num_channels": num_channels, "num_tokens": args.num_tokens, "num_train_images": num_examples,
                "steps_per_epoch": steps, "total_steps": total_steps, "optimizer_updates": update_steps,
                "warmup_steps": warmup_steps, "jit_compile": jit_compile, "steps_per_execution": steps_per_execution,
                "num_devices": replicas}
    config = _config(args, model, backend, output, resolved)
    done = _restore(model, output, args.epochs) if resume else 0
    if resume:
        run_folder.record_resume(output, done, args._command_line)
        # Another shuffle order than the first epochs (the restored run would repeat them).
        keras.utils.set_random_seed(args.seed + done)
    else:
        write_json(os.path.join(output, "config.json"), config)

    callbacks = _callbacks(args, model, output, heldout, noise, steps, resume, pixels, done)
    print(
        f"keras-mim: {args.method} ({type(model).__name__}), {args.preset} "
        f"({config['resolved']['model_parameters']:,} parameters) on "
        f"{num_examples or args.num_images} {args.data or args.dataset} "
        f"{'clips' if args.dataset == VIDEO_DATASET else {'audio': 'spectrograms', 'points': 'point clouds', 'paired': '(paired modalities)', 'multispectral': 'tiles'}.get(spec.data, 'images')}"
        f"{' (as view pairs)' if two_views else ''}, {args.epochs} epoch(s) x "
        f"{steps} steps, batch {args.batch_size}, mask ratio "
        f"{config['resolved']['mask_ratio']}, "
        f"lr {args.learning_rate:g}",
        flush=True,
    )
    if done < args.epochs and (backend in ("jax", "tensorflow") or jit_compile is True):
        print("keras-mim: compiling the training step; the first epoch may take a minute ...", flush=True)
    fit_start = time.perf_counter()
    batching = {"shuffle": False} if two_views or _is_dataset(train) else {"batch_size": args.batch_size, "shuffle": True}
    try:
        model.fit(train, epochs=args.epochs, initial_epoch=done, callbacks=callbacks,
                  verbose=1 if sys.stdout.isatty() else 2, **batching)
    except BaseException:  # a stop: close the TensorBoard files (run_pretrain says what is kept)
        for callback in callbacks:
            if isinstance(callback, keras.callbacks.TensorBoard):
                callback.on_train_end()
        raise
    pretrain_checkpoints.ctrl_c.check()  # one swallowed in the last batch
    fit_time = time.perf_counter() - fit_start

    partial = os.path.join(output, ".model.partial.keras")
    model.save(partial)
    os.replace(partial, os.path.join(output, "model.keras"))
    heldout_loss = float(model.evaluate(heldout, batch_size=NUM_HELDOUT, verbose=0, return_dict=True)["loss"])
    heldout_mse = final_figure(args, model, heldout, noise, output, backend) if pixels else None
    if spec.data == "points":  # 3D scatter plots: original, visible groups, predicted hidden groups
        from keras_mim.viz import plot_point_reconstructions

        plot_point_reconstructions(
            model, heldout, path=os.path.join(output, "reconstructions.png"),
            title=f"{args.method}, {args.preset}, {os.path.basename(str(args.data or args.dataset).rstrip('/'))}, "
                  f"{args.epochs} epochs ({backend}): held-out clouds")
    value_check = run_value_check(args, model, output)
    from keras_mim.evaluation.probe_monitor import ProbeMonitor

    monitor = next((c for c in callbacks if isinstance(c, ProbeMonitor)), None)
    if monitor is not None:
        write_json(os.path.join(output, "monitor.json"), {
            "what": "frozen features of the encoder during pretraining, on held-out labelled images: ridge "
                    "linear probe per block (avg pooling; probe_block chosen on a validation split of the "
                    "labelled train images) and k-NN on the output", "records": monitor.records})
    history = run_folder.read_history(output)  # every epoch of the run, resumed ones included
    losses = history["loss"]
    record = {
        "loss": losses,
        "epoch_time_s": history.get("epoch_time_s", []),
        "final_loss": losses[-1],
        "heldout_loss": heldout_loss,
        "heldout_pixel_mse": heldout_mse,
        "value_check": value_check,
        **{name: history[name] for name in ("probe_top1", "probe_last_top1", "knn_top1") if name in history},
        "fit_time_s": round(fit_time, 3),
        "wall_time_s": round(time.perf_counter() - start, 3),
        "resumed_after_epochs": run_folder.resumes(output),
        "backend": backend,
        "args": config["args"],
    }
    run_folder.finish(output, record)
    print(
        f"keras-mim: done in {record['wall_time_s']:.1f} s (training {fit_time:.1f} s); final loss "
        f"{losses[-1]:.4f}, held-out loss {heldout_loss:.4f}"
        + ("" if heldout_mse is None else f", held-out pixel MSE {heldout_mse:.4f}") + f"; wrote {output}",
        flush=True,
    )
    return record
