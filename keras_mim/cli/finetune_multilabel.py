"""`keras-mim finetune --multi-label`: several labels per image or clip (chest X-ray
findings, as MedMAE fine-tunes on ChestX-ray14; sound events, as Audio-MAE fine-tunes on
AudioSet): labels from a CSV beside the folder, a sigmoid head trained with binary
cross-entropy, per-class ROC AUC and average precision (mAUC, mAP) on the held-out items.

Images train with flips only; an Audio-MAE model's clips become its own log-mel
spectrograms and train with SpecAugment (and mixup when given: mixed multi-hot targets, as
Audio-MAE's AudioSet recipe mixes them)."""

import csv
import os
import sys
import time

from keras_mim.cli.common import jit_compile_setting, write_json


def check_multilabel_args(parser, args):
    """What --multi-label needs, checked before Keras is imported (`args._kind` known)."""
    if args.data is None or args.labels is None:
        parser.error("--multi-label needs --data FOLDER (the files) and --labels CSV (file, then labels)")
    if not os.path.isdir(args.data):
        parser.error(f"--data {args.data!r} is not a folder")
    if not os.path.isfile(args.labels):
        parser.error(f"--labels {args.labels!r} is not a file")
    options = [("--cutmix", args.cutmix), ("--rand-augment-ops", args.rand_augment_ops),
               ("--translate", args.translate)]
    if args._kind == "images":
        options.insert(0, ("--mixup", args.mixup))
    for flag, value in options:
        if value:
            parser.error(f"{flag} applies to single-label fine-tuning; --multi-label trains "
                         + ("with flips only" if args._kind == "images" else "with SpecAugment (and --mixup)"))
    if args.test_fraction is None:
        args.test_fraction = 0.2


def _labelled_rows(table, files):
    """Rows of the CSV whose file read (`rows`) and their index in `files` (`found`)."""
    index = {os.path.abspath(path): i for i, path in enumerate(files)}
    rows, found = [], []
    for row, path in enumerate(table["files"]):
        i = index.get(os.path.abspath(path))
        if i is not None:  # else unreadable: the folder skipped it (and lists why)
            rows.append(row)
            found.append(i)
    return rows, found


def read_labelled(args, encoder):
    """`(x, y, names, class_names, skipped)`: the CSV's files that read, as the encoder's
    images (its size and channels) or, for an Audio-MAE model, its log-mel spectrograms."""
    import numpy as np

    from keras_mim.cli.evaluate import fail, noun
    from keras_mim.data.multilabel_csv import read_multilabel_csv

    audio = args._kind == "audio"
    try:
        table = read_multilabel_csv(args.labels, args.data)
        if audio:
            from keras_mim.evaluation.labelled_signals import signal_folder

            folder = signal_folder(args.data, "audio", args._frontend["sample_rate"])
        else:
            from keras_mim.data import ImageFolder

            folder = ImageFolder(args.data)
    except (ValueError, OSError) as error:
        fail("finetune", str(error))
    skipped = [(os.path.join(args.data, name), "listed in --labels, not found") for name in table["missing"]]
    skipped += list(folder.skipped)
    rows, found = _labelled_rows(table, folder.files)
    if len(found) < 4:
        fail("finetune", f"only {len(found)} labelled {noun(args)} read from --data {args.data!r}; need at least 4")
    if audio:
        from keras_mim.cli.evaluate_signals import audio_frontend, spectrograms

        frontend = audio_frontend(args, encoder)
        x = spectrograms(frontend, folder.read(found, frontend.num_samples()))
    else:
        x = np.stack([folder.read(i, image_size=tuple(encoder.image_size)) for i in found]).astype("float32")
        channels = encoder.num_channels
        if x.shape[-1] != channels:
            x = np.repeat(x, channels, axis=-1) if x.shape[-1] == 1 else x.mean(-1, keepdims=True) if channels == 1 else x
        if x.shape[-1] != channels:
            fail("finetune", f"--data images have {x.shape[-1]} channels; the encoder takes {channels}")
    names = [os.path.relpath(table["files"][r], args.data) for r in rows]
    return x, table["labels"][rows].astype("float32"), names, table["class_names"], skipped


def training_batches(args, encoder, x_train, y_train):
    """`(dataset, recipe)`: shuffled training batches (last partial one dropped) with the
    kind's augmentation and no label smoothing; `recipe` for config.json."""
    from keras_mim.data.finetune_augment import finetune_dataset

    options = {"rand_augment_ops": 0, "cutmix_alpha": 0.0, "label_smoothing": 0.0}
    if args._kind == "audio":
        from keras_mim.cli.finetune_signals import spec_mask_settings

        time_mask, frequency_mask, mask_value = spec_mask_settings(args, encoder)
        options.update(horizontal_flip=False, mixup_alpha=args.mixup, time_mask=time_mask,
                       frequency_mask=frequency_mask, mask_value=mask_value)
        recipe = {"augmentation": "SpecAugment", "time_mask": time_mask, "frequency_mask": frequency_mask,
                  "mask_value": mask_value, "mixup": args.mixup}
    else:
        flip = args.horizontal_flip == "true"
        options.update(horizontal_flip=flip, mixup_alpha=0.0)
        recipe = {"augmentation": "horizontal flips" if flip else "none"}
    dataset = finetune_dataset(x_train, y_train, num_classes=y_train.shape[1], batch_size=args.batch_size,
                               training=True, seed=args.seed, **options)
    return dataset, recipe


