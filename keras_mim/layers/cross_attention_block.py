"""The decoder block of SiamMAE / CropMAE: cross-attention, feed-forward, self-attention."""

import keras

from keras_mim.layers.layer_norm import LayerNorm
from keras_mim.layers.attention import MultiHeadSelfAttention
from keras_mim.layers.cross_attention import MultiHeadCrossAttention
from keras_mim.layers.mlp import MLP


@keras.saving.register_keras_serializable(package="keras_mim")
class CrossAttentionBlock(keras.layers.Layer):
    """Tokens attend to a context sequence, then go through an MLP, then attend to each
    other; each of the three branches has a residual connection and a LayerNorm.

    Post-norm (`norm_first=False`, the official default), per branch `f`:
    `x = LN(x + f(x))`. Pre-norm (`norm_first=True`): `x = x + f(LN(x))`. The context
    is never normalised by the block (it is the encoder's output). This is the official
    `DecoderBlock` of SiamMAE / CropMAE (a `torch.nn.TransformerDecoderLayer` with
    cross-attention first and self-attention last); its defaults are
    `dim_feedforward=2048` on a 256-wide decoder, i.e. `mlp_ratio=8.0`, dropout 0.1,
    exact GELU and LayerNorm epsilon 1e-6. Layer names map to the official ones:
    `cross_attn`/`cross_norm` = `multihead_attn`/`norm2`, `mlp`/`mlp_norm` =
    `linear1, linear2`/`norm3`, `self_attn`/`self_norm` = `self_attn`/`norm1`.

    Args:
        num_heads: attention heads of both attentions.
        mlp_ratio: MLP hidden width / token width (official: 2048 / 256 = 8).
        dropout: dropout rate after each attention's output projection and inside and
            after the MLP (official: 0.1).
        norm_first: pre-norm instead of the official post-norm.
        norm_epsilon: LayerNorm epsilon (official: 1e-6).
        qkv_bias: bias on the q/kv/qkv projections (torch: True).
        seed: optional int seed of the cross-attention dropout.
        **kwargs: standard layer arguments.

    Examples:
        >>> import numpy as np
        >>> block = CrossAttentionBlock(num_heads=2, mlp_ratio=2.0)
        >>> tuple(block(np.zeros((2, 5, 16), "float32"), np.zeros((2, 9, 16), "float32")).shape)
        (2, 5, 16)
    """

    def __init__(
        self,
        num_heads,
        mlp_ratio=8.0,
        dropout=0.1,
        norm_first=False,
        norm_epsilon=1e-6,
        qkv_bias=True,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.mlp_ratio = float(mlp_ratio)
        self.dropout = float(dropout)
        self.norm_first = bool(norm_first)
        self.norm_epsilon = float(norm_epsilon)
        self.qkv_bias = bool(qkv_bias)
        self.seed = seed
        p = self.dtype_policy
        self.cross_norm = LayerNorm(epsilon=norm_epsilon, dtype=p, name="cross_norm")
        self.cross_attn = MultiHeadCrossAttention(num_heads, qkv_bias, dropout, seed=seed, dtype=p,
                                                  name="cross_attn")
        self.mlp_norm = LayerNorm(epsilon=norm_epsilon, dtype=p, name="mlp_norm")
        self.mlp = MLP(mlp_ratio, dropout, dtype=p, name="mlp")
        self.self_norm = LayerNorm(epsilon=norm_epsilon, dtype=p, name="self_norm")
        self.self_attn = MultiHeadSelfAttention(num_heads, qkv_bias, dropout, dtype=p, name="self_attn")

    def build(self, x_shape, context_shape=None):
        context_shape = x_shape if context_shape is None else context_shape
        self.cross_attn.build(x_shape, context_shape)
        for layer in (self.cross_norm, self.mlp_norm, self.mlp, self.self_norm, self.self_attn):
            layer.build(x_shape)

    def _residual(self, x, norm, branch):
        if self.norm_first:
            return x + branch(norm(x))
        return norm(x + branch(x))

    def call(self, x, context, training=None):
        x = self._residual(x, self.cross_norm, lambda h: self.cross_attn(h, context, training=training))
        x = self._residual(x, self.mlp_norm, lambda h: self.mlp(h, training=training))
        return self._residual(x, self.self_norm, lambda h: self.self_attn(h, training=training))

    def compute_output_shape(self, x_shape, context_shape=None):
        return x_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            num_heads=self.num_heads,
            mlp_ratio=self.mlp_ratio,
            dropout=self.dropout,
            norm_first=self.norm_first,
            norm_epsilon=self.norm_epsilon,
            qkv_bias=self.qkv_bias,
            seed=self.seed,
        )
        return config
