"""Fine-tuning a pretrained encoder for classification, as MAE's `models_vit.py`."""

import keras

from keras_mim.layers.layer_norm import LayerNorm
from keras_mim.layers.token_ops import check_pooling, pool_tokens
from keras_mim.models.encoder_model import EncoderModel, copy_model
from keras_mim.models.pretraining_model import check_encoder
from keras_mim.utils import check_positive_int


def get_encoder(model):
    """The encoder inside `model`: `model` itself if it is one, else `model.encoder`
    (a pretraining model, a classifier, a probe)."""
    if (hasattr(model, "blocks") or hasattr(model, "forward_stages")) and hasattr(model, "num_prefix_tokens"):
        return model
    encoder = getattr(model, "encoder", None)
    if encoder is None:
        raise TypeError(
            f"Expected an encoder (e.g. ViTEncoder) or a model with an `.encoder` (a pretraining "
            f"model, a classifier), got {type(model).__name__}."
        )
    return encoder


@keras.saving.register_keras_serializable(package="keras_mim")
class ImageClassifier(EncoderModel):
    """A classifier over a keras_mim encoder, set up as MAE's fine-tuning.

    `pooling="avg"` (MAE's fine-tuning default) averages the patch tokens of the last
    block *before* the encoder's final norm and normalises the mean with a fresh
    `fc_norm` (the encoder's own final norm is not used, as the official code deletes
    it; its variables are frozen). `pooling="cls"` takes the cls token after the
    final norm. The head is a Dense layer initialised with a truncated normal of
    std 2e-5 (official fine-tuning) and zero bias; it returns logits. With `block`, an
    earlier block's output is pooled (either way) and normalised by `fc_norm` instead: the
    blocks after it and the final norm are frozen and unused (their output would be
    discarded; they still run, so this saves no compute).

    The classifier trains its own copy of the encoder (config and weights), so the
    pretraining model the encoder came from is left as it was, and several heads can
    be fine-tuned from one pretrained encoder. Clips work too (a video encoder).
    A convolutional encoder (`ConvNeXtEncoder`, `SparseCNN`, e.g. from FCMAE or SparK)
    is pooled as ConvNeXt's classifier: the mean of its last stage, then `fc_norm`
    (official ConvNeXt V2; a ResNet's own head has no norm there).

    Args:
        encoder: a `ViTEncoder` or a convolutional encoder, or a model holding one in
            `.encoder` (e.g. a trained `MaskedAutoencoder`).
        num_classes: number of classes.
        pooling: `"avg"` or `"cls"` (needs an encoder with a cls token).
        drop_path_rate: stochastic depth of the fine-tuned encoder (MAE: 0.1 for ViT-B,
            0.2 for ViT-L); None keeps the encoder's.
        dropout: dropout before the head (MAE: 0).
        head_init_std: std of the head's initial weights.
        seed: optional int seed of the head dropout.
        block: None (the encoder's last block) or the index of the block whose output is
            read (negative counts from the end; the last block is the same as None).
        copy_encoder: train a copy of `encoder` (default). False trains `encoder` itself
            (only possible when `drop_path_rate` is None or already the encoder's).
        **kwargs: standard model arguments (name, dtype).

    Examples:
        >>> import numpy as np, keras
        >>> from keras_mim import ViTEncoder
        >>> encoder = ViTEncoder(image_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2)
        >>> model = ImageClassifier(encoder, num_classes=10, drop_path_rate=0.1)
        >>> model.compile(optimizer="adamw", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        >>> x, y = np.random.rand(8, 16, 16, 3).astype("float32"), np.arange(8) % 10
        >>> history = model.fit(x, y, epochs=1, verbose=0)
        >>> tuple(model.predict(x, verbose=0).shape)
        (8, 10)
    """

    input_verb = "classifies"

    def __init__(
        self,
        encoder,
        num_classes,
        pooling="avg",
        drop_path_rate=None,
        dropout=0.0,
        head_init_std=2e-5,
        seed=None,
        copy_encoder=True,
        block=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        encoder = check_encoder(get_encoder(encoder), type(self).__name__)
        self.num_classes = check_positive_int(num_classes, "num_classes")
        self.pooling = check_pooling(encoder, pooling, "a classifier")
        self.block = check_block(encoder, block)
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1), got {dropout!r}.")
        if drop_path_rate is not None and not 0.0 <= float(drop_path_rate) < 1.0:
            raise ValueError(f"`drop_path_rate` must be in [0, 1), got {drop_path_rate!r}.")
        new_rate = drop_path_rate is not None and float(drop_path_rate) != encoder.drop_path_rate
        if new_rate and not copy_encoder:
            raise ValueError(
                f"`drop_path_rate`={drop_path_rate!r} differs from the encoder's "
                f"({encoder.drop_path_rate}); that needs `copy_encoder=True`."
            )
        if copy_encoder:
            overrides = {"drop_path_rate": float(drop_path_rate)} if new_rate else {}
            encoder = copy_model(encoder, **overrides)
        self.encoder = encoder
        self.drop_path_rate = encoder.drop_path_rate
        self.dropout = float(dropout)
        self.head_init_std = float(head_init_std)
        self.seed = seed
        p = self.dtype_policy
        self.fc_norm = None
        if self.pooling == "avg" or self.block is not None:
            self.fc_norm = LayerNorm(epsilon=encoder.norm_epsilon, dtype=p, name="fc_norm")
            if getattr(encoder, "norm", None) is not None:  # unused, as the official `del self.norm`
                keras.layers.Layer.trainable.fset(encoder.norm, False)
        for unused in encoder.blocks[self.block + 1 :] if self.block is not None else ():
            keras.layers.Layer.trainable.fset(unused, False)
        self.head_norm = self.make_head_norm()
        self.head_drop = keras.layers.Dropout(self.dropout, seed=seed, dtype=p, name="head_drop")
        self.head = keras.layers.Dense(
            self.num_classes,
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=self.head_init_std, seed=seed),
            dtype=p,
            name="head",
        )
        self.build()

    def make_head_norm(self):
        """A normalisation between the pooled features and the head (none here)."""
        return None

    def build(self, images_shape=None):
        if not self.encoder.built:
            self.encoder.build()
        feature_shape = (None, self.encoder.output_dim)
        if self.fc_norm is not None:
            self.fc_norm.build(feature_shape)
        if self.head_norm is not None:
            self.head_norm.build(feature_shape)
        self.head.build(feature_shape)
        self.built = True

    def forward_features(self, images, training=None):
        """Pooled features `(B, D)` the head reads."""
        enc = self.encoder
        if hasattr(enc, "pooled_features"):  # a convolutional encoder: ConvNeXt's head, norm after the mean
            return self.fc_norm(enc.pooled_features(images, training=training))
        if self.pooling == "cls" and self.block is None:
            return pool_tokens(enc(images, training=training), "cls", enc.num_prefix_tokens)
        block = -1 if self.block is None else self.block
        _, [out] = enc.forward_features(images, [block], training=training)  # (B, [1+]N, D), before the final norm
        return self.fc_norm(pool_tokens(out, self.pooling, enc.num_prefix_tokens))

    def forward_head(self, features, training=None):
        """`(B, D) -> (B, num_classes)` logits."""
        if self.head_norm is not None:
            features = self.head_norm(features, training=training)
        return self.head(self.head_drop(features, training=training))

    def call(self, images, training=None):
        self.encoder.check_images(images)
        return self.forward_head(self.forward_features(images, training=training), training=training)

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        return cls(**config, copy_encoder=False)  # the loaded encoder is already this model's own

    def get_config(self):
        config = super().get_config()
        config.update(
            encoder=keras.saving.serialize_keras_object(self.encoder),
            num_classes=self.num_classes,
            pooling=self.pooling,
            drop_path_rate=self.drop_path_rate,
            dropout=self.dropout,
            head_init_std=self.head_init_std,
            seed=self.seed,
            block=self.block,
        )
        return config


def check_block(encoder, block):
    """`block` as a non-negative index below the encoder's last block, or None for the last
    block (the encoder's output); raises ValueError naming it otherwise."""
    if block is None:
        return None
    if hasattr(encoder, "pooled_features"):
        raise ValueError(f"`block` applies to ViT encoders; a {type(encoder).__name__} is pooled at its last stage "
                         f"(block=None), got {block!r}.")
    depth = encoder.depth
    if isinstance(block, bool) or not isinstance(block, int) or not -depth <= block < depth:
        raise ValueError(f"`block` must be None or a block index in [{-depth}, {depth - 1}] for an encoder of "
                         f"depth {depth}, got {block!r}.")
    block %= depth
    return None if block == depth - 1 else block
