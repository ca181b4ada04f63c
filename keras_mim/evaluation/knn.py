"""k-nearest-neighbour evaluation of frozen encoder features (as DINO's `eval_knn.py`,
which MIM papers use to report k-NN accuracy)."""

import keras
import numpy as np
from keras import ops

from keras_mim.layers.token_ops import check_pooling, default_pooling, pool_tokens
from keras_mim.models.image_classifier import get_encoder
from keras_mim.utils import check_positive_int


class FeatureExtractor(keras.Model):
    """Pooled features of a frozen encoder: `(B, ...) -> (B, D)`; inference mode always.

    Args:
        encoder: a `ViTEncoder` or a model holding one in `.encoder`.
        pooling: `"cls"` (the cls token after the final norm), `"avg"` (mean of the
            final patch tokens) or None (cls if the encoder has one, else avg).
    """

    def __init__(self, encoder, pooling=None, **kwargs):
        super().__init__(**kwargs)
        self.encoder = get_encoder(encoder)
        self.pooling = check_pooling(self.encoder, pooling or default_pooling(self.encoder), "k-NN features")

    def call(self, images):
        tokens = self.encoder(images, training=False)
        return pool_tokens(tokens, self.pooling, self.encoder.num_prefix_tokens)


def extract_features(model, images, pooling=None, batch_size=128, verbose="auto"):
    """Pooled encoder features of `images` as a float32 numpy array `(N, D)`.

    Args:
        model: a `ViTEncoder` or a model holding one in `.encoder`.
        images: float images `(N, H, W, C)` (clips `(N, T, H, W, C)`), or a dataset of
            image batches (or of `(images, labels)` batches; labels are ignored).
        pooling: `"cls"`, `"avg"` or None (see `FeatureExtractor`).
        batch_size: batch size for arrays.
        verbose: Keras `predict` verbosity (a progress bar by default).
    """
    extractor = FeatureExtractor(model, pooling=pooling)
    spec = getattr(images, "element_spec", images)
    if isinstance(spec, (tuple, list)):
        spec = spec[0]
    if hasattr(spec, "shape") and hasattr(spec, "dtype"):
        extractor.encoder.check_images(spec, name="images")
    features = extractor.predict(images, batch_size=batch_size, verbose=verbose)
    return np.asarray(features, dtype="float32")


