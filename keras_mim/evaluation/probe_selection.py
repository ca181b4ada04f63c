"""Which block and pooling to probe, chosen on a validation split of the training images only."""

import numpy as np

from keras_mim.evaluation.knn import check_labels
from keras_mim.evaluation.ridge_head import ridge_head_init
from keras_mim.models.image_classifier import get_encoder

#: At most this many training images take part in the choice (features of every block are kept).
MAX_SELECTION_IMAGES = 4000


def validation_split(labels, fraction=0.2, seed=0):
    """Stratified `(train_ids, validation_ids)`: `fraction` of each class (at least one image
    of every class with two or more) is validation, chosen with `seed`."""
    rng = np.random.default_rng(seed)
    validation = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if len(members) >= 2:
            validation += rng.choice(members, min(max(round(fraction * len(members)), 1), len(members) - 1),
                                     replace=False).tolist()
    validation = np.sort(np.asarray(validation, "int64"))
    return np.setdiff1d(np.arange(len(labels)), validation), validation


def ridge_accuracy(train_features, train_labels, test_features, test_labels, num_classes, seed=0):
    """Top-1 accuracy on the test features of the ridge classifier (`ridge_head_init`) fitted
    on the training features, both standardised with the training features' statistics."""
    mean, variance = train_features.mean(0, dtype="float64"), train_features.var(0, dtype="float64")
    kernel, bias, _ = ridge_head_init(train_features, train_labels, num_classes, mean, variance, seed=seed)
    z = (test_features - mean) / np.sqrt(variance + 1e-6)
    return float(np.mean((z @ kernel + bias).argmax(-1) == test_labels))


def _layer_norm(x, epsilon):
    x = x.astype("float64")
    return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + epsilon)


def block_features(model, images, poolings, batch_size=256):
    """`{(block, pooling): (N, D) features}` of every block of the encoder, as `LinearProbe`
    reads them (block None: the encoder's output; others: pooled, then a LayerNorm)."""
    import keras

    encoder = get_encoder(model)
    depth, prefix = encoder.depth, encoder.num_prefix_tokens
    chunks = {}
    for start in range(0, len(images), batch_size):
        output, blocks = encoder.forward_features(images[start : start + batch_size], layers=list(range(depth)),
                                                  training=False)
        output = keras.ops.convert_to_numpy(output)
        blocks = [keras.ops.convert_to_numpy(b) for b in blocks]
        for pooling in poolings:
            for block in range(depth):
                tokens = blocks[block]
                pooled = tokens[:, 0] if pooling == "cls" else tokens[:, prefix:].mean(1)
                if block == depth - 1:  # the encoder's output, as LinearProbe(block=None)
                    pooled = output[:, 0] if pooling == "cls" else pooled
                    key = (None, pooling)
                    value = pooled if pooling == "cls" else _layer_norm(pooled, encoder.norm_epsilon)
                else:
                    key, value = (block, pooling), _layer_norm(pooled, encoder.norm_epsilon)
                chunks.setdefault(key, []).append(np.asarray(value, "float32"))
    return {key: np.concatenate(parts) for key, parts in chunks.items()}


def select_probe_features(model, images, labels, num_classes=None, validation_fraction=0.2, seed=0,
                          poolings=None, batch_size=256):
    """The block and pooling whose ridge probe scores best on a validation split of the
    training images (`validation_split`); test images never take part.

    For each block and pooling, a ridge classifier (`ridge_head_init`, standardised with the
    statistics of the rest of the training images) is fitted on the rest and scored on the
    validation images; closed form, so choosing costs one feature pass. Ties go to the
    deeper block, then to the encoder's default pooling.

    Args:
        model: a `ViTEncoder` or a model holding one in `.encoder`.
        images: the labelled TRAINING images `(N, H, W, C)` (at most `MAX_SELECTION_IMAGES`, a
            random subset, take part).
        labels: their `(N,)` class ids.
        num_classes: K (default: max label + 1).
        validation_fraction: share of each class held out for validation.
        seed: seed of the split and the subset.
        poolings: the poolings to try (default: `"avg"`, and `"cls"` if the encoder has a
            cls token).
        batch_size: batch size of the feature pass.

    Returns:
        dict: `block` (None for the encoder's output) and `pooling` for `LinearProbe`,
        `validation_accuracy`, and `table` (`"block/pooling"` -> validation accuracy).

    Examples:
        >>> from keras_mim import ViTEncoder
        >>> encoder = ViTEncoder(image_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2)
        >>> x, y = np.random.rand(40, 16, 16, 3).astype("float32"), np.arange(40) % 2
        >>> choice = select_probe_features(encoder, x, y)
        >>> sorted(choice), len(choice["table"])
        (['block', 'pooling', 'table', 'validation_accuracy'], 4)
    """
    labels = check_labels(labels, len(images), "labels")
    num_classes = int(labels.max()) + 1 if num_classes is None else int(num_classes)
    encoder = get_encoder(model)
    default = "cls" if encoder.num_prefix_tokens else "avg"
    poolings = tuple(poolings or (("cls", "avg") if encoder.num_prefix_tokens else ("avg",)))
    if len(images) > MAX_SELECTION_IMAGES:
        keep = np.sort(np.random.default_rng(seed).choice(len(images), MAX_SELECTION_IMAGES, replace=False))
        images, labels = images[keep], labels[keep]
    train, validation = validation_split(labels, validation_fraction, seed)
    if len(validation) == 0 or len(train) < 2:
        raise ValueError(f"`labels`: no class has the 2 or more images a validation split needs ({len(labels)} images).")
    table, best = {}, None
    for (block, pooling), features in block_features(encoder, images, poolings, batch_size).items():
        accuracy = ridge_accuracy(features[train], labels[train], features[validation], labels[validation],
                                  num_classes, seed=seed)
        table[f"{'last' if block is None else block}/{pooling}"] = accuracy
        rank = (accuracy, encoder.depth if block is None else block, pooling == default)
        if best is None or rank > best[0]:
            best = (rank, block, pooling)
    return {"block": best[1], "pooling": best[2], "validation_accuracy": best[0][0], "table": table}
