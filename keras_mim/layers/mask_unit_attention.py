"""Hiera's attention: within mask units or global, with optional max pooling of the queries."""

import keras
from keras import ops

from keras_mim.layers.attention import FLASH_ATTENTION
from keras_mim.layers.hiera_ops import pool_first
from keras_mim.utils import check_positive_int


@keras.saving.register_keras_serializable(package="keras_mim")
class MaskUnitAttention(keras.layers.Layer):
    """Self-attention over Hiera's unrolled tokens `(B, N, D)` (see `keras_mim.layers.hiera_ops`).

    With `use_mask_unit_attn`, tokens attend only inside their mask unit: the sequence is
    `(B, N / W, W, D)` with the `W` units innermost, each unit one window. With `q_stride`
    > 1 the queries are max-pooled over the leading `q_stride` blocks (a 2D max pool in the
    unrolled order), so the output has `N / q_stride` tokens and width `dim_out`; keys and
    values stay at full resolution (official `MaskUnitAttention`).

    Args:
        dim_out: output width (the qkv projection maps to it).
        num_heads: attention heads; must divide `dim_out`.
        q_stride: flattened query pooling stride (`4` for a 2 x 2 pool; 1 for none).
        window_size: tokens of one mask unit after the query pooling (flattened).
        use_mask_unit_attn: attend within mask units (True) or globally (False).
        **kwargs: standard layer arguments.

    Examples:
        >>> import numpy as np
        >>> attn = MaskUnitAttention(16, 2, q_stride=4, window_size=4, use_mask_unit_attn=True)
        >>> tuple(attn(np.zeros((2, 64, 8), "float32")).shape)  # 4 units of 16 tokens, pooled
        (2, 16, 16)
    """

    def __init__(self, dim_out, num_heads, q_stride=1, window_size=0, use_mask_unit_attn=False, **kwargs):
        super().__init__(**kwargs)
        self.dim_out = check_positive_int(dim_out, "dim_out")
        self.num_heads = check_positive_int(num_heads, "num_heads")
        if self.dim_out % self.num_heads:
            raise ValueError(f"`num_heads`={num_heads} must divide `dim_out`={dim_out}.")
        self.q_stride = check_positive_int(q_stride, "q_stride")
        self.window_size = int(window_size)
        self.use_mask_unit_attn = bool(use_mask_unit_attn)
        if self.use_mask_unit_attn and self.window_size < 1:
            raise ValueError(f"`window_size` must be a positive int with mask unit attention, got {window_size!r}.")
        self.head_dim = self.dim_out // self.num_heads

    def build(self, input_shape):
        p = self.dtype_policy
        self.qkv = keras.layers.Dense(3 * self.dim_out, dtype=p, name="qkv")
        self.qkv.build(input_shape)
        self.proj = keras.layers.Dense(self.dim_out, dtype=p, name="proj")
        self.proj.build(tuple(input_shape[:-1]) + (self.dim_out,))

    def num_windows(self, num_tokens):
        """Mask units in a sequence of `num_tokens` tokens (1 for global attention)."""
        if not self.use_mask_unit_attn:
            return 1
        if num_tokens % (self.q_stride * self.window_size):
            raise ValueError(f"{num_tokens} tokens do not split into mask units of "
                             f"{self.q_stride * self.window_size} tokens.")
        return num_tokens // (self.q_stride * self.window_size)

    def call(self, x):
        n = x.shape[1]
        w = self.num_windows(n)
        t = n // w  # tokens per window
        qkv = ops.reshape(self.qkv(x), (-1, t, w, 3, self.num_heads, self.head_dim))
        qkv = ops.transpose(qkv, (0, 2, 1, 3, 4, 5))  # (B, W, T, 3, H, hd)
        q, k, v = ops.unstack(qkv, 3, axis=3)  # each (B, W, T, H, hd)
        q = pool_first(ops.reshape(q, (-1, t, self.dim_out)), self.q_stride)  # max over the leading blocks
        tq = q.shape[1]
        q = ops.reshape(q, (-1, tq, self.num_heads, self.head_dim))
        k = ops.reshape(k, (-1, t, self.num_heads, self.head_dim))
        v = ops.reshape(v, (-1, t, self.num_heads, self.head_dim))
        out = ops.dot_product_attention(q, k, v, flash_attention=FLASH_ATTENTION)  # (B * W, Tq, H, hd)
        out = ops.transpose(ops.reshape(out, (-1, w, tq, self.dim_out)), (0, 2, 1, 3))  # (B, Tq, W, D)
        return self.proj(ops.reshape(out, (-1, tq * w, self.dim_out)))

    def compute_output_shape(self, input_shape):
        n = input_shape[1]
        return (input_shape[0], None if n is None else n // self.q_stride, self.dim_out)

    def get_config(self):
        config = super().get_config()
        config.update(dim_out=self.dim_out, num_heads=self.num_heads, q_stride=self.q_stride,
                      window_size=self.window_size, use_mask_unit_attn=self.use_mask_unit_attn)
        return config
