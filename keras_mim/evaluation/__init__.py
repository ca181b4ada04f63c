"""Evaluating pretrained encoders: k-NN on frozen features, MAE's linear-probe recipe (its head
started at the features' ridge classifier), V-JEPA's attentive-probe recipe, the encoder of a
saved `.keras` file and labelled evaluation data (images, audio clips, point clouds), anomaly scores by reconstruction error (the probes and the fine-tuned classifier are models:
`keras_mim.models.LinearProbe`, `keras_mim.models.AttentiveProbe`, `keras_mim.models.ImageClassifier`).

Names are imported on first use (PEP 562), so the `keras-mim` commands can check a model file
(`inspect_keras_file`) before Keras is imported.
"""

import importlib

#: Public name -> the module of this package it comes from.
_NAMES = {
    **dict.fromkeys(("anomaly_auroc", "reconstruction_scores"), "anomaly"),
    **dict.fromkeys(("FeatureExtractor", "extract_features", "knn_evaluate", "knn_scores"), "knn"),
    **dict.fromkeys(("first_per_class", "load_labelled_npz", "read_labelled_folder", "scan_labelled_folder",
                     "stratified_split"), "labelled_data"),
    **dict.fromkeys(("builtin_signals", "scan_labelled_signals"), "labelled_signals"),
    **dict.fromkeys(("data_kind", "inspect_keras_file", "load_encoder"), "model_file"),
    **dict.fromkeys(("fit_attentive_probe", "fit_linear_probe"), "probe"),
    "ProbeMonitor": "probe_monitor",
    "ridge_head_init": "ridge_head",
    **dict.fromkeys(("pretraining_value", "random_init_encoder"), "value_check"),
    **dict.fromkeys(("ridge_accuracy", "select_probe_features", "validation_split"), "probe_selection"),
}

__all__ = sorted(_NAMES)


def __getattr__(name):
    if name not in _NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_NAMES[name]}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted({*globals(), *_NAMES})
