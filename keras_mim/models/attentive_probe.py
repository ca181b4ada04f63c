"""Attentive probing of a frozen encoder, as V-JEPA's `AttentiveClassifier`
(`src/models/attentive_pooler.py`, `evals/image_classification_frozen`)."""

import math

import keras
import numpy as np
from keras import ops

from keras_mim.layers.cross_attention import MultiHeadCrossAttention
from keras_mim.layers.layer_norm import LayerNorm
from keras_mim.layers.mlp import MLP
from keras_mim.models.encoder_model import EncoderModel, copy_model
from keras_mim.models.image_classifier import check_block, get_encoder
from keras_mim.models.pretraining_model import check_encoder
from keras_mim.utils import check_positive_int


@keras.saving.register_keras_serializable(package="keras_mim")
class AttentiveProbe(EncoderModel):
    """A frozen encoder, learned queries that cross-attend to all its output tokens, and a
    linear head: the attentive probe that V-JEPA and I-JEPA-style encoders are scored with
    (their features are not linearly separable from one pooled vector).

    The encoder (a copy, as `ImageClassifier`'s, unless `copy_encoder=False`) is frozen and
    always runs in inference mode, as in `LinearProbe`. Every token it outputs is a key and
    value: the patch tokens and, if it has one, the cls token (the official pooler attends
    over everything the encoder returns; JEPA encoders have no cls token), after the final
    norm, or with `block` that block's output (before the final norm; the pooler normalises
    the tokens itself). Then, per query `q` (`num_queries` learned `(D,)` vectors, shared by
    all images) and tokens `x`, the official `CrossAttentionBlock`:

        q = q + CrossAttention(q, LN(x))      # the tokens are normalised, not the query
        q = q + MLP(LN(q))                    # exact GELU, hidden 4 D
        logits = Dense(q)                     # no norm before the head

    where `CrossAttention` is `softmax(q Wq (x Wk)^T / sqrt(D / heads)) x Wv` per head (biases
    on q, k, v) with the heads concatenated and *no* output projection: the official class
    declares one but its `forward` does not apply it (a change that applied it was reverted
    because it broke the evaluations, and V-JEPA 2 dropped it). Initialisation as the official:
    queries and the pooler's Dense kernels normal with std `init_std` (0.02; torch's
    `trunc_normal_` cuts at +-2 absolute, i.e. not at all for this std), zero biases, the
    MLP's second kernel divided by sqrt(2), LayerNorms 1 / 0 with torch's epsilon 1e-5, and
    the head as a torch `nn.Linear` (weights and bias uniform in +-1/sqrt(fan_in)).

    `standardize_tokens=True` (not official) puts a BatchNormalization without affine
    parameters (epsilon 1e-6) in front of the pooler, frozen in inference mode, whose
    statistics `adapt(images)` / `set_token_statistics(tokens)` set to the per-channel mean
    and variance of the training tokens (over images and positions), as `LinearProbe`
    standardises its features. Short-pretrained encoders give tokens that barely vary between
    images (an I-JEPA nano ViT after 2 epochs on digits: std per channel 0.002 across images
    at the first position, 0.036 across positions, 1.0 across channels), which the per-token
    LayerNorm keeps: the official probe then stayed near chance (`keras-mim probe --head
    attentive --standardize-tokens false`: test 0.21), standardised it scored 0.96 (the linear
    probe: 0.98; `docs/evaluation.md`). Until the statistics are set they are 0 and 1.

    Differences from the official code: `num_queries > 1` concatenates the queries' outputs
    before the head (the official classifier has one query and squeezes it); the official
    `depth > 1` (self-attention blocks over the queries in V-JEPA, over the tokens in V-JEPA
    2's 4-block probe) is not offered (V-JEPA's image evaluation uses `depth=1`). The
    official recipe (AdamW, lr 1e-3 cosine to 0, weight decay 1e-3, 20 epochs, batch 1024,
    training images augmented) is `keras_mim.evaluation.fit_attentive_probe`'s, which trains on
    once-computed tokens instead (no augmentation, as `keras-mim probe`).

    Args:
        encoder: a `ViTEncoder`, or a model holding one in `.encoder`.
        num_classes: number of classes.
        num_queries: learned queries (official: 1).
        num_heads: attention heads; must divide the encoder's width. None takes the
            encoder's (as the official evaluation).
        mlp_ratio: MLP hidden width / token width (official: 4).
        block: None (the encoder's output, as the official) or the index of the block whose
            output is read (negative counts from the end; the last block is the same as None).
        norm_epsilon: epsilon of the pooler's two LayerNorms (official: torch's 1e-5).
        qkv_bias: biases on the q and kv projections (official: True).
        init_std: std of the queries' and the pooler's Dense kernels (official: 0.02).
        output_projection: apply an output projection after the attention (not official).
        standardize_tokens: standardise the tokens per channel first (not official; see above).
        seed: optional int seed of the initial weights.
        copy_encoder: probe a copy of `encoder` (default) or `encoder` itself.
        **kwargs: standard model arguments (name, dtype).

    Examples:
        >>> import numpy as np, keras
        >>> from keras_mim import ViTEncoder
        >>> encoder = ViTEncoder(image_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2)
        >>> probe = AttentiveProbe(encoder, num_classes=10, seed=0)
        >>> probe.num_heads, len(probe.encoder.trainable_weights)
        (2, 0)
        >>> probe.compile(optimizer="adamw", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        >>> x = np.random.rand(8, 16, 16, 3).astype("float32")
        >>> history = probe.fit(x, np.arange(8), epochs=1, verbose=0)
        >>> tuple(probe.predict(x, verbose=0).shape)
        (8, 10)
    """

    input_verb = "classifies"

    def __init__(
        self,
        encoder,
        num_classes,
        num_queries=1,
        num_heads=None,
        mlp_ratio=4.0,
        block=None,
        norm_epsilon=1e-5,
        qkv_bias=True,
        init_std=0.02,
        output_projection=False,
        standardize_tokens=False,
        seed=None,
        copy_encoder=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        encoder = check_encoder(get_encoder(encoder), type(self).__name__)
        self.num_classes = check_positive_int(num_classes, "num_classes")
        self.num_queries = check_positive_int(num_queries, "num_queries")
        dim = encoder.output_dim
        if num_heads is None and getattr(encoder, "num_heads", None) is None:
            raise ValueError(f"`num_heads`=None takes the encoder's, but {type(encoder).__name__} has none; pass it.")
        self.num_heads = check_positive_int(encoder.num_heads if num_heads is None else num_heads, "num_heads")
        if dim % self.num_heads:
            raise ValueError(f"`num_heads`={self.num_heads} must divide the encoder's width {dim}.")
        self.block = check_block(encoder, block)
        for name, value in (("mlp_ratio", mlp_ratio), ("norm_epsilon", norm_epsilon), ("init_std", init_std)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ValueError(f"`{name}` must be a positive number, got {value!r}.")
        if int(dim * mlp_ratio) < 1:
            raise ValueError(f"`mlp_ratio`={mlp_ratio!r} leaves no hidden units for the width {dim}.")
        self.mlp_ratio, self.norm_epsilon, self.init_std = float(mlp_ratio), float(norm_epsilon), float(init_std)
        self.qkv_bias, self.output_projection = bool(qkv_bias), bool(output_projection)
        self.standardize_tokens = bool(standardize_tokens)
        self.seed = seed
        self.encoder = copy_model(encoder) if copy_encoder else encoder
        # Through the setter itself, on every construction (see LinearProbe): frozen also after
        # a `.keras` round trip, on every backend.
        keras.layers.Layer.trainable.fset(self.encoder, False)
        p = self.dtype_policy
        self.token_norm = None
        if self.standardize_tokens:
            self.token_norm = keras.layers.BatchNormalization(center=False, scale=False, epsilon=1e-6, dtype=p,
                                                              name="token_norm")
            keras.layers.Layer.trainable.fset(self.token_norm, False)  # inference mode: the statistics set
        self.context_norm = LayerNorm(epsilon=self.norm_epsilon, dtype=p, name="context_norm")  # official norm1
        self.cross_attn = MultiHeadCrossAttention(self.num_heads, self.qkv_bias, output_projection=output_projection,
                                                  dtype=p, name="cross_attn")  # official xattn
        self.mlp_norm = LayerNorm(epsilon=self.norm_epsilon, dtype=p, name="mlp_norm")  # official norm2
        self.mlp = MLP(self.mlp_ratio, dtype=p, name="mlp")
        fan_in = self.num_queries * dim
        bound = 1.0 / math.sqrt(fan_in)  # torch nn.Linear's default init
        self.head = keras.layers.Dense(
            self.num_classes, dtype=p, name="head",
            kernel_initializer=keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform", seed=self._seed(0)),
            bias_initializer=keras.initializers.RandomUniform(-bound, bound, seed=self._seed(1)),
        )
        self.build()

    def _seed(self, offset):
        return None if self.seed is None else int(self.seed) + offset

    @property
    def num_tokens(self):
        """Tokens the encoder outputs per image (keys and values of the attention)."""
        return math.prod(self.encoder.output_grid_shape) + self.encoder.num_prefix_tokens

    def build(self, images_shape=None):
        if self.built:  # built by the constructor: every shape is known from the config
            return
        if not self.encoder.built:
            self.encoder.build()
        dim = self.encoder.output_dim
        tokens_shape, query_shape = (None, self.num_tokens, dim), (None, self.num_queries, dim)

        def normal(offset):
            return keras.initializers.RandomNormal(stddev=self.init_std, seed=self._seed(offset))

        self.query = self.add_weight(shape=(1, self.num_queries, dim), initializer=normal(2), name="query")
        if self.token_norm is not None:
            self.token_norm.build(tokens_shape)
        self.context_norm.build(tokens_shape)
        self.cross_attn.build(query_shape, tokens_shape)
        self.mlp_norm.build(query_shape)
        self.mlp.build(query_shape)
        # the official `_init_weights` (normal kernels, zero biases) and `_rescale_blocks` (fc2 / sqrt(2))
        kernels = [(self.cross_attn.q, 1.0), (self.cross_attn.kv, 1.0), (self.mlp.fc1, 1.0),
                   (self.mlp.fc2, 1 / math.sqrt(2.0))]
        if self.output_projection:
            kernels.append((self.cross_attn.proj, 1 / math.sqrt(2.0)))
        for offset, (dense, scale) in enumerate(kernels, start=3):
            dense.kernel.assign(normal(offset)(dense.kernel.shape, dense.kernel.dtype) * scale)
        self.head.build((None, self.num_queries * dim))
        self.built = True

    def forward_tokens(self, images):
        """The frozen encoder's tokens `(B, T, D)` the queries attend to (inference mode)."""
        enc = self.encoder
        if self.block is None:
            return enc(images, training=False)  # (B, [1+]N, D), after the final norm
        _, [tokens] = enc.forward_features(images, [self.block], training=False)
        return tokens  # (B, [1+]N, D), before the final norm

    def pool(self, tokens):
        """`(B, T, D)` tokens -> `(B, num_queries * D)`: the official `AttentivePooler`."""
        dim = self.encoder.output_dim
        # (B, 1, 1) zeros + (1, Q, D): the queries per image, also for a symbolic batch size
        q = ops.zeros_like(tokens[:, :1, :1]) + ops.cast(self.query, tokens.dtype)  # (B, Q, D)
        if self.token_norm is not None:
            tokens = self.token_norm(tokens, training=False)
        q = q + self.cross_attn(q, self.context_norm(tokens))  # (B, Q, D)
        q = q + self.mlp(self.mlp_norm(q))
        return ops.reshape(q, (-1, self.num_queries * dim))

    def forward_head(self, tokens):
        """`(B, T, D)` frozen tokens -> `(B, num_classes)` logits."""
        return self.head(self.pool(tokens))

    def call(self, images, training=None):
        self.encoder.check_images(images)
        return self.forward_head(self.forward_tokens(images))

    def predict_tokens(self, images, batch_size=256):
        """The frozen tokens of `images` as numpy `(N, T, D)` float32 (what the queries attend
        to): without image augmentation, fitting `head_model()` on them is exactly training
        the whole probe, without running the encoder at every step."""
        self.encoder.check_images(images)
        batch_size = check_positive_int(batch_size, "batch_size")
        chunks = [keras.ops.convert_to_numpy(self.forward_tokens(images[i : i + batch_size]))
                  for i in range(0, len(images), batch_size)]
        return np.concatenate(chunks).astype("float32")

    def set_token_statistics(self, tokens):
        """Set the token BatchNorm's moving mean and variance (`standardize_tokens=True`) to
        the per-channel statistics of `tokens` `(N, T, D)` (`predict_tokens` of the training
        images), over images and positions, in float64 (biased variance, as BatchNorm's)."""
        if self.token_norm is None:
            raise ValueError("`set_token_statistics` needs a probe built with `standardize_tokens=True`.")
        tokens = np.asarray(tokens)
        shape = (self.num_tokens, self.encoder.output_dim)
        if tokens.ndim != 3 or tokens.shape[1:] != shape or len(tokens) < 1:
            raise ValueError(f"`tokens` must be (N, {shape[0]}, {shape[1]}) encoder tokens with N >= 1, "
                             f"got shape {tokens.shape}.")
        chunk = max(1, 65536 // shape[0])  # no float64 copy of all the tokens at once
        parts = range(0, len(tokens), chunk)
        mean = sum(tokens[i : i + chunk].sum(axis=(0, 1), dtype="float64") for i in parts) / (len(tokens) * shape[0])
        if not np.isfinite(mean).all():
            raise ValueError("`tokens` hold NaN or infinite values.")
        var = sum(np.square(tokens[i : i + chunk] - mean).sum(axis=(0, 1)) for i in parts) / (len(tokens) * shape[0])
        self.token_norm.moving_mean.assign(mean.astype("float32"))
        self.token_norm.moving_variance.assign(var.astype("float32"))

    def adapt(self, images, batch_size=256):
        """`set_token_statistics(predict_tokens(images, batch_size))`."""
        self.set_token_statistics(self.predict_tokens(images, batch_size=batch_size))

    def head_model(self):
        """The trainable part as a Keras model on tokens `(B, T, D)` (`predict_tokens`): it
        shares this probe's weights, so fitting it trains the probe."""
        tokens = keras.Input((self.num_tokens, self.encoder.output_dim))
        return keras.Model(tokens, _ProbeHead(self)(tokens), name=f"{self.name}_head")

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
            num_queries=self.num_queries,
            num_heads=self.num_heads,
            mlp_ratio=self.mlp_ratio,
            block=self.block,
            norm_epsilon=self.norm_epsilon,
            qkv_bias=self.qkv_bias,
            init_std=self.init_std,
            output_projection=self.output_projection,
            standardize_tokens=self.standardize_tokens,
            seed=self.seed,
        )
        return config


class _ProbeHead(keras.layers.Layer):
    """The probe's pooler and head as one layer of `head_model()`: it tracks their weights
    (not the frozen encoder's) and calls `AttentiveProbe.forward_head`."""

    def __init__(self, probe, **kwargs):
        super().__init__(name="attentive_head", dtype=probe.dtype_policy, **kwargs)
        self.forward = probe.forward_head  # a bound method: not tracked, so the encoder is not either
        self.parts = [probe.context_norm, probe.cross_attn, probe.mlp_norm, probe.mlp, probe.head]
        if probe.token_norm is not None:
            self.parts.append(probe.token_norm)
        self.query = probe.query
        self.built = True

    def call(self, tokens):
        return self.forward(tokens)
