"""Pretraining methods by name: which model class, with which settings.

`keras-mim pretrain --method NAME` and `get_method(NAME)` read this table. A method
is a pretraining class plus the arguments that make it the published method (MaskFeat
is the mask-token model with a HOG target); the architecture comes from a preset.
Two-view methods also name, in `views`, the recipe that makes their input pairs
(`{"reference": ..., "target": ...}`, see `SiameseMAE`).
"""

import keras

METHODS = {
    "mae": dict(model="MaskedAutoencoder", pixels=True,
                description="MAE: visible-only encoder, light decoder, pixel loss on hidden patches."),
    "simmim": dict(model="SimMIM", pixels=True,
                   description="SimMIM: mask tokens, coarse masks, pixel-shuffle head, L1 on hidden pixels."),
    "maskfeat": dict(model="SimMIM", kwargs={"target": "hog", "mask_generator": "block", "mask_ratio": 0.4},
                     description="MaskFeat: mask tokens, block masks, HOG features of hidden patches."),
    "mfm": dict(model="MFM",
                description="MFM: low/high-pass filtered image in, loss on the removed frequencies."),
    "maskalign": dict(model="MaskAlign", teacher=True,
                      description="MaskAlign: visible tokens aligned with a frozen teacher's features, no decoder."),
    "mrmae": dict(model="MRMAE", teacher=True, pixels=True,
                  description="MR-MAE: MAE plus mimicking a frozen teacher on visible tokens."),
    "data2vec": dict(model="Data2Vec",
                     description="data2vec-style: mask tokens, regress top-K layers of an EMA teacher."),
    "hpm": dict(model="HPM", pixels=True,
                description="HPM: MAE plus a loss predictor that hides the hardest patches."),
    "cropmae": dict(model="SiameseMAE", pixels=True, views="cropmae", kwargs={"mask_ratio": 0.985},
                    description="CropMAE: a local crop, 98.5% hidden, rebuilt from its global crop "
                                "through a cross-attention decoder."),
    "siammae": dict(model="SiameseMAE", pixels=True, views="siammae", kwargs={"mask_ratio": 0.95},
                    description="SiamMAE: a video frame, 95% hidden, rebuilt from an earlier frame "
                                "through a cross-attention decoder."),
    "videomae": dict(model="VideoMAE", pixels=True, video=True,
                     description="VideoMAE: MAE on clips, tubelet tokens, tube masks at 0.9."),
    "videomaev2": dict(model="VideoMAE", pixels=True, video=True,
                       kwargs={"decoder_mask_generator": "running_cell", "decoder_mask_ratio": 0.5},
                       description="VideoMAE V2: dual masking, the decoder reconstructs a running-cell subset."),
}


def get_method(name):
    """`(model_class, kwargs)` of a method name in `METHODS`."""
    if name not in METHODS:
        raise ValueError(f"Unknown method {name!r}; expected one of {sorted(METHODS)}.")
    spec = METHODS[name]
    import keras_mim.models  # noqa: F401  (registers every class)

    return keras.saving.get_registered_object(f"keras_mim>{spec['model']}"), dict(spec.get("kwargs", {}))
