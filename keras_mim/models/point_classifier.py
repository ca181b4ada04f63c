"""Fine-tuning a Point-MAE encoder for point-cloud classification."""

import keras
from keras import ops

from keras_mim.models.encoder_model import EncoderModel
from keras_mim.models.image_classifier import get_encoder
from keras_mim.models.point_encoder import PointEncoder
from keras_mim.utils import check_positive_int, copy_model


@keras.saving.register_keras_serializable(package="keras_mim")
class PointClassifier(EncoderModel):
    """A classifier over a `PointEncoder`: the group tokens pooled by max and by mean,
    joined, then an MLP head (Dense 256 -> BatchNorm -> ReLU -> Dropout, twice, then Dense
    to the classes) returning logits.

    The official fine-tuning model adds a cls token and joins it with the max-pooled
    tokens; this head joins max and mean pooling instead and needs no new token, so the
    pretrained encoder is used as it is. The classifier trains its own copy of the encoder
    (config and weights): the pretraining model is left as it was.

    Args:
        encoder: a `PointEncoder`, or a model holding one in `.encoder` (a trained `PointMAE`).
        num_classes: number of classes.
        dropout: dropout in the head (official: 0.5).
        hidden_dim: width of the head's hidden layers (256).
        seed: optional int seed of the dropout.
        copy_encoder: train a copy of `encoder` (default), or `encoder` itself.
        **kwargs: standard model arguments.

    Examples:
        >>> import numpy as np, keras
        >>> from keras_mim.models.point_encoder import PointEncoder
        >>> encoder = PointEncoder(num_points=64, num_groups=8, group_size=8, embed_dim=32, depth=1, num_heads=2)
        >>> model = PointClassifier(encoder, num_classes=6)
        >>> model.compile(optimizer="adamw", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        >>> x, y = np.random.rand(8, 64, 3).astype("float32"), np.arange(8) % 6
        >>> history = model.fit(x, y, epochs=1, verbose=0)
        >>> tuple(model.predict(x, verbose=0).shape)
        (8, 6)
    """

    input_verb = "classifies"

    def __init__(self, encoder, num_classes, dropout=0.5, hidden_dim=256, seed=None, copy_encoder=True, **kwargs):
        super().__init__(**kwargs)
        encoder = get_encoder(encoder)
        if not isinstance(encoder, PointEncoder):
            raise TypeError(f"`encoder` must be a PointEncoder (or a model holding one), got {type(encoder).__name__}.")
        self.encoder = copy_model(encoder, name="encoder") if copy_encoder else encoder
        self.num_classes = check_positive_int(num_classes, "num_classes")
        self.dropout, self.hidden_dim, self.seed = float(dropout), check_positive_int(hidden_dim, "hidden_dim"), seed
        p = self.dtype_policy
        self.head_layers = []
        for i in range(2):
            self.head_layers += [keras.layers.Dense(hidden_dim, dtype=p, name=f"head_fc{i + 1}"),
                                 keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, dtype=p, name=f"head_bn{i + 1}"),
                                 keras.layers.ReLU(dtype=p),
                                 keras.layers.Dropout(dropout, seed=None if seed is None else seed + i, dtype=p)]
        self.head = keras.layers.Dense(num_classes, dtype=p, name="head")
        self.build()  # every weight exists now, e.g. for an optimizer's per-variable tables

    def build(self, points_shape=None):
        if self.built:
            return
        width = 2 * self.encoder.embed_dim
        shape = (None, width)
        for layer in self.head_layers:
            layer.build(shape)
            shape = layer.compute_output_shape(shape)
        self.head.build(shape)
        self.built = True

    def call(self, points, training=None):
        tokens = self.encoder(points, training=training)  # (B, G, D)
        x = ops.concatenate([ops.max(tokens, axis=1), ops.mean(tokens, axis=1)], axis=-1)  # (B, 2D)
        for layer in self.head_layers:
            x = layer(x, training=training)
        return self.head(x)

    def get_config(self):
        config = super().get_config()
        config.update(encoder=keras.saving.serialize_keras_object(self.encoder), num_classes=self.num_classes,
                      dropout=self.dropout, hidden_dim=self.hidden_dim, seed=self.seed, copy_encoder=False)
        return config
