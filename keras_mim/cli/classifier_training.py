"""What both `keras-mim finetune` paths (images; audio and point clouds) share: the classifier,
data and optimizer set-up, and the training, saving and scoring of the classifier."""

import os
import sys

from keras_mim.cli.common import jit_compile_setting
from keras_mim.cli.evaluate import build_classifier, fail, finish, noun, score_images


def finetune_setup(args, build):
    """What both fine-tuning paths start with: `build_classifier`'s encoder, data, skipped
    files, class count and model, the steps per epoch (full batches) and the fine-tuning
    optimizer (`finetune_optimizer` with the run's schedule and layer decay)."""
    from keras_mim.optimizers import finetune_optimizer

    encoder, data, skipped, num_classes, model = build_classifier(args, build)
    steps = len(data[0]) // args.batch_size  # the training pipelines drop the last partial batch
    if steps < 1:
        fail("finetune", f"--batch-size {args.batch_size} is more than the {len(data[0])} training {noun(args)}")
    optimizer = finetune_optimizer(
        model, total_steps=steps * args.epochs, warmup_steps=min(steps * args.warmup_epochs, steps * args.epochs - 1),
        batch_size=args.batch_size, base_learning_rate=args.base_learning_rate,
        weight_decay=args.weight_decay, layer_decay=args.layer_decay,
    )
    return encoder, data, skipped, num_classes, model, steps, optimizer


def train_classifier(args, model, optimizer, train, steps, output, start, test):
    """Compile and fit a classifier on the one-hot batches `train` (`steps` per epoch), save
    it as classifier.keras, score it on `test` = `(x, y)` and finish the run."""
    import keras

    from keras_mim.cli.run_folder import history_logger

    jit = jit_compile_setting(args.jit_compile, expected_steps=steps * args.epochs)
    model.compile(optimizer=optimizer, loss=keras.losses.CategoricalCrossentropy(from_logits=True),
                  metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")], jit_compile=jit)
    history = model.fit(train, epochs=args.epochs, verbose=1 if sys.stdout.isatty() else 2, shuffle=False,
                        callbacks=[history_logger(output)]).history  # epochs from 1
    model.save(os.path.join(output, "classifier.keras"))
    top1, top5 = score_images(model, *test, args.batch_size)
    return finish(args, output, start, {"top1": top1, "top5": top5, "train_loss": history["loss"],
                                        "train_accuracy": history["accuracy"]})