def check_labels(labels, count, name):
    """`labels` as a 1-D array of `count` class ids; a ValueError naming `name` otherwise."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != count:
        raise ValueError(f"`{name}` must be a 1-D array of {count} class ids, got shape {labels.shape}.")
    if not np.issubdtype(labels.dtype, np.integer) or (labels < 0).any():
        raise ValueError(f"`{name}` must hold non-negative integer class ids, got dtype {labels.dtype}.")
    return labels.astype("int32")


def knn_scores(train_features, train_labels, test_features, num_classes=None, k=20, temperature=0.07,
               batch_size=256):
    """Class votes of each test feature from its k nearest training features.

    Cosine similarity (features are L2-normalised here); each of the k neighbours votes
    for its class with weight `exp(similarity / temperature)` (DINO's weighted k-NN,
    k = 20, T = 0.07).

    Args:
        train_features: `(N, D)` features of the labelled bank.
        train_labels: `(N,)` integer class ids.
        test_features: `(M, D)` features to classify.
        num_classes: number of classes (default: max label + 1).
        k: neighbours per query (at most N).
        temperature: vote temperature.
        batch_size: queries per similarity block (memory: `batch_size x N`).

    Returns:
        float32 numpy `(M, num_classes)` summed vote weights.

    Examples:
        >>> import numpy as np
        >>> bank = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]], "float32")
        >>> scores = knn_scores(bank, np.array([0, 0, 1]), np.array([[1.0, 0.05]], "float32"), k=2)
        >>> int(scores.argmax(-1)[0])
        0
    """
    train_features = np.asarray(train_features, dtype="float32")
    test_features = np.asarray(test_features, dtype="float32")
    if train_features.ndim != 2 or test_features.ndim != 2 or train_features.shape[1] != test_features.shape[1]:
        raise ValueError(
            f"`train_features` and `test_features` must be (N, D) and (M, D) with the same D, got "
            f"{train_features.shape} and {test_features.shape}."
        )
    labels = check_labels(train_labels, len(train_features), "train_labels")
    k = check_positive_int(k, "k")
    if k > len(train_features):
        raise ValueError(f"`k`={k} is more than the {len(train_features)} training features.")
    if not temperature > 0:
        raise ValueError(f"`temperature` must be positive, got {temperature!r}.")
    num_classes = int(labels.max()) + 1 if num_classes is None else check_positive_int(num_classes, "num_classes")
    if labels.max() >= num_classes:
        raise ValueError(f"`train_labels` hold class {labels.max()} but `num_classes`={num_classes}.")

    bank = ops.normalize(ops.convert_to_tensor(train_features), axis=-1)  # (N, D)
    bank_labels = ops.convert_to_tensor(labels)
    out = []
    for start in range(0, len(test_features), batch_size):
        queries = ops.normalize(ops.convert_to_tensor(test_features[start : start + batch_size]), axis=-1)
        similarity = ops.matmul(queries, ops.transpose(bank))  # (b, N)
        top, idx = ops.top_k(similarity, k)  # (b, k)
        votes = ops.one_hot(ops.take(bank_labels, idx), num_classes)  # (b, k, C)
        weights = ops.exp(top / temperature)[..., None]
        out.append(ops.convert_to_numpy(ops.sum(votes * weights, axis=1)))
    return np.concatenate(out).astype("float32") if out else np.zeros((0, num_classes), "float32")


def knn_evaluate(model, train_images, train_labels, test_images, test_labels, k=20, temperature=0.07,
                 pooling=None, batch_size=128, verbose="auto"):
    """k-NN top-1 (and top-5) accuracy of an encoder's frozen features.

    Args:
        model: a `ViTEncoder` or a model holding one in `.encoder`.
        train_images: the labelled bank (an array).
        train_labels: its labels.
        test_images: the images to classify.
        test_labels: their labels.
        k: see `knn_scores`.
        temperature: see `knn_scores`.
        pooling: see `FeatureExtractor`.
        batch_size: batch size of the feature extraction.
        verbose: progress bars of the feature extraction.

    Returns:
        dict with `top1`, `top5` (fractions in [0, 1]), `k`, `temperature`, `pooling`.

    Examples:
        >>> import numpy as np
        >>> from keras_mim import ViTEncoder
        >>> enc = ViTEncoder(image_size=16, patch_size=4, embed_dim=32, depth=1, num_heads=2)
        >>> x = np.random.rand(12, 16, 16, 3).astype("float32")
        >>> r = knn_evaluate(enc, x, np.arange(12) % 3, x, np.arange(12) % 3, k=1, verbose=0)
        >>> r["top1"]
        1.0
    """
    train_labels = check_labels(train_labels, len(train_images), "train_labels")
    test_labels = check_labels(test_labels, len(test_images), "test_labels")
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    k = check_positive_int(k, "k")
    if k > len(train_labels):
        raise ValueError(f"`k`={k} is more than the {len(train_labels)} training images.")
    train = extract_features(model, train_images, pooling=pooling, batch_size=batch_size, verbose=verbose)
    test = extract_features(model, test_images, pooling=pooling, batch_size=batch_size, verbose=verbose)
    scores = knn_scores(train, train_labels, test, num_classes=num_classes, k=k, temperature=temperature)
    ranked = np.argsort(-scores, axis=-1, kind="stable")
    top1 = float(np.mean(ranked[:, 0] == test_labels))
    top5 = float(np.mean((ranked[:, : min(5, num_classes)] == test_labels[:, None]).any(-1)))
    encoder = get_encoder(model)
    return {"top1": top1, "top5": top5, "k": k, "temperature": float(temperature),
            "pooling": pooling or default_pooling(encoder)}
