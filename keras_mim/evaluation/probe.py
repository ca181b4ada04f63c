"""MAE's linear-probe recipe (`main_linprobe.py`) for a `LinearProbe`, on once-computed
frozen features, and V-JEPA's attentive-probe recipe for an `AttentiveProbe`, on
once-computed frozen tokens."""

import keras

from keras_mim.evaluation.knn import check_labels
from keras_mim.utils import check_positive_int


HEAD_INITS = ("ridge", "random")


def fit_linear_probe(probe, images, labels, epochs=90, batch_size=128, base_learning_rate=0.1, warmup_epochs=10,
                     head_init="ridge", callbacks=None, jit_compile="auto", verbose="auto"):
    """Train the head of a `LinearProbe` as MAE's linear probing does; returns the history.

    1. The frozen encoder's features of `images`, once (inference mode, no augmentation:
       fitting the head on them is exactly training the whole probe, many times faster).
    2. The head BatchNorm's moving mean and variance set to those features' statistics
       (`LinearProbe.set_feature_statistics`) and kept there: the BatchNorm runs in
       inference mode while the head trains (MAE's 90 epochs of momentum-0.1 updates end
       at the same statistics). Training is then exactly logistic regression on the
       standardised features, and a probe is scored with the statistics it trained with
       however short the run. (Batch statistics would also shake the head: a random
       encoder's features span a near-degenerate subspace, correlation eigenvalues down
       to ~1e-6; with them the ridge start below scored 0.925 after 90 epochs on digits,
       0.981 without.)
    3. With `head_init="ridge"` (the default; MAE: `"random"`, std 0.01), the head starts
       at the closed-form ridge classifier of those standardised features
       (`keras_mim.evaluation.ridge_head.ridge_head_init`: penalty chosen by exact
       leave-one-out, logits scaled to the leave-one-out predictions). SGD then refines it,
       so the accuracy no longer depends on how many steps the run has: measured on digits
       (MAE-pretrained nano ViT, 1438 train / 359 test images), 3 / 10 / 90 epochs give
       0.950 / 0.955 / 0.964 from the ridge head and 0.886 / 0.930 / 0.947 from a random
       one; with 10 images a class (one step an epoch), 0.872 / 0.872 / 0.875 against
       0.749 / 0.805 / 0.855 (`benchmarks/probe_head_init.py`, docs/evaluation.md).
    4. SGD with momentum 0.9 (MAE: LARS, which Keras lacks; the BatchNorm before the head
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
        head_init: `"ridge"` or `"random"` (MAE's: the probe's own initial weights).
        callbacks: Keras callbacks for `fit` (e.g. a `CSVLogger`).
        jit_compile: `compile`'s `jit_compile`.
        verbose: `fit`'s verbosity.

    Returns:
        The Keras history dict: `loss` and `accuracy` (with batch statistics) per epoch, and
        with the ridge head `ridge` (its `l2`, `scale` and leave-one-out accuracy). The
        probe is left compiled with the same loss and accuracy, for `probe.evaluate`.

    Examples:
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

    labels, epochs, batch_size = check_fit_arguments(probe, LinearProbe, images, labels, epochs, batch_size,
                                                     warmup_epochs)
    if head_init not in HEAD_INITS:
        raise ValueError(f"`head_init` must be one of {HEAD_INITS}, got {head_init!r}.")
    if not float(base_learning_rate) > 0:
        raise ValueError(f"`base_learning_rate` must be positive, got {base_learning_rate!r}.")

    features = probe.predict_features(images, batch_size=max(batch_size, 256))
    probe.set_feature_statistics(features)
    ridge = None
    if head_init == "ridge":
        from keras_mim.evaluation.ridge_head import ridge_head_init

        kernel, bias, ridge = ridge_head_init(
            features, labels, probe.num_classes, keras.ops.convert_to_numpy(probe.head_norm.moving_mean),
            keras.ops.convert_to_numpy(probe.head_norm.moving_variance), epsilon=probe.head_norm.epsilon)
        probe.head.kernel.assign(kernel)
        probe.head.bias.assign(bias)
    steps = -(-len(features) // batch_size)
    total = steps * epochs
    schedule = warmup_cosine_schedule(base_learning_rate * batch_size / 256, total,
                                      min(steps * warmup_epochs, total // 9))
    head = probe.head_model()
    norm_trainable = probe.head_norm.trainable
    probe.head_norm.trainable = False  # inference mode: the statistics set above, fixed
    try:
        head.compile(optimizer=keras.optimizers.SGD(schedule, momentum=0.9),
                     loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                     metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")], jit_compile=jit_compile)
        history = head.fit(features, labels, batch_size=batch_size, epochs=epochs, shuffle=True,
                           callbacks=callbacks, verbose=verbose)
    finally:
        probe.head_norm.trainable = norm_trainable
    # the probe itself scores with the same loss and metric: `probe.evaluate(x, y)` works
    probe.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")], jit_compile=jit_compile)
    return {**history.history, "ridge": ridge} if ridge else history.history


def fit_attentive_probe(probe, images, labels, epochs=20, batch_size=64, learning_rate=1e-3, weight_decay=1e-3,
                        warmup_epochs=0, callbacks=None, jit_compile="auto", verbose="auto"):
    """Train the pooler and head of an `AttentiveProbe` as V-JEPA's frozen evaluation does
    (`evals/image_classification_frozen`); returns the history.

    1. The frozen encoder's tokens of `images`, once (`AttentiveProbe.predict_tokens`;
       inference mode, no augmentation: fitting `head_model()` on them is exactly training
       the whole probe). The official trains on augmented images (timm's AutoAugment and
       random erasing) with the encoder run at every step; `keras-mim probe` never augments.
       The tokens are held in memory: `N x T x D` float32. With `standardize_tokens=True`
       the probe's token BatchNorm takes their per-channel mean and variance
       (`AttentiveProbe.set_token_statistics`), fixed while the pooler trains.
    2. AdamW (torch's betas 0.9 / 0.999 and epsilon 1e-8) at `learning_rate`, with a linear
       warmup of `warmup_epochs` (official: 0), then a cosine to 0, per step; weight decay
       `weight_decay` on every variable except biases and LayerNorm parameters (the official
       parameter groups: the queries are decayed). The official lowers the weight decay along
       a cosine to 1e-6; Keras' AdamW holds it constant. Official values: lr 1e-3, weight
       decay 1e-3, 20 epochs, batch 16 on each of 64 GPUs (1024); batch 64 here suits small
       labelled sets (a 1024 batch makes two steps an epoch of 1438 digits).

    Args:
        probe: an `AttentiveProbe`.
        images: float training images `(N, H, W, C)` (an array).
        labels: `(N,)` integer class ids.
        epochs: training epochs (official: 20).
        batch_size: batch size.
        learning_rate: peak learning rate (official: 1e-3, not scaled with the batch).
        weight_decay: decoupled weight decay (official: 1e-3 at the start).
        warmup_epochs: linear warmup epochs (official: 0), cut below the run's length.
        callbacks: Keras callbacks for `fit`.
        jit_compile: `compile`'s `jit_compile`.
        verbose: `fit`'s verbosity.

    Returns:
        The Keras history dict (`loss`, `accuracy` per epoch). The probe is left compiled with
        the same loss and accuracy, for `probe.evaluate`.

    Examples:
        >>> import numpy as np
        >>> from keras_mim import AttentiveProbe, ViTEncoder
        >>> probe = AttentiveProbe(ViTEncoder(image_size=16, patch_size=4, embed_dim=32, depth=1, num_heads=2), 3)
        >>> x, y = np.random.rand(12, 16, 16, 3).astype("float32"), np.arange(12) % 3
        >>> history = fit_attentive_probe(probe, x, y, epochs=2, batch_size=4, verbose=0)
        >>> len(history["loss"]), tuple(probe.predict(x, verbose=0).shape)
        (2, (12, 3))
    """
    from keras_mim.models.attentive_probe import AttentiveProbe
    from keras_mim.optimizers import warmup_cosine_schedule

    labels, epochs, batch_size = check_fit_arguments(probe, AttentiveProbe, images, labels, epochs, batch_size,
                                                     warmup_epochs)
    if isinstance(learning_rate, bool) or not float(learning_rate) > 0:
        raise ValueError(f"`learning_rate` must be positive, got {learning_rate!r}.")
    if isinstance(weight_decay, bool) or not float(weight_decay) >= 0:
        raise ValueError(f"`weight_decay` must be non-negative, got {weight_decay!r}.")

    tokens = probe.predict_tokens(images, batch_size=max(batch_size, 256))
    if probe.standardize_tokens:
        probe.set_token_statistics(tokens)
    steps = -(-len(tokens) // batch_size)
    total = steps * epochs
    schedule = warmup_cosine_schedule(float(learning_rate), total, min(steps * warmup_epochs, total - 1))
    head = probe.head_model()
    optimizer = keras.optimizers.AdamW(schedule, weight_decay=float(weight_decay), beta_1=0.9, beta_2=0.999,
                                       epsilon=1e-8)
    optimizer.exclude_from_weight_decay(var_list=[v for v in head.trainable_variables if len(v.shape) <= 1])
    head.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                 metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")], jit_compile=jit_compile)
    history = head.fit(tokens, labels, batch_size=batch_size, epochs=epochs, shuffle=True, callbacks=callbacks,
                       verbose=verbose)
    probe.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")], jit_compile=jit_compile)
    return history.history


def check_fit_arguments(probe, probe_class, images, labels, epochs, batch_size, warmup_epochs):
    """The arguments both probe fits share, checked before any work: returns the labels as
    an int array, `epochs` and `batch_size`; raises TypeError / ValueError naming the bad one."""
    if not isinstance(probe, probe_class):
        raise TypeError(f"`probe` must be a keras_mim {probe_class.__name__}, got {type(probe).__name__}.")
    labels = check_labels(labels, len(images), "labels")
    if labels.max() >= probe.num_classes:
        raise ValueError(f"`labels` hold class {labels.max()} but the probe has `num_classes`={probe.num_classes}.")
    epochs = check_positive_int(epochs, "epochs")
    batch_size = check_positive_int(batch_size, "batch_size")
    if isinstance(warmup_epochs, bool) or not isinstance(warmup_epochs, int) or warmup_epochs < 0:
        raise ValueError(f"`warmup_epochs` must be a non-negative int, got {warmup_epochs!r}.")
    return labels, epochs, batch_size
