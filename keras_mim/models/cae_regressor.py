"""CAE's latent contextual regressor and its decoder (Atten4Vis/CAE, `models/modeling_cae_helper.py`:
`RegressorBlock`, `LatentRegresser`, `Decoder`)."""

import keras
import numpy as np
from keras import ops

from keras_mim.layers.cross_attention import MultiHeadCrossAttention
from keras_mim.layers.drop_path import DropPath
from keras_mim.layers.layer_norm import LayerNorm
from keras_mim.layers.layer_scale import LayerScale
from keras_mim.layers.mlp import MLP
from keras_mim.layers.transformer_block import TransformerBlock
from keras_mim.utils import check_positive_int


def check_layer_scale(value):
    """None (no LayerScale) or a float > 0, the initial scale."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"`layer_scale` must be None or a float > 0, got {value!r}.")
    return float(value)


def check_drop_path_rate(value, name="drop_path_rate"):
    """Raise a ValueError naming `name` unless `value` is a float in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"`{name}` must be a float in [0, 1), got {value!r}.")
    return float(value)


#: The settings the regressor and the decoder share (the official gives both the same).
STACK_SETTINGS = ("depth", "num_heads", "mlp_ratio", "layer_scale", "drop_path_rate", "norm_epsilon", "seed")


def init_stack(layer, width_name, width, depth, num_heads, mlp_ratio, layer_scale, drop_path_rate, norm_epsilon,
               seed):
    """Check `layer`'s width (attribute `width_name`) and `STACK_SETTINGS` and set them on
    it; returns each block's drop-path rate, rising linearly to `drop_path_rate`."""
    setattr(layer, width_name, check_positive_int(width, width_name))
    layer.depth = check_positive_int(depth, "depth")
    layer.num_heads = check_positive_int(num_heads, "num_heads")
    if width % num_heads:
        raise ValueError(f"`num_heads`={num_heads} must divide `{width_name}`={width}.")
    layer.mlp_ratio = float(mlp_ratio)
    layer.layer_scale = check_layer_scale(layer_scale)
    layer.drop_path_rate = check_drop_path_rate(drop_path_rate)
    layer.norm_epsilon = float(norm_epsilon)
    layer.seed = seed
    return [float(rate) for rate in np.linspace(0.0, layer.drop_path_rate, layer.depth)]


def block_seed(seed, i):
    """Block `i`'s drop-path seed (each block's two DropPaths take it and the next)."""
    return None if seed is None else seed + 2 * i


