"""Multi-head self-attention with a fused qkv projection (as timm / official MAE)."""

import keras
from keras import ops

# On torch, Keras' `flash_attention=None` builds a `torch.backends.cuda.SDPAParams` at every
# call to ask whether the flash kernel applies: Python time on eager, and a graph break under
# torch.compile. False skips that question only: `scaled_dot_product_attention` still picks
# its fastest kernel itself (flash where the device and dtype allow).
FLASH_ATTENTION = False if keras.backend.backend() == "torch" else None


@keras.saving.register_keras_serializable(package="keras_mim")
class MultiHeadSelfAttention(keras.layers.Layer):
    """Self-attention over tokens `(B, N, D)` with one fused `(D, 3D)` qkv Dense.

    Attention itself is `keras.ops.dot_product_attention`, which uses the backend's
    fused / flash kernel where there is one.

    Args:
        num_heads: number of heads; must divide the token width.
        qkv_bias: whether the qkv projection has a bias (MAE: True).
        dropout: dropout rate after the output projection.
        **kwargs: standard layer arguments.

    Examples:
        >>> import numpy as np
        >>> tuple(MultiHeadSelfAttention(4)(np.zeros((2, 5, 32), "float32")).shape)
        (2, 5, 32)
    """

    def __init__(self, num_heads, qkv_bias=True, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.qkv_bias = bool(qkv_bias)
        self.dropout = float(dropout)

    def build(self, input_shape):
        dim = input_shape[-1]
        if dim % self.num_heads:
            raise ValueError(
                f"`num_heads`={self.num_heads} must divide the token width {dim}."
            )
        self.head_dim = dim // self.num_heads
        self.qkv = keras.layers.Dense(
            3 * dim, use_bias=self.qkv_bias, dtype=self.dtype_policy, name="qkv"
        )
        self.qkv.build(input_shape)
        self.proj = keras.layers.Dense(dim, dtype=self.dtype_policy, name="proj")
        self.proj.build(input_shape)
        self.proj_drop = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy)

    def call(self, x, training=None):
        n, dim = x.shape[1], x.shape[2]
        qkv = ops.reshape(self.qkv(x), (-1, n, 3, self.num_heads, self.head_dim))
        q, k, v = ops.unstack(qkv, 3, axis=2)  # each (B, N, H, hd); one op (3 slices: 3 backward ops)
        x = ops.dot_product_attention(q, k, v, flash_attention=FLASH_ATTENTION)  # (B, N, H, hd)
        x = ops.reshape(x, (-1, n, dim))
        x = self.proj(x)
        return self.proj_drop(x, training=training) if self.dropout else x  # rate 0: no layer call

    def attention_probs(self, x):
        """Attention probabilities `(B, H, N, N)` in float32 (rows sum to 1), computed
        explicitly, for inspection and attention-guided masking (not used in `call`)."""
        n = x.shape[1]
        qkv = ops.reshape(self.qkv(x), (-1, n, 3, self.num_heads, self.head_dim))
        q = ops.transpose(ops.cast(qkv[:, :, 0], "float32"), (0, 2, 1, 3))  # (B, H, N, hd)
        k = ops.transpose(ops.cast(qkv[:, :, 1], "float32"), (0, 2, 3, 1))  # (B, H, hd, N)
        return ops.softmax(ops.matmul(q, k) / float(self.head_dim) ** 0.5, axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(num_heads=self.num_heads, qkv_bias=self.qkv_bias, dropout=self.dropout)
        return config
