"""A stand-in classifier (a model with `.encoder`, `fc_norm` and `head`, as a fine-tuned
ViT) so the optimizer tests depend on no keras_mim model but the encoder."""

import keras
from keras import ops

from keras_mim import ViTEncoder


def tiny_encoder(depth=2, **kwargs):
    """The *_vit_test size: 16 px grayscale, patch 4, 16 tokens, width 32."""
    config = dict(image_size=16, patch_size=4, num_channels=1, embed_dim=32, depth=depth, num_heads=2)
    return ViTEncoder(**dict(config, **kwargs))


@keras.saving.register_keras_serializable(package="keras_mim_tests")
class StandInClassifier(keras.Model):
    """Patch tokens -> LayerNorm (`fc_norm`) -> flattened -> Dense (`head`), logits.

    (Flattened rather than MAE's mean pooling, so that a randomly initialised encoder
    learns digits within the few epochs a test can afford.)
    """

    def __init__(self, encoder, num_classes=10, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.num_classes = num_classes
        self.fc_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="fc_norm")
        self.head = keras.layers.Dense(num_classes, name="head")
        self.build()

    def build(self, input_shape=None):
        if self.built:
            return
        self.fc_norm.build((None, self.encoder.embed_dim))
        self.head.build((None, self.encoder.num_patches * self.encoder.embed_dim))
        self.built = True

    def call(self, images, training=None):
        tokens = self.encoder(images, training=training)[:, self.encoder.num_prefix_tokens :]  # (B, N, D)
        features = ops.reshape(self.fc_norm(tokens), (-1, self.encoder.num_patches * self.encoder.embed_dim))
        return self.head(features)

    def get_config(self):
        config = super().get_config()
        config.update(encoder=keras.saving.serialize_keras_object(self.encoder), num_classes=self.num_classes)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config, encoder=keras.saving.deserialize_keras_object(config["encoder"]))
        return cls(**config)


class KnownGradientClassifier(StandInClassifier):
    """Its loss is `sum_v sum(v * G_v)` over the trainable variables, so every gradient is
    the constant `G_v` whatever the weights: updates can be checked against numpy."""

    def set_gradients(self, gradients):
        """`gradients`: {variable path: array} for every trainable variable."""
        self.known_gradients = {p: ops.convert_to_tensor(g, "float32") for p, g in gradients.items()}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss = ops.cast(0.0, "float32")
        for v in self.trainable_variables:
            loss = loss + ops.sum(ops.cast(v, "float32") * self.known_gradients[v.path])
        return loss
