"""Did pretraining help? k-NN accuracy of a pretrained encoder against the same architecture at
its random initialisation, on labelled images the user already has (a few seconds)."""

import keras

from keras_mim.evaluation.knn import check_labels, knn_evaluate
from keras_mim.models.image_classifier import get_encoder


def random_init_encoder(model, seed=0):
    """A fresh encoder of `model`'s encoder architecture, initialised after
    `keras.utils.set_random_seed(seed)` (the global seed is set: the same seed as a
    `keras-mim pretrain --seed` run gives that run's starting point)."""
    encoder = get_encoder(model)
    keras.utils.set_random_seed(seed)
    return encoder.__class__.from_config(encoder.get_config())


def pretraining_value(model, train_images, train_labels, test_images, test_labels, seed=0, k=20,
                      temperature=0.07, batch_size=128):
    """k-NN top-1 of `model`'s encoder and of the same encoder at random initialisation.

    The k-NN is `knn_evaluate`'s (cosine similarity, k = 20 neighbours voting with weight
    `exp(similarity / 0.07)`, the encoder's default pooling): the labelled `train_images`
    are the bank, `test_images` the held-out images it classifies. No training, so it
    takes the time of two feature passes; `keras-mim pretrain` runs it at the end of a run
    on a folder with class subfolders.

    Args:
        model: a `ViTEncoder` or a model holding one in `.encoder` (a pretraining model).
        train_images: the labelled bank (an array).
        train_labels: its labels.
        test_images: held-out images.
        test_labels: their labels.
        seed: the random initialisation's seed (see `random_init_encoder`).
        k: neighbours (capped at the bank's size).
        temperature: vote temperature.
        batch_size: batch size of the feature passes.

    Returns:
        dict: `pretrained` and `random_init` top-1 accuracies, `gain` (their difference),
        `k`, `num_train`, `num_test`.

    Examples:
        >>> import numpy as np
        >>> from keras_mim import ViTEncoder
        >>> encoder = ViTEncoder(image_size=16, patch_size=4, embed_dim=32, depth=1, num_heads=2)
        >>> x, y = np.random.rand(12, 16, 16, 3).astype("float32"), np.arange(12) % 3
        >>> result = pretraining_value(encoder, x[:9], y[:9], x[9:], y[9:], k=3)
        >>> sorted(result)
        ['gain', 'k', 'num_test', 'num_train', 'pretrained', 'random_init']
    """
    train_labels = check_labels(train_labels, len(train_images), "train_labels")
    test_labels = check_labels(test_labels, len(test_images), "test_labels")
    k = min(int(k), len(train_labels))
    scores = {}
    for name, encoder in (("pretrained", get_encoder(model)), ("random_init", random_init_encoder(model, seed))):
        scores[name] = knn_evaluate(encoder, train_images, train_labels, test_images, test_labels, k=k,
                                    temperature=temperature, batch_size=batch_size, verbose=0)["top1"]
    return {**scores, "gain": scores["pretrained"] - scores["random_init"], "k": k,
            "num_train": len(train_labels), "num_test": len(test_labels)}