def run_finetune_multilabel(args):
    import keras
    import numpy as np

    from keras_mim.cli.evaluate import fail, load_encoder, noun, prepare_output, run_record
    from keras_mim.cli.run_folder import history_logger
    from keras_mim.evaluation.multilabel import multilabel_metrics
    from keras_mim.models.image_classifier import ImageClassifier
    from keras_mim.optimizers import finetune_optimizer

    start = time.perf_counter()
    encoder = load_encoder(args)
    x, y, names, class_names, skipped = read_labelled(args, encoder)
    args._data = {"class_names": class_names}  # what run_record lists
    order = np.random.default_rng(args.seed).permutation(len(x))
    num_test = max(1, int(round(len(x) * args.test_fraction)))
    test, train = order[:num_test], order[num_test:]
    steps = len(train) // args.batch_size
    if steps < 1:
        fail("finetune", f"--batch-size {args.batch_size} is more than the {len(train)} training {noun(args)}")
    keras.utils.set_random_seed(args.seed)
    try:
        model = ImageClassifier(encoder, len(class_names), pooling=args.pooling, drop_path_rate=args.drop_path,
                                seed=args.seed)
    except ValueError as error:
        fail("finetune", str(error))
    optimizer = finetune_optimizer(
        model, total_steps=steps * args.epochs, warmup_steps=min(steps * args.warmup_epochs, steps * args.epochs - 1),
        batch_size=args.batch_size, base_learning_rate=args.base_learning_rate, weight_decay=args.weight_decay,
        layer_decay=args.layer_decay)
    output = prepare_output(args, ("config.json", "results.json", "history.csv", "classifier.keras",
                                   "predictions.csv"), skipped)
    batches, recipe = training_batches(args, encoder, x[train], y[train])
    write_json(os.path.join(output, "config.json"), run_record(args, encoder, {
        "num_train": len(train), "num_test": len(test), "num_classes": len(class_names),
        "loss": "binary cross-entropy on sigmoid outputs", "layer_decay": args.layer_decay,
        "peak_learning_rate": args.base_learning_rate * args.batch_size / 256, "steps_per_epoch": steps,
        **recipe}))
    print(f"keras-mim finetune --multi-label: {'random-init' if args.random_init else 'pretrained'} encoder of "
          f"{args.model}, {len(train)} train / {len(test)} test {noun(args)}, {len(class_names)} classes, "
          f"{args.epochs} epochs x {steps} steps, augmentation {recipe['augmentation']}", flush=True)

    model.compile(optimizer=optimizer, loss=keras.losses.BinaryCrossentropy(from_logits=True),
                  metrics=[keras.metrics.AUC(multi_label=True, from_logits=True, name="auc")],
                  jit_compile=jit_compile_setting(args.jit_compile, expected_steps=steps * args.epochs))
    history = model.fit(batches.repeat(), steps_per_epoch=steps, epochs=args.epochs,
                        verbose=1 if sys.stdout.isatty() else 2, callbacks=[history_logger(output)]).history
    model.save(os.path.join(output, "classifier.keras"))
    scores = np.asarray(model.predict(x[test], batch_size=args.batch_size, verbose=0), dtype="float64")
    with open(os.path.join(output, "predictions.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file"] + [f"logit:{c}" for c in class_names] + [f"label:{c}" for c in class_names])
        for i, row in zip(test, scores):
            writer.writerow([names[i]] + [f"{v:.6g}" for v in row] + [int(v) for v in y[i]])
    try:
        metrics = multilabel_metrics(y[test], scores, class_names)
    except ValueError as error:
        fail("finetune", f"{error} (the held-out split of {len(test)} {noun(args)}; raise --test-fraction)")
    record = {"command": "finetune", "multi_label": True, "model": os.path.abspath(args.model),
              "weights": "random-init" if args.random_init else "pretrained", "data": args.data,
              "labels": args.labels, **metrics, "train_loss": history["loss"],
              "backend": keras.backend.backend(), "wall_time_s": round(time.perf_counter() - start, 3)}
    write_json(os.path.join(output, "results.json"), record)
    print(f"keras-mim finetune: test mAUC {metrics['mean_auc']:.4f}, mAP {metrics['mean_ap']:.4f} over "
          f"{len(metrics['per_class'])} classes in {record['wall_time_s']:.1f} s; wrote {output}", flush=True)
    return record