@keras.saving.register_keras_serializable(package="keras_mim")
class RegressorBlock(keras.layers.Layer):
    """CAE's regressor block: queries cross-attend to the visible latents and themselves.

    `block(x, context, pos, context_pos)`, with `x` `(B, M, D)` the hidden tokens'
    current latents and `context` `(B, K + M, D)` = `[visible latents, x]`:

        x = x + DropPath(LS1(CrossAttn(q=LN_q(x + pos), k=LN_k(context + context_pos),
                                       v=LN_v(context))))
        x = LN_2(x)
        x = x + DropPath(LS2(MLP(x)))

    as the official `RegressorBlock` (the values carry no position; the block ends with
    its MLP residual after a norm, not pre-norm). Without `layer_scale`, both branches
    are unscaled (the official fixed ones).

    Args:
        num_heads: attention heads.
        mlp_ratio: MLP hidden width / token width (CAE: 4).
        qkv_bias: bias on the q, k, v projections (CAE: q and v only; a key bias
            shifts every logit of a query equally, so the softmax ignores it).
        layer_scale: None, or the initial LayerScale value (CAE: 0.1).
        drop_path: stochastic-depth rate of both branches.
        norm_epsilon: LayerNorm epsilon (CAE: 1e-6).
        seed: optional int seed of drop path.
        **kwargs: standard layer arguments.

    Examples:
        >>> import numpy as np
        >>> block = RegressorBlock(num_heads=2)
        >>> x, context = np.zeros((2, 3, 16), "float32"), np.zeros((2, 8, 16), "float32")
        >>> tuple(block(x, context, x, context).shape)
        (2, 3, 16)
    """

    def __init__(self, num_heads, mlp_ratio=4.0, qkv_bias=True, layer_scale=0.1, drop_path=0.0, norm_epsilon=1e-6,
                 seed=None, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = check_positive_int(num_heads, "num_heads")
        self.mlp_ratio = float(mlp_ratio)
        self.qkv_bias = bool(qkv_bias)
        self.layer_scale = check_layer_scale(layer_scale)
        self.drop_path = check_drop_path_rate(drop_path, "drop_path")
        self.norm_epsilon = float(norm_epsilon)
        self.seed = seed
        p = self.dtype_policy
        self.norm_q, self.norm_k, self.norm_v, self.norm_mlp = (
            LayerNorm(epsilon=norm_epsilon, dtype=p, name=name) for name in ("norm_q", "norm_k", "norm_v", "norm_mlp"))
        self.cross_attn = MultiHeadCrossAttention(num_heads, qkv_bias, dtype=p, name="cross_attn")
        self.mlp = MLP(mlp_ratio, dtype=p, name="mlp")
        if self.layer_scale is not None:
            self.ls1 = LayerScale(self.layer_scale, dtype=p, name="ls1")
            self.ls2 = LayerScale(self.layer_scale, dtype=p, name="ls2")
        self.drop_path1 = DropPath(self.drop_path, seed=seed, dtype=p, name="drop_path1")
        self.drop_path2 = DropPath(self.drop_path, seed=None if seed is None else seed + 1, dtype=p,
                                   name="drop_path2")

    def build(self, x_shape, context_shape=None, pos_shape=None, context_pos_shape=None):
        context_shape = x_shape if context_shape is None else context_shape
        self.cross_attn.build(x_shape, context_shape)
        for layer in (self.norm_q, self.norm_mlp, self.mlp) + ((self.ls1, self.ls2) if self.layer_scale else ()):
            layer.build(x_shape)
        self.norm_k.build(context_shape)
        self.norm_v.build(context_shape)

    def residual(self, x, y, ls, drop_path, training):
        y = y if self.layer_scale is None else ls(y)
        return x + (drop_path(y, training=training) if self.drop_path else y)

    def call(self, x, context, pos, context_pos, training=None):
        y = self.cross_attn(self.norm_q(x + pos), self.norm_k(context + context_pos), values=self.norm_v(context),
                            training=training)  # (B, M, D)
        x = self.norm_mlp(self.residual(x, y, getattr(self, "ls1", None), self.drop_path1, training))
        return self.residual(x, self.mlp(x, training=training), getattr(self, "ls2", None), self.drop_path2, training)

    def compute_output_shape(self, x_shape, *args):
        return x_shape

    def get_config(self):
        config = super().get_config()
        config.update(num_heads=self.num_heads, mlp_ratio=self.mlp_ratio, qkv_bias=self.qkv_bias,
                      layer_scale=self.layer_scale, drop_path=self.drop_path, norm_epsilon=self.norm_epsilon,
                      seed=self.seed)
        return config


@keras.saving.register_keras_serializable(package="keras_mim")
class LatentRegressor(keras.layers.Layer):
    """CAE's latent contextual regressor: predicts the hidden tokens' latents from the
    visible ones, in the encoder's representation space.

    `regressor(visible, visible_pos, hidden_pos)`: queries start as a learned mask token
    `(B, M, D)`; each of `depth` `RegressorBlock`s lets them attend to
    `[visible, queries]` (keys with the positions `[visible_pos, hidden_pos]`, queries
    with `hidden_pos`); the visible latents stay as the encoder gave them; a final
    LayerNorm. Returns the predicted latents `(B, M, D)` in the order of `hidden_pos`.

    Args:
        dim: token width D (CAE's `decoder_embed_dim`: 768 for ViT-B).
        depth: regressor blocks (CAE: 4).
        num_heads: attention heads (CAE: 12, its `decoder_num_heads`).
        mlp_ratio: MLP hidden width / D.
        layer_scale: None, or the initial LayerScale value (CAE: 0.1,
            `decoder_layer_scale_init_value`).
        drop_path_rate: stochastic depth, rising linearly over the blocks to this value.
        norm_epsilon: LayerNorm epsilon.
        seed: optional int seed of drop path.
        **kwargs: standard layer arguments.

    Examples:
        >>> import numpy as np
        >>> regressor = LatentRegressor(dim=16, depth=1, num_heads=2)
        >>> visible, hidden_pos = np.zeros((2, 5, 16), "float32"), np.zeros((2, 3, 16), "float32")
        >>> tuple(regressor(visible, visible, hidden_pos).shape)
        (2, 3, 16)
    """

    def __init__(self, dim=768, depth=4, num_heads=12, mlp_ratio=4.0, layer_scale=0.1, drop_path_rate=0.0,
                 norm_epsilon=1e-6, seed=None, **kwargs):
        super().__init__(**kwargs)
        rates = init_stack(self, "dim", dim, depth, num_heads, mlp_ratio, layer_scale, drop_path_rate, norm_epsilon,
                           seed)
        p = self.dtype_policy
        self.blocks = [
            RegressorBlock(num_heads, mlp_ratio, layer_scale=self.layer_scale, drop_path=rate,
                           norm_epsilon=norm_epsilon, seed=block_seed(seed, i), dtype=p, name=f"regressor_block_{i}")
            for i, rate in enumerate(rates)
        ]
        self.norm = LayerNorm(epsilon=norm_epsilon, dtype=p, name="regressor_norm")

    def build(self, visible_shape=None, visible_pos_shape=None, hidden_pos_shape=None):
        shape = (None, None, self.dim)
        self.mask_token = self.add_weight(shape=(1, 1, self.dim),
                                          initializer=keras.initializers.TruncatedNormal(stddev=0.02),
                                          name="mask_token")
        for block in self.blocks:
            block.build(shape, shape)
        self.norm.build(shape)
        self.built = True

    def call(self, visible, visible_pos, hidden_pos, training=None):
        x = ops.broadcast_to(ops.cast(self.mask_token, visible.dtype), ops.shape(hidden_pos))  # (B, M, D)
        hidden_pos = ops.cast(hidden_pos, visible.dtype)
        context_pos = ops.concatenate([ops.cast(visible_pos, visible.dtype), hidden_pos], axis=1)  # (B, K + M, D)
        for block in self.blocks:
            context = ops.concatenate([visible, x], axis=1)  # (B, K + M, D)
            x = block(x, context, hidden_pos, context_pos, training=training)
        return self.norm(x)  # (B, M, D)

    def get_config(self):
        config = super().get_config()
        config.update(dim=self.dim, **{name: getattr(self, name) for name in STACK_SETTINGS})
        return config


@keras.saving.register_keras_serializable(package="keras_mim")
class CAEDecoder(keras.layers.Layer):
    """CAE's decoder: from the predicted latents of the hidden tokens to their targets.

    `decoder(latents, pos)`: latents `(B, M, Dd)` plus their positions, `depth`
    pre-norm transformer blocks over the M hidden tokens only (the visible latents are
    not seen, as the official CAE v1 decoder), a LayerNorm and a per-token projection:
    `(B, M, output_dim)`.

    Args:
        output_dim: prediction width per token (`ph * pw * C` for pixels).
        decoder_dim: token width; the regressor's too (CAE's `decoder_embed_dim`).
        depth: transformer blocks (CAE: 4).
        num_heads: attention heads (CAE: 12).
        mlp_ratio: MLP hidden width / `decoder_dim`.
        layer_scale: None, or the initial LayerScale value (CAE: 0.1).
        drop_path_rate: stochastic depth, rising linearly over the blocks to this value.
        norm_epsilon: LayerNorm epsilon.
        seed: optional int seed of drop path.
        **kwargs: standard layer arguments.

    Examples:
        >>> import numpy as np
        >>> decoder = CAEDecoder(output_dim=48, decoder_dim=16, depth=1, num_heads=2)
        >>> latents = np.zeros((2, 3, 16), "float32")
        >>> tuple(decoder(latents, latents).shape)
        (2, 3, 48)
    """

    def __init__(self, output_dim, decoder_dim=768, depth=4, num_heads=12, mlp_ratio=4.0, layer_scale=0.1,
                 drop_path_rate=0.0, norm_epsilon=1e-6, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.output_dim = check_positive_int(output_dim, "output_dim")
        rates = init_stack(self, "decoder_dim", decoder_dim, depth, num_heads, mlp_ratio, layer_scale,
                           drop_path_rate, norm_epsilon, seed)
        p = self.dtype_policy
        self.blocks = [
            TransformerBlock(num_heads, mlp_ratio, drop_path=rate, layer_scale=self.layer_scale,
                             norm_epsilon=norm_epsilon, seed=block_seed(seed, i), dtype=p, name=f"decoder_block_{i}")
            for i, rate in enumerate(rates)
        ]
        self.norm = LayerNorm(epsilon=norm_epsilon, dtype=p, name="decoder_norm")
        self.pred = keras.layers.Dense(output_dim, dtype=p, name="decoder_pred")

    def build(self, latents_shape=None, pos_shape=None):
        shape = (None, None, self.decoder_dim)
        for block in self.blocks:
            block.build(shape)
        self.norm.build(shape)
        self.pred.build(shape)
        self.built = True

    def call(self, latents, pos, training=None):
        x = latents + ops.cast(pos, latents.dtype)  # (B, M, Dd)
        for block in self.blocks:
            x = block(x, training=training)
        return self.pred(self.norm(x))  # (B, M, output_dim)

    def get_config(self):
        config = super().get_config()
        config.update(output_dim=self.output_dim, decoder_dim=self.decoder_dim,
                      **{name: getattr(self, name) for name in STACK_SETTINGS})
        return config
