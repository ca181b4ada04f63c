"""I-JEPA's predictor: a narrow ViT from context tokens to features at target positions."""

import math

import keras
from keras import ops

from keras_mim.layers.layer_norm import LayerNorm
from keras_mim.layers.pos_embed import PositionEmbedding, check_grid
from keras_mim.layers.token_ops import gather_tokens
from keras_mim.layers.transformer_block import TransformerBlock
from keras_mim.utils import check_positive_int


@keras.saving.register_keras_serializable(package="keras_mim")
class JEPAPredictor(keras.layers.Layer):
    """Predicts target-encoder features at target blocks from the context tokens.

    `predictor(context, context_ids, target_ids)`: the context tokens `(B, C, D)` are
    projected to `predictor_dim` and given the fixed sin-cos position embedding of their
    grid positions `context_ids` `(B, C)`; for each of the M target blocks in
    `target_ids` `(B, M, T)`, T learned mask tokens carrying the positions of that
    block's tokens are appended, and the `C + T` tokens run through `depth` transformer
    blocks, a final norm and a projection back to `output_dim`. Each block is predicted
    in its own pass (the official code repeats the context M times along the batch), so
    the blocks do not see each other. Returns `(B, M, T, output_dim)`.

    As the official `VisionTransformerPredictor` (facebookresearch/ijepa,
    `src/models/vision_transformer.py`), except that its init rescales each block's
    output projections by `1 / sqrt(2 * layer)`; here every block starts as keras_mim's
    encoder blocks do.

    Args:
        grid_shape: `(gh, gw)` token grid of the encoder.
        output_dim: width of the predicted features (the encoder's width).
        predictor_dim: token width inside the predictor (I-JEPA: 384).
        depth: transformer blocks (I-JEPA: 6 by default, 12 for ViT-H/14).
        num_heads: attention heads (I-JEPA: the encoder's).
        mlp_ratio: MLP hidden width / predictor width.
        norm_epsilon: LayerNorm epsilon.
        **kwargs: standard layer arguments.

    Examples:
        >>> import numpy as np
        >>> predictor = JEPAPredictor((4, 4), output_dim=32, predictor_dim=16, depth=1, num_heads=2)
        >>> context = np.zeros((2, 5, 32), "float32")  # 5 context tokens of width 32
        >>> out = predictor(context, np.tile(np.arange(5), (2, 1)), np.tile(np.arange(8, 14).reshape(1, 2, 3), (2, 1, 1)))
        >>> tuple(out.shape)  # 2 target blocks of 3 tokens each
        (2, 2, 3, 32)
    """

    def __init__(self, grid_shape, output_dim, predictor_dim=384, depth=6, num_heads=12, mlp_ratio=4.0,
                 norm_epsilon=1e-6, **kwargs):
        super().__init__(**kwargs)
        self.grid_shape = check_grid(grid_shape)
        self.output_dim = check_positive_int(output_dim, "output_dim")
        self.predictor_dim = check_positive_int(predictor_dim, "predictor_dim")
        self.depth = check_positive_int(depth, "depth")
        self.num_heads = check_positive_int(num_heads, "num_heads")
        if predictor_dim % num_heads:
            raise ValueError(f"`num_heads`={num_heads} must divide `predictor_dim`={predictor_dim}.")
        if predictor_dim % 4:
            raise ValueError(f"`predictor_dim` must be divisible by 4 (2D sin-cos positions), got {predictor_dim}.")
        self.mlp_ratio = float(mlp_ratio)
        self.norm_epsilon = float(norm_epsilon)
        p = self.dtype_policy
        self.embed = keras.layers.Dense(predictor_dim, dtype=p, name="predictor_embed")
        self.pos_embed = PositionEmbedding(self.grid_shape, "sincos", cls_token=False, dtype=p,
                                           name="predictor_pos_embed")
        self.blocks = [TransformerBlock(num_heads, mlp_ratio, norm_epsilon=norm_epsilon, dtype=p,
                                        name=f"predictor_block_{i}") for i in range(depth)]
        self.norm = LayerNorm(epsilon=norm_epsilon, dtype=p, name="predictor_norm")
        self.proj = keras.layers.Dense(output_dim, dtype=p, name="predictor_proj")

    def build(self, context_shape=None, context_ids_shape=None, target_ids_shape=None):
        n = math.prod(self.grid_shape)
        shape = (None, n, self.predictor_dim)
        self.embed.build((None, None, self.output_dim))
        self.pos_embed.build(shape)
        self.mask_token = self.add_weight(shape=(1, 1, self.predictor_dim),
                                          initializer=keras.initializers.TruncatedNormal(stddev=0.02),
                                          name="mask_token")
        for block in self.blocks:
            block.build(shape)
        self.norm.build(shape)
        self.proj.build(shape)
        self.built = True

    def positions(self, ids):
        """Sin-cos rows of grid positions `ids` `(B, K)` -> `(B, K, predictor_dim)`."""
        table = self.pos_embed.patch_embedding()  # (1, N, Dp)
        table = ops.broadcast_to(table, (ops.shape(ids)[0],) + tuple(table.shape[1:]))
        return gather_tokens(table, ids)

    def call(self, context, context_ids, target_ids, training=None):
        b, c = ops.shape(context)[0], context.shape[1]
        m, t = target_ids.shape[1], target_ids.shape[2]
        dp = self.predictor_dim
        x = self.embed(context)  # (B, C, Dp)
        x = x + ops.cast(self.positions(context_ids), x.dtype)
        queries = self.positions(ops.reshape(target_ids, (-1, m * t)))  # (B, M T, Dp)
        queries = ops.cast(queries, x.dtype) + ops.cast(self.mask_token, x.dtype)
        queries = ops.reshape(queries, (-1, t, dp))  # (B M, T, Dp), block-minor
        x = ops.reshape(ops.broadcast_to(x[:, None], (b, m, c, dp)), (-1, c, dp))  # (B M, C, Dp)
        x = ops.concatenate([x, queries], axis=1)  # (B M, C + T, Dp)
        for block in self.blocks:
            x = block(x, training=training)
        x = self.proj(self.norm(x[:, c:]))  # (B M, T, D): the mask tokens only
        return ops.reshape(x, (-1, m, t, self.output_dim))

    def get_config(self):
        config = super().get_config()
        config.update(grid_shape=self.grid_shape, output_dim=self.output_dim, predictor_dim=self.predictor_dim,
                      depth=self.depth, num_heads=self.num_heads, mlp_ratio=self.mlp_ratio,
                      norm_epsilon=self.norm_epsilon)
        return config
