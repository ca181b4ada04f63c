"""Multi-head cross-attention: queries from one token sequence, keys and values from another."""

import keras
from keras import ops

from keras_mim.layers.attention import FLASH_ATTENTION


def _glorot(scale):
    """Xavier-uniform scaled in variance by `scale`."""
    return keras.initializers.VarianceScaling(scale, mode="fan_avg", distribution="uniform")


@keras.saving.register_keras_serializable(package="keras_mim")
class MultiHeadCrossAttention(keras.layers.Layer):
    """Attention from tokens `x` `(B, N, D)` to a context sequence `(B, M, Dc)`.

    Queries come from `x` through a `(D, D)` Dense, keys and values from the context
    through one `(Dc, 2D)` Dense (keys first, then values; with `values=` given, keys
    come from the context and values from `values` `(B, M, Dc)`, each through its half of
    that kernel, as CAE's regressor), and the heads are merged by
    an output projection `(D, D)`. With Dc = D this is `torch.nn.MultiheadAttention`
    with `q = W[:D]`, `[k | v] = W[D:]` of its `in_proj_weight` (the decoder of
    SiamMAE / CropMAE). Attention itself is `keras.ops.dot_product_attention`, the
    backend's fused kernel where there is one. The q and kv kernels start with the
    variance of torch's joint xavier-uniform `in_proj_weight` (`1 / (2D)` when Dc = D).

    Args:
        num_heads: number of heads; must divide the query width D.
        qkv_bias: whether the q and kv projections have a bias (torch: True).
        dropout: dropout rate after the output projection.
        seed: optional int seed of that dropout.
        output_projection: whether the merged heads go through the output projection
            (default). False returns the merged heads themselves, as the official
            attentive probe of V-JEPA (`keras_mim.models.AttentiveProbe`), whose
            cross-attention declares a projection but does not apply it.
        **kwargs: standard layer arguments.

    Examples:
        >>> import numpy as np
        >>> layer = MultiHeadCrossAttention(4)
        >>> tuple(layer(np.zeros((2, 5, 32), "float32"), np.zeros((2, 7, 16), "float32")).shape)
        (2, 5, 32)
    """

    def __init__(self, num_heads, qkv_bias=True, dropout=0.0, seed=None, output_projection=True, **kwargs):
        super().__init__(**kwargs)
        if isinstance(num_heads, bool) or not isinstance(num_heads, int) or num_heads < 1:
            raise ValueError(f"`num_heads` must be a positive int, got {num_heads!r}.")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1), got {dropout!r}.")
        self.num_heads = num_heads
        self.qkv_bias = bool(qkv_bias)
        self.dropout = float(dropout)
        self.seed = seed
        self.output_projection = bool(output_projection)
        self.proj_drop = keras.layers.Dropout(self.dropout, seed=seed, dtype=self.dtype_policy,
                                              name="proj_drop")

    def build(self, x_shape, context_shape=None):
        context_shape = x_shape if context_shape is None else context_shape
        dim = x_shape[-1]
        if dim % self.num_heads:
            raise ValueError(f"`num_heads`={self.num_heads} must divide the query width {dim}.")
        self.head_dim = dim // self.num_heads
        p = self.dtype_policy
        # torch draws q, k, v as one xavier-uniform (3D, D) matrix when the context has the
        # query width (separate (D, Dc) ones otherwise): same variance 1 / (2D) here.
        same = context_shape[-1] == dim
        self.q = keras.layers.Dense(dim, use_bias=self.qkv_bias, dtype=p, name="q",
                                    kernel_initializer=_glorot(0.5 if same else 1.0))
        self.q.build(x_shape)
        self.kv = keras.layers.Dense(2 * dim, use_bias=self.qkv_bias, dtype=p, name="kv",
                                     kernel_initializer=_glorot(0.75 if same else 1.0))
        self.kv.build(context_shape)
        if self.output_projection:
            self.proj = keras.layers.Dense(dim, dtype=p, name="proj")
            self.proj.build(x_shape)

    def call(self, x, context, values=None, training=None):
        n, m, dim = x.shape[1], context.shape[1], x.shape[2]
        q = ops.reshape(self.q(x), (-1, n, self.num_heads, self.head_dim))  # (B, N, H, hd)
        if values is None:
            kv = ops.reshape(self.kv(context), (-1, m, 2, self.num_heads, self.head_dim))
            k, v = kv[:, :, 0], kv[:, :, 1]  # each (B, M, H, hd)
        else:  # keys from `context`, values from `values`: each through its half of the kv kernel
            k, v = self.kv_half(context, 0), self.kv_half(values, 1)  # each (B, M, H, hd)
        x = ops.dot_product_attention(q, k, v, flash_attention=FLASH_ATTENTION)  # (B, N, H, hd)
        x = ops.reshape(x, (-1, n, dim))
        if self.output_projection:
            x = self.proj(x)  # (B, N, D)
        return self.proj_drop(x, training=training) if self.dropout else x  # rate 0: no layer call

    def kv_half(self, tokens, part):
        """Keys (`part` 0) or values (1) of `tokens` `(B, M, Dc)`: `(B, M, H, hd)`."""
        dim = self.num_heads * self.head_dim
        y = ops.matmul(tokens, self.kv.kernel[:, part * dim : (part + 1) * dim])
        if self.qkv_bias:
            y = y + self.kv.bias[part * dim : (part + 1) * dim]
        return ops.reshape(y, (-1, tokens.shape[1], self.num_heads, self.head_dim))

    def compute_output_shape(self, x_shape, context_shape=None, values_shape=None):
        return x_shape

    def get_config(self):
        config = super().get_config()
        config.update(num_heads=self.num_heads, qkv_bias=self.qkv_bias, dropout=self.dropout,
                      seed=self.seed, output_projection=self.output_projection)
        return config
