"""What the Audio-MAE and Point-MAE benchmarks report on frozen features: k-NN top-1 (k = 20,
cosine, DINO's weighted vote: `keras_mim.evaluation.knn_scores`) and the ridge linear probe's
top-1 (`keras_mim.evaluation.ridge_accuracy`, standardised features)."""

import numpy as np

from keras_mim.evaluation.knn import knn_scores
from keras_mim.evaluation.probe_selection import ridge_accuracy


def frozen_accuracies(train_features, train_labels, test_features, test_labels, num_classes, k=20):
    """`{"knn_top1", "ridge_linear_probe_top1"}`, rounded to 4 digits."""
    scores = knn_scores(train_features, train_labels, test_features, num_classes=num_classes, k=k)
    knn = float(np.mean(scores.argmax(-1) == test_labels))
    ridge = float(ridge_accuracy(train_features, train_labels, test_features, test_labels, num_classes=num_classes))
    return {"knn_top1": round(knn, 4), "ridge_linear_probe_top1": round(ridge, 4)}
