"""Multi-label evaluation (several findings per image, as chest X-ray sets label them):
per-class ROC AUC and average precision, their means (mAUC, mAP), by scikit-learn."""

import numpy as np


def multilabel_metrics(y_true, scores, class_names=None):
    """Per-class AUC and AP of multi-label predictions, and their means over the classes
    that have both a positive and a negative image (others are listed, not scored).

    Args:
        y_true: `(N, C)` 0/1 labels.
        scores: `(N, C)` scores, any monotone scale (logits or sigmoid probabilities).
        class_names: optional C names for the per-class entries (default `class_0`, ...).

    Returns:
        dict: `mean_auc`, `mean_ap` (mAP), `per_class` (name -> `{"auc", "ap", "positives"}`),
        `unscored` (names of classes with one label value in `y_true`).

    Examples:
        >>> import numpy as np
        >>> y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
        >>> s = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.6], [0.1, 0.3]])
        >>> m = multilabel_metrics(y, s, ["effusion", "nodule"])
        >>> m["mean_auc"], m["mean_ap"]
        (1.0, 1.0)
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    y_true, scores = np.asarray(y_true), np.asarray(scores, dtype="float64")
    if y_true.ndim != 2 or scores.shape != y_true.shape:
        raise ValueError(f"`y_true` and `scores` must both be (N, C), got {y_true.shape} and {scores.shape}.")
    if not np.isin(y_true, (0, 1)).all():
        raise ValueError(f"`y_true` must hold 0/1 labels, got values {np.unique(y_true)[:5]}.")
    names = list(class_names) if class_names is not None else [f"class_{i}" for i in range(y_true.shape[1])]
    if len(names) != y_true.shape[1]:
        raise ValueError(f"`class_names` has {len(names)} names for {y_true.shape[1]} classes.")
    per_class, unscored = {}, []
    for i, name in enumerate(names):
        column = y_true[:, i]
        if column.min() == column.max():
            unscored.append(name)
            continue
        per_class[name] = {"auc": float(roc_auc_score(column, scores[:, i])),
                           "ap": float(average_precision_score(column, scores[:, i])),
                           "positives": int(column.sum())}
    if not per_class:
        raise ValueError("No class has both positive and negative images in `y_true`; AUC is undefined.")
    return {"mean_auc": float(np.mean([v["auc"] for v in per_class.values()])),
            "mean_ap": float(np.mean([v["ap"] for v in per_class.values()])),
            "per_class": per_class, "unscored": unscored}
