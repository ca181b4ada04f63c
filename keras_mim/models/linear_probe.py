"""Linear probing of a frozen encoder, as MAE's `main_linprobe.py`."""

import keras
import numpy as np

from keras_mim.layers.token_ops import default_pooling
from keras_mim.models.image_classifier import ImageClassifier, get_encoder


@keras.saving.register_keras_serializable(package="keras_mim")
class LinearProbe(ImageClassifier):
    """A linear classifier on frozen encoder features, as MAE's linear probing.

    The encoder (a copy, see `ImageClassifier`) is frozen and always runs in inference
    mode (no drop path); only a BatchNormalization without affine parameters
    (epsilon 1e-6, momentum 0.9 = PyTorch's 0.1) and a Dense head (truncated normal init, std 0.01) train. The
    BatchNorm standardises the features per channel, which is what lets one learning
    rate suit encoders whose features have very different scales (MAE's Appendix A.2).

    Its moving statistics start at mean 0 and variance 1, as Keras' (and PyTorch's), and
    move 10% of the way to each training batch's, so a short probe would be scored with
    statistics far from its features': a pretrained encoder's features can vary by 1e-4
    or less per channel, and after 36 steps the moving variance is still 0.9^36 = 2% of
    its start, hundreds to thousands of times theirs (a 3-epoch probe on digits: 0.80 on
    train, 0.22 on test). `adapt(images)` (or `set_feature_statistics(features)`) sets them
    to the training features' mean and variance, computed in one pass, before training;
    `keras_mim.evaluation.fit_linear_probe` and `keras-mim probe` do, and keep them fixed
    while the head trains (where MAE's 90 epochs of updates end). Both also start the head
    at the ridge classifier of the standardised features instead of these random weights
    (`keras_mim.evaluation.ridge_head_init`), so 3 epochs score close to 90. A plain
    `fit` of this model updates the statistics from each batch, as any BatchNorm.

    Pooling as `ImageClassifier`: `"cls"` (MAE's linear-probe default, used when the
    encoder has a cls token) is the cls token after the final norm; `"avg"` averages
    the last block's patch tokens and applies a LayerNorm with identity affine (the
    official probe's frozen fresh `fc_norm`). With `block`, the probe reads an earlier
    block's output instead (pooled the same way, then that frozen `fc_norm`): in
    MAE-style encoders the best linear features often sit below the last block, which is
    shaped by the reconstruction task (`keras_mim.evaluation.select_probe_features` picks
    the block and pooling on a validation split).

    Args:
        encoder: a `ViTEncoder`, or a model holding one in `.encoder`.
        num_classes: number of classes.
        pooling: `"cls"`, `"avg"` or None (cls if the encoder has a cls token, else avg).
        head_init_std: std of the head's initial weights (official: 0.01).
        block: None (the encoder's output, as MAE) or the index of the block whose output
            is probed (negative counts from the end; the last block is the same as None).
        **kwargs: `ImageClassifier` arguments (`dropout`, `seed`, `copy_encoder`) and
            standard model arguments (name, dtype).

    Examples:
        >>> import numpy as np, keras
        >>> from keras_mim import ViTEncoder
        >>> encoder = ViTEncoder(image_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2)
        >>> probe = LinearProbe(encoder, num_classes=10)
        >>> probe.pooling, len(probe.trainable_weights)
        ('cls', 2)
        >>> x = np.random.rand(8, 16, 16, 3).astype("float32")
        >>> probe.adapt(x)  # the head norm's moving statistics = the features' (one pass)
        >>> probe.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        >>> history = probe.fit(x, np.arange(8), epochs=1, verbose=0)
    """

    def __init__(self, encoder, num_classes, pooling=None, head_init_std=0.01, block=None, **kwargs):
        if "drop_path_rate" in kwargs and kwargs["drop_path_rate"] not in (None, 0, 0.0):
            raise ValueError(
                f"A linear probe runs its frozen encoder in inference mode; `drop_path_rate`="
                f"{kwargs['drop_path_rate']!r} would have no effect (leave it unset)."
            )
        kwargs.pop("drop_path_rate", None)
        if pooling is None:
            pooling = default_pooling(get_encoder(encoder))
        super().__init__(encoder, num_classes, pooling=pooling, head_init_std=head_init_std, block=block, **kwargs)
        # Through the setter itself, on every construction (see TeacherFeatures): frozen
        # also after a `.keras` round trip, on every backend.
        keras.layers.Layer.trainable.fset(self.encoder, False)
        if self.fc_norm is not None:
            keras.layers.Layer.trainable.fset(self.fc_norm, False)

    def make_head_norm(self):
        return keras.layers.BatchNormalization(
            center=False, scale=False, epsilon=1e-6, momentum=0.9, dtype=self.dtype_policy, name="head_norm"
        )

    def forward_features(self, images, training=None):
        return super().forward_features(images, training=False)  # frozen: inference mode

    def predict_features(self, images, batch_size=256):
        """Pooled frozen features of `images` as numpy `(N, D)` (what the head reads).

        The encoder is frozen and runs in inference mode, so a probe trained without
        image augmentation can be fitted on these once-computed features with
        `head_model()`, which is exactly training the whole probe, many times faster.
        """
        self.encoder.check_images(images)
        chunks = [
            keras.ops.convert_to_numpy(self.forward_features(images[i : i + batch_size]))
            for i in range(0, len(images), batch_size)
        ]
        return np.concatenate(chunks).astype("float32")

    def set_feature_statistics(self, features):
        """Set the head BatchNorm's moving mean and variance to those of `features`.

        Call it with the frozen features of the training images (`predict_features`)
        before training, so the probe is scored with its features' statistics however
        short the training (see the class docstring); training updates them as usual.

        Args:
            features: `(N, D)` pooled features (N >= 2, D = the encoder's `output_dim`).
                Mean and (biased, as BatchNorm's) variance are computed in float64.
        """
        features = np.asarray(features)
        dim = self.encoder.output_dim
        if features.ndim != 2 or features.shape[1] != dim or len(features) < 2:
            raise ValueError(f"`features` must be (N, {dim}) pooled encoder features with N >= 2, "
                             f"got shape {features.shape}.")
        mean = features.mean(axis=0, dtype="float64")
        if not np.isfinite(mean).all():
            raise ValueError("`features` hold NaN or infinite values.")
        chunk = 65536  # no float64 copy of all the features at once
        var = sum(np.square(features[i : i + chunk] - mean).sum(axis=0) for i in range(0, len(features), chunk))
        self.head_norm.moving_mean.assign(mean.astype("float32"))
        self.head_norm.moving_variance.assign((var / len(features)).astype("float32"))

    def adapt(self, images, batch_size=256):
        """`set_feature_statistics(predict_features(images, batch_size))`: the head norm's
        moving statistics become those of the frozen features of `images` (an array)."""
        self.set_feature_statistics(self.predict_features(images, batch_size=batch_size))

    def head_model(self):
        """The trainable part as a Keras model on features `(B, D)`: it shares this probe's
        layers, so fitting it trains the probe."""
        head = keras.Sequential([self.head_norm, self.head_drop, self.head], name=f"{self.name}_head")
        head.build((None, self.encoder.output_dim))
        return head

    def get_config(self):
        config = super().get_config()
        config.pop("drop_path_rate")
        return config

