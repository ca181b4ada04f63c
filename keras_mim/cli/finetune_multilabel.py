"""`keras-mim finetune --multi-label`: several findings per image (chest X-rays, as MedMAE
fine-tunes on ChestX-ray14): labels from a CSV beside the image folder, a sigmoid head
trained with binary cross-entropy, per-class ROC AUC and average precision (mAUC, mAP) on the
held-out images."""

import csv
import os
import sys
import time

from keras_mim.cli.common import jit_compile_setting, write_json


def check_multilabel_args(parser, args):
    """What --multi-label needs, checked before Keras is imported."""
    if args.data is None or args.labels is None:
        parser.error("--multi-label needs --data FOLDER (the images) and --labels CSV (file, then findings)")
    if not os.path.isdir(args.data):
        parser.error(f"--data {args.data!r} is not a folder")
    if not os.path.isfile(args.labels):
        parser.error(f"--labels {args.labels!r} is not a file")
    for flag, value in (("--mixup", args.mixup), ("--cutmix", args.cutmix),
                        ("--rand-augment-ops", args.rand_augment_ops), ("--translate", args.translate)):
        if value:
            parser.error(f"{flag} applies to single-label fine-tuning; --multi-label trains with flips only")
    if args.test_fraction is None:
        args.test_fraction = 0.2


def read_images(args, encoder):
    """`(x, y, names, class_names, skipped)`: the CSV's images that read, at the encoder's size."""
    import numpy as np

    from keras_mim.cli.evaluate import fail
    from keras_mim.data import ImageFolder
    from keras_mim.data.multilabel_csv import read_multilabel_csv

    try:
        table = read_multilabel_csv(args.labels, args.data)
        folder = ImageFolder(args.data)
    except (ValueError, OSError) as error:
        fail("finetune", str(error))
    index = {os.path.abspath(path): i for i, path in enumerate(folder.files)}
    skipped = [(os.path.join(args.data, name), "listed in --labels, not found") for name in table["missing"]]
    rows, found = [], []
    for row, path in enumerate(table["files"]):
        i = index.get(os.path.abspath(path))
        if i is None:  # unreadable: ImageFolder skipped it (and lists why)
            continue
        rows.append(row)
        found.append(i)
    skipped += list(folder.skipped)
    if len(found) < 4:
        fail("finetune", f"only {len(found)} labelled images read from --data {args.data!r}; need at least 4")
    x = np.stack([folder.read(i, image_size=tuple(encoder.image_size)) for i in found]).astype("float32")
    channels = encoder.num_channels
    if x.shape[-1] != channels:
        x = np.repeat(x, channels, axis=-1) if x.shape[-1] == 1 else x.mean(-1, keepdims=True) if channels == 1 else x
    if x.shape[-1] != channels:
        fail("finetune", f"--data images have {x.shape[-1]} channels; the encoder takes {channels}")
    names = [os.path.relpath(table["files"][r], args.data) for r in rows]
    return x, table["labels"][rows].astype("float32"), names, table["class_names"], skipped


def run_finetune_multilabel(args):
    import keras
    import numpy as np

    from keras_mim.cli.evaluate import fail, load_encoder, prepare_output, run_record
    from keras_mim.cli.run_folder import history_logger
    from keras_mim.evaluation.multilabel import multilabel_metrics
    from keras_mim.models.image_classifier import ImageClassifier
    from keras_mim.optimizers import finetune_optimizer

    start = time.perf_counter()
    encoder = load_encoder(args)
    x, y, names, class_names, skipped = read_images(args, encoder)
    args._data = {"class_names": class_names}  # what run_record lists
    order = np.random.default_rng(args.seed).permutation(len(x))
    num_test = max(1, int(round(len(x) * args.test_fraction)))
    test, train = order[:num_test], order[num_test:]
    steps = len(train) // args.batch_size
    if steps < 1:
        fail("finetune", f"--batch-size {args.batch_size} is more than the {len(train)} training images")
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
    write_json(os.path.join(output, "config.json"), run_record(args, encoder, {
        "num_train": len(train), "num_test": len(test), "num_classes": len(class_names),
        "loss": "binary cross-entropy on sigmoid outputs",
        "peak_learning_rate": args.base_learning_rate * args.batch_size / 256, "steps_per_epoch": steps}))
    print(f"keras-mim finetune --multi-label: {'random-init' if args.random_init else 'pretrained'} encoder of "
          f"{args.model}, {len(train)} train / {len(test)} test images, {len(class_names)} classes, "
          f"{args.epochs} epochs x {steps} steps", flush=True)
    flip = keras.layers.RandomFlip("horizontal", seed=args.seed) if args.horizontal_flip == "true" else None
    x_train = x[train]

    def batches():  # shuffled, last partial batch dropped, flipped on the fly
        rng = np.random.default_rng(args.seed)
        while True:
            perm = rng.permutation(len(train))
            for s in range(steps):
                idx = perm[s * args.batch_size:(s + 1) * args.batch_size]
                xb = x_train[idx] if flip is None else keras.ops.convert_to_numpy(flip(x_train[idx], training=True))
                yield xb, y[train][idx]

    model.compile(optimizer=optimizer, loss=keras.losses.BinaryCrossentropy(from_logits=True),
                  metrics=[keras.metrics.AUC(multi_label=True, from_logits=True, name="auc")],
                  jit_compile=jit_compile_setting(args.jit_compile, expected_steps=steps * args.epochs))
    history = model.fit(batches(), steps_per_epoch=steps, epochs=args.epochs,
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
        fail("finetune", f"{error} (the held-out split of {len(test)} images; raise --test-fraction)")
    record = {"command": "finetune", "multi_label": True, "model": os.path.abspath(args.model),
              "weights": "random-init" if args.random_init else "pretrained", "data": args.data,
              "labels": args.labels, **metrics, "train_loss": history["loss"],
              "backend": keras.backend.backend(), "wall_time_s": round(time.perf_counter() - start, 3)}
    write_json(os.path.join(output, "results.json"), record)
    print(f"keras-mim finetune: test mAUC {metrics['mean_auc']:.4f}, mAP {metrics['mean_ap']:.4f} over "
          f"{len(metrics['per_class'])} classes in {record['wall_time_s']:.1f} s; wrote {output}", flush=True)
    return record
