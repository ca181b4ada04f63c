"""MAE's linear-probe recipe (`main_linprobe.py`) for a `LinearProbe`, on once-computed
frozen features."""

import keras

from keras_mim.evaluation.knn import check_labels
from keras_mim.utils import check_positive_int


def fit_linear_probe(probe, images, labels, epochs=90, batch_size=128, base_learning_rate=0.1, warmup_epochs=10,
                     callbacks=None, jit_compile="auto", verbose="auto"):
    """Train the head of a `LinearProbe` as MAE's linear probing does; returns the history.

    1. The frozen encoder's features of `images`, once (inference mode, no augmentation:
       fitting the head on them is exactly training the whole probe, many times faster).
    2. The head BatchNorm's moving mean and variance set to those features' statistics
       (`LinearProbe.set_feature_statistics`), so a short probe is scored with the
       statistics it trained with; training updates them as usual (MAE's 90 epochs of
       momentum-0.1 updates end at the same statistics).
    3. SGD with momentum 0.9 (MAE: LARS, which Keras lacks; the BatchNorm before the head
       makes the step insensitive to the feature scale), no weight decay, peak learning
       rate `base_learning_rate * batch_size / 256`, linear warmup then cosine to 0, per
       step; shuffled batches.

    Args:
        probe: a `LinearProbe`.
        images: float training images `(N, H, W, C)` (an array).
        labels: `(N,)` integer class ids.
        epochs: training epochs (MAE: 90).
        batch_size: batch size (MAE: 16384 over many GPUs).
        base_learning_rate: MAE's `blr` (0.1).
        warmup_epochs: warmup epochs (MAE: 10), cut to a ninth of the run (MAE: 10 of 90
            epochs) so a short probe still reaches its peak rate early and decays.
        callbacks: Keras callbacks for `fit` (e.g. a `CSVLogger`).
        jit_compile: `compile`'s `jit_compile`.
        verbose: `fit`'s verbosity.

    Returns:
        The Keras history dict: `loss` and `accuracy` (with batch statistics) per epoch. The
        probe is left compiled with the same loss and accuracy, for `probe.evaluate`.

    Example:
    >>> import numpy as np
    >>> from keras_mim import LinearProbe, ViTEncoder
    >>> probe = LinearProbe(ViTEncoder(image_size=16, patch_size=4, embed_dim=32, depth=1, num_heads=2), 3)
    >>> x, y = np.random.rand(12, 16, 16, 3).astype("float32"), np.arange(12) % 3
    >>> history = fit_linear_probe(probe, x, y, epochs=2, batch_size=4, verbose=0)
    >>> len(history["loss"]), tuple(probe.predict(x, verbose=0).shape)
    (2, (12, 3))
    >>> sorted(probe.evaluate(x, y, verbose=0, return_dict=True))
    ['accuracy', 'loss']
    """
    from keras_mim.models.linear_probe import LinearProbe
    from keras_mim.optimizers import warmup_cosine_schedule

    if not isinstance(probe, LinearProbe):
        raise TypeError(f"`probe` must be a keras_mim LinearProbe, got {type(probe).__name__}.")
    labels = check_labels(labels, len(images), "labels")
    if labels.max() >= probe.num_classes:
        raise ValueError(f"`labels` hold class {labels.max()} but the probe has `num_classes`={probe.num_classes}.")
    epochs = check_positive_int(epochs, "epochs")
    batch_size = check_positive_int(batch_size, "batch_size")
    if isinstance(warmup_epochs, bool) or not isinstance(warmup_epochs, int) or warmup_epochs < 0:
        raise ValueError(f"`warmup_epochs` must be a non-negative int, got {warmup_epochs!r}.")
    if not float(base_learning_rate) > 0:
        raise ValueError(f"`base_learning_rate` must be positive, got {base_learning_rate!r}.")

    features = probe.predict_features(images, batch_size=max(batch_size, 256))
    probe.set_feature_statistics(features)
    steps = -(-len(features) // batch_size)
    total = steps * epochs
    schedule = warmup_cosine_schedule(base_learning_rate * batch_size / 256, total,
                                      min(steps * warmup_epochs, total // 9))
    head = probe.head_model()
    head.compile(optimizer=keras.optimizers.SGD(schedule, momentum=0.9),
                 loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                 metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")], jit_compile=jit_compile)
    history = head.fit(features, labels, batch_size=batch_size, epochs=epochs, shuffle=True,
                       callbacks=callbacks, verbose=verbose)
    # the probe itself scores with the same loss and metric: `probe.evaluate(x, y)` works
    probe.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")], jit_compile=jit_compile)
    return history.history
