"""The pre-norm ViT block used by every encoder and decoder."""

import keras

from keras_mim.layers.layer_norm import LayerNorm
from keras_mim.layers.attention import MultiHeadSelfAttention
from keras_mim.layers.drop_path import DropPath
from keras_mim.layers.layer_scale import LayerScale
from keras_mim.layers.mlp import MLP


@keras.saving.register_keras_serializable(package="keras_mim")
class TransformerBlock(keras.layers.Layer):
    """`x + DropPath(LS(Attn(LN(x))))`, then `x + DropPath(LS(MLP(LN(x))))`.

    Args:
        num_heads: attention heads.
        mlp_ratio: MLP hidden width / token width (MAE: 4).
        qkv_bias: bias on the fused qkv projection (MAE: True).
        drop_path: stochastic-depth rate of both residual branches.
        layer_scale: None for no LayerScale, else its initial value.
        norm_epsilon: LayerNorm epsilon (MAE: 1e-6).
        dropout: dropout rate after the projections.
        seed: optional int seed for drop path.
        **kwargs: standard layer arguments.

    Examples:
        >>> import numpy as np
        >>> tuple(TransformerBlock(num_heads=2)(np.zeros((2, 5, 16), "float32")).shape)
        (2, 5, 16)
    """

    def __init__(
        self,
        num_heads,
        mlp_ratio=4.0,
        qkv_bias=True,
        drop_path=0.0,
        layer_scale=None,
        norm_epsilon=1e-6,
        dropout=0.0,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.mlp_ratio = float(mlp_ratio)
        self.qkv_bias = bool(qkv_bias)
        self.drop_path = float(drop_path)
        self.layer_scale = None if layer_scale is None else float(layer_scale)
        self.norm_epsilon = float(norm_epsilon)
        self.dropout = float(dropout)
        self.seed = seed
        p = self.dtype_policy
        self.norm1 = LayerNorm(epsilon=norm_epsilon, dtype=p, name="norm1")
        self.attn = MultiHeadSelfAttention(num_heads, qkv_bias, dropout, dtype=p, name="attn")
        self.norm2 = LayerNorm(epsilon=norm_epsilon, dtype=p, name="norm2")
        self.mlp = MLP(mlp_ratio, dropout, dtype=p, name="mlp")
        self.drop_path1 = DropPath(drop_path, seed=seed, dtype=p, name="drop_path1")
        self.drop_path2 = DropPath(drop_path, seed=None if seed is None else seed + 1, dtype=p,
                                   name="drop_path2")
        if layer_scale is not None:
            self.ls1 = LayerScale(layer_scale, dtype=p, name="ls1")
            self.ls2 = LayerScale(layer_scale, dtype=p, name="ls2")

    def build(self, input_shape):
        for layer in (self.norm1, self.attn, self.norm2, self.mlp):
            layer.build(input_shape)
        if self.layer_scale is not None:
            self.ls1.build(input_shape)
            self.ls2.build(input_shape)

    def _scale(self, ls, x):
        return x if self.layer_scale is None else ls(x)

    def call(self, x, training=None):
        # At drop_path 0 the DropPath layers are not called: a no-op layer call costs ~0.1 ms of
        # Python on torch eager (docs/speed.md, "Small models") and a node in every trace.
        y = self._scale(getattr(self, "ls1", None), self.attn(self.norm1(x), training=training))
        x = x + (self.drop_path1(y, training=training) if self.drop_path else y)
        y = self._scale(getattr(self, "ls2", None), self.mlp(self.norm2(x), training=training))
        return x + (self.drop_path2(y, training=training) if self.drop_path else y)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            num_heads=self.num_heads,
            mlp_ratio=self.mlp_ratio,
            qkv_bias=self.qkv_bias,
            drop_path=self.drop_path,
            layer_scale=self.layer_scale,
            norm_epsilon=self.norm_epsilon,
            dropout=self.dropout,
            seed=self.seed,
        )
        return config
