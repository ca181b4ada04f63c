"""Anomaly scoring by reconstruction error, the way reconstruction-based detectors use MAE:
a model pretrained on normal images reconstructs hidden patches of normal images well and of
unusual ones badly. Each image's score is its reconstruction error on the hidden patches,
averaged over several fixed masks (the same masks for every image, so scores compare).

Works with the pretraining models that predict their target per token from a mask they
draw with `call(images, noise=...)` (MAE and its pixel / HOG / feature-target relatives:
`model.target`, `model.patch_size`, outputs `pred` and `mask`).
"""

import keras
import numpy as np
from keras import ops

from keras_mim.utils import check_positive_int


def check_scorable(model):
    """Raise a TypeError unless `model` reconstructs hidden tokens from a fixable mask."""
    needed = ("target", "patch_size", "encoder", "random_masking")
    missing = [name for name in needed if getattr(model, name, None) is None]
    if missing:
        raise TypeError(
            f"`model` must be a pretraining model that reconstructs hidden tokens from a mask it draws "
            f"(MaskedAutoencoder, HPM, ...), got {type(model).__name__} without {', '.join(missing)}."
        )
    return model


def fixed_mask_noise(num_masks, num_tokens, seed=0):
    """`(num_masks, num_tokens)` float32 scores fixing `num_masks` masks (lower = kept)."""
    return np.random.default_rng(seed).random((num_masks, num_tokens)).astype("float32")


def hidden_patch_errors(model, images, noise):
    """Per-image mean error on the hidden tokens of the mask `noise` `(N,)` fixes: `(B,)` float32."""
    batch = ops.shape(images)[0]
    out = model(images, noise=ops.tile(ops.convert_to_tensor(noise)[None], (batch, 1)), training=False)
    target = model.target(images, patch_size=model.patch_size)  # (B, N, P) float32
    loss = model.target.loss_per_token(ops.cast(out["pred"], "float32"), target)  # (B, N)
    mask = ops.cast(out["mask"], "float32")
    return ops.sum(loss * mask, axis=1) / ops.maximum(ops.sum(mask, axis=1), 1.0)


def reconstruction_scores(model, images, num_masks=8, seed=0, batch_size=64, verbose=1):
    """Anomaly scores: each image's hidden-patch reconstruction error averaged over
    `num_masks` fixed masks.

    Args:
        model: a pretraining model that reconstructs hidden tokens (see `check_scorable`).
        images: `(M, H, W, C)` float array of the model's input size.
        num_masks: masks per image (the same masks for every image).
        seed: the seed of the masks.
        batch_size: images per model call.
        verbose: 1 shows a progress bar, 0 nothing.

    Returns:
        `(scores, errors)`: `(M,)` float64 means and the `(M, num_masks)` errors behind them.

    Examples:
        >>> import numpy as np
        >>> from keras_mim import MaskedAutoencoder
        >>> model = MaskedAutoencoder.from_preset("mae_vit_test", seed=0)
        >>> scores, errors = reconstruction_scores(model, np.random.rand(5, 16, 16, 3), num_masks=2, verbose=0)
        >>> scores.shape, errors.shape
        ((5,), (5, 2))
    """
    check_scorable(model)
    check_positive_int(num_masks, "num_masks")
    check_positive_int(batch_size, "batch_size")
    images = np.asarray(images, dtype="float32")
    model.encoder.check_images(images, name="images")
    noise = fixed_mask_noise(num_masks, model.encoder.num_patches, seed)
    errors = np.zeros((len(images), num_masks), dtype="float64")
    progress = keras.utils.Progbar(len(images), verbose=verbose, unit_name="image") if verbose else None
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size]
        for k in range(num_masks):
            errors[start:start + len(x), k] = ops.convert_to_numpy(hidden_patch_errors(model, x, noise[k]))
        if progress is not None:
            progress.update(start + len(x))
    return errors.mean(axis=1), errors


def anomaly_auroc(scores, labels):
    """Area under the ROC curve of `scores` (higher = more anomalous) for `labels` (1 =
    anomalous, 0 = normal), by scikit-learn."""
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels)
    if labels.shape != np.shape(scores) or not np.isin(labels, (0, 1)).all() or len(np.unique(labels)) != 2:
        raise ValueError(f"`labels` must be 0 (normal) / 1 (anomalous), both present, one per score; got "
                         f"{labels.shape} labels with values {np.unique(labels)[:5]} for {np.shape(scores)} scores.")
    return float(roc_auc_score(labels, scores))
