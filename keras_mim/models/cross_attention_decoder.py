"""The SiamMAE / CropMAE decoder: the masked target stream attends to the reference stream."""

import math

import keras
from keras import ops

from keras_mim.layers.layer_norm import LayerNorm
from keras_mim.layers.cross_attention_block import CrossAttentionBlock
from keras_mim.layers.pos_embed import PositionEmbedding, check_grid
from keras_mim.models.mae_decoder import unshuffle_tokens
from keras_mim.utils import check_positive_int


@keras.saving.register_keras_serializable(package="keras_mim")
class CrossAttentionDecoder(keras.layers.Layer):
    """Reference-conditioned decoder: both encoder streams go through one shared
    projection; the target stream gets mask tokens, is unshuffled and gets the fixed
    sin-cos position embedding (the reference stream keeps only the encoder's); then
    `depth` `CrossAttentionBlock`s (target -> reference cross-attention, MLP,
    self-attention), a LayerNorm and a per-token projection to `output_dim`.

    Defaults are the official SiamMAE / CropMAE ViT-S decoder: 256 wide, 4 blocks,
    8 heads, feed-forward 2048 (`mlp_ratio=8.0`), dropout 0.1, post-norm blocks.

    Args:
        grid_shape: `(gh, gw)` token grid of the encoder.
        output_dim: prediction width per token (`ph * pw * C` for pixels).
        decoder_dim: decoder token width.
        depth: decoder blocks.
        num_heads: heads of every attention.
        mlp_ratio: MLP hidden width / decoder width.
        dropout: dropout rate inside the blocks (see `CrossAttentionBlock`).
        norm_first: pre-norm blocks instead of the official post-norm ones.
        num_prefix_tokens: tokens before the patches in the encoder output (1 for cls).
        norm_epsilon: LayerNorm epsilon.
        seed: optional int seed of the blocks' cross-attention dropout.
        **kwargs: standard layer arguments.

    Examples:
        >>> import numpy as np
        >>> dec = CrossAttentionDecoder((2, 2), output_dim=12, decoder_dim=16, depth=1, num_heads=2)
        >>> target = np.zeros((1, 3, 8), "float32")  # cls + 2 visible tokens of width 8
        >>> reference = np.zeros((1, 5, 8), "float32")  # cls + all 4 tokens
        >>> tuple(dec(target, np.array([[0, 2, 1, 3]]), reference).shape)
        (1, 4, 12)
    """

    def __init__(
        self,
        grid_shape,
        output_dim,
        decoder_dim=256,
        depth=4,
        num_heads=8,
        mlp_ratio=8.0,
        dropout=0.1,
        norm_first=False,
        num_prefix_tokens=1,
        norm_epsilon=1e-6,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.grid_shape = check_grid(grid_shape)
        self.output_dim = check_positive_int(output_dim, "output_dim")
        self.decoder_dim = check_positive_int(decoder_dim, "decoder_dim")
        self.depth = check_positive_int(depth, "depth")
        self.num_heads = check_positive_int(num_heads, "num_heads")
        if decoder_dim % num_heads:
            raise ValueError(f"`num_heads`={num_heads} must divide `decoder_dim`={decoder_dim}.")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise ValueError(f"`dropout` must be a float in [0, 1), got {dropout!r}.")
        self.mlp_ratio = float(mlp_ratio)
        self.dropout = float(dropout)
        self.norm_first = bool(norm_first)
        self.num_prefix_tokens = int(num_prefix_tokens)
        self.norm_epsilon = float(norm_epsilon)
        self.seed = seed
        p = self.dtype_policy
        self.embed = keras.layers.Dense(decoder_dim, dtype=p, name="decoder_embed")
        self.pos_embed = PositionEmbedding(
            self.grid_shape, "sincos", cls_token=self.num_prefix_tokens > 0, dtype=p,
            name="decoder_pos_embed",
        )
        self.blocks = [
            CrossAttentionBlock(
                num_heads, mlp_ratio, dropout, norm_first=norm_first, norm_epsilon=norm_epsilon,
                seed=None if seed is None else seed + i, dtype=p, name=f"decoder_block_{i}",
            )
            for i in range(depth)
        ]
        self.norm = LayerNorm(epsilon=norm_epsilon, dtype=p, name="decoder_norm")
        self.pred = keras.layers.Dense(output_dim, dtype=p, name="decoder_pred")

    def build(self, target_latent_shape, ids_restore_shape=None, reference_latent_shape=None):
        self.embed.build(target_latent_shape)
        n = math.prod(self.grid_shape)
        shape = (None, n + self.num_prefix_tokens, self.decoder_dim)
        context = (None, None if reference_latent_shape is None else reference_latent_shape[1],
                   self.decoder_dim)
        self.pos_embed.build(shape)
        self.mask_token = self.add_weight(
            shape=(1, 1, self.decoder_dim),
            initializer=keras.initializers.RandomNormal(stddev=0.02),
            name="mask_token",
        )
        for block in self.blocks:
            block.build(shape, context)
        self.norm.build(shape)
        self.pred.build(shape)

    def embed_target(self, target_latent, ids_restore):
        """Project the target stream, put mask tokens in the hidden places, unshuffle,
        add the position embedding: `(B, P + K, De) -> (B, P + N, Dd)`."""
        prefix, x = unshuffle_tokens(self, target_latent, ids_restore)  # (B, P, Dd), (B, N, Dd)
        return ops.concatenate([prefix, x], axis=1) if self.num_prefix_tokens else x  # (B, P + N, Dd)

    def call(self, target_latent, ids_restore, reference_latent, training=None):
        x = self.embed_target(target_latent, ids_restore)  # (B, P + N, Dd)
        context = self.embed(reference_latent)  # (B, M, Dd), no decoder position embedding
        for block in self.blocks:
            x = block(x, context, training=training)
        x = self.pred(self.norm(x))
        return x[:, self.num_prefix_tokens :]  # (B, N, output_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            grid_shape=self.grid_shape,
            output_dim=self.output_dim,
            decoder_dim=self.decoder_dim,
            depth=self.depth,
            num_heads=self.num_heads,
            mlp_ratio=self.mlp_ratio,
            dropout=self.dropout,
            norm_first=self.norm_first,
            num_prefix_tokens=self.num_prefix_tokens,
            norm_epsilon=self.norm_epsilon,
            seed=self.seed,
        )
        return config
