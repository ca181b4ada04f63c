"""Fine-tuning for per-patch labels with few labelled images: the "better than training from
scratch" comparison of the SatMAE and MultiMAE benchmarks (pretrained encoder against the same
encoder at random init, same head, same recipe, same labelled images).

The label of a patch is the majority of its pixels' classes (a segmentation at patch
resolution); the head is a LayerNorm and a linear layer on each patch place's token (for a
band-group encoder, the mean of its groups' tokens at that place). All of the encoder is
trained. Written here, not in the library: keras_mim has no dense-prediction head yet, and
this one exists only to score encoders.
"""

import json
import math
import os
import time

import keras
import numpy as np


def majority_labels(classes, patch, num_classes):
    """Each patch's majority value of the int maps `classes` `(n, H, W)`: `(n, N)`, row-major."""
    n, h, w = classes.shape
    cells = classes.reshape(n, h // patch, patch, w // patch, patch).transpose(0, 1, 3, 2, 4)
    counts = np.eye(num_classes, dtype="int32")[cells.reshape(n, (h // patch) * (w // patch), patch * patch)].sum(2)
    return counts.argmax(-1).astype("int32")


class PatchLabeller(keras.Model):
    """Encoder -> per-place tokens `(B, N, D)` -> LayerNorm -> Dense(num_classes) logits."""

    def __init__(self, encoder, num_classes, groups=1, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.groups = groups
        self.norm = keras.layers.LayerNormalization(epsilon=1e-6)
        self.head = keras.layers.Dense(num_classes, kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02))

    def call(self, images, training=False):
        tokens = self.encoder(images, training=training)[:, 1:]  # (B, G N, D), cls dropped
        n, d = tokens.shape[1] // self.groups, tokens.shape[-1]
        places = keras.ops.mean(keras.ops.reshape(tokens, (-1, self.groups, n, d)), axis=1)  # (B, N, D)
        return self.head(self.norm(places))


def finetune_scores(encoder, train, test, patch, num_classes, steps=300, batch_size=16, peak_lr=5e-4, seed=0):
    """Fine-tune `encoder` (all of it) on `train = (images, class maps)`, score on `test`.

    Returns `{"mean_iou", "object_accuracy"}`: the mean IoU over the classes of the patches'
    majority labels, and the accuracy on the patches whose label is not class 0 (the objects,
    not the background), both on `test`.
    """
    from sklearn.metrics import jaccard_score

    keras.utils.set_random_seed(seed)
    groups = len(getattr(encoder, "channel_groups", None) or [()])
    model = PatchLabeller(encoder, num_classes, groups=groups)
    y_train, y_test = (majority_labels(c, patch, num_classes) for c in (train[1], test[1]))
    epochs = max(1, math.ceil(steps * batch_size / len(train[0])))
    total = epochs * math.ceil(len(train[0]) / batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(0.0, total - total // 10, warmup_target=peak_lr,
                                                      warmup_steps=total // 10)
    model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=0.05),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(train[0], y_train, batch_size=batch_size, epochs=epochs, verbose=0, shuffle=True)
    predicted = model.predict(test[0], batch_size=128, verbose=0).argmax(-1)
    objects = y_test > 0
    return {"mean_iou": round(float(jaccard_score(y_test.ravel(), predicted.ravel(), average="macro")), 4),
            "object_accuracy": round(float(np.mean(predicted[objects] == y_test[objects])), 4),
            "labelled_images": len(train[0]), "epochs": epochs}


def seed_runs(seeds, run):
    """`run(seed)` for each seed of the comma-separated `seeds`: the one result for one seed,
    else `{"mean_iou", "object_accuracy"}` averaged, with every run under "runs"."""
    runs = [run(int(seed)) for seed in str(seeds).split(",")]
    if len(runs) == 1:
        return runs[0]
    mean = {key: round(float(np.mean([r[key] for r in runs])), 4) for key in ("mean_iou", "object_accuracy")}
    return {**mean, "seeds": [int(seed) for seed in str(seeds).split(",")], "runs": runs}


def finetune_rows(make_encoder, labelled, test, patch, num_classes, counts, unit, steps, seeds):
    """`{"finetune_<count>_<unit>": seed_runs(...)}` for each of the comma-separated `counts`: a
    fresh `make_encoder()` fine-tuned on the first `count` images of `labelled = (images, maps)`."""
    rows = {}
    for count in (int(c) for c in str(counts).split(",")):
        train = (labelled[0][:count], labelled[1][:count])
        rows[f"finetune_{count}_{unit}"] = seed_runs(seeds, lambda seed: finetune_scores(  # noqa: B023 (called here)
            make_encoder(), train, test, patch, num_classes, steps=steps, seed=seed))
    return rows


def pretrained_encoder(cache, name, model, data, encoder_of, fit):
    """Pretrain `model` on `data` (`model.fit(**fit)`, after `compile(optimizer=...)`) and save
    `encoder_of(model)` as `cache/<name>_encoder.keras` with its losses beside it (`.json`),
    unless both files are there already. Returns `(losses record, whether it trained)`."""
    path = os.path.join(cache, f"{name}_encoder.keras")
    if os.path.isfile(path) and os.path.isfile(path + ".json"):
        print(name, "pretrained encoder from", path, flush=True)
        with open(path + ".json") as f:
            return json.load(f), False
    fit = dict(fit)
    model.compile(optimizer=fit.pop("optimizer"))
    start = time.time()
    history = model.fit(data, verbose=2, shuffle=True, **fit)
    record = {"loss_first_last": [history.history["loss"][0], history.history["loss"][-1]],
              "train_time_s": round(time.time() - start, 1)}
    encoder_of(model).save(path)
    with open(path + ".json", "w") as f:
        json.dump(record, f)
    return record, True
