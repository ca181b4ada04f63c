"""MultiMAE's decoder for one modality (the official `SpatialOutputAdapter`): queries at its
own positions cross-attend to the visible tokens of every modality."""

import keras
import numpy as np
from keras import ops

from keras_mim.layers.cross_attention import MultiHeadCrossAttention
from keras_mim.layers.layer_norm import LayerNorm
from keras_mim.layers.mlp import MLP
from keras_mim.layers.pos_embed import sincos_2d
from keras_mim.layers.token_ops import gather_tokens, restore_tokens
from keras_mim.layers.transformer_block import TransformerBlock
from keras_mim.utils import check_positive_int


@keras.saving.register_keras_serializable(package="keras_mim")
class MultiMAEDecoder(keras.layers.Layer):
    """Decodes one modality of a multi-modal encoder's output.

    The encoder tokens (global token first, then the K visible tokens in `ids_keep`
    order) are projected to `decoder_dim`; the visible ones are put back in place with a
    mask token (zeros at start, as the official) in the hidden places, and every place
    gets the fixed 2D sin-cos position embedding plus the learned embedding of the
    modality it belongs to. The queries are this decoder's modality's N places (its
    visible tokens' features, mask tokens elsewhere); the context is the visible places
    of every modality plus the global token. Then, as the official adapter:
    `x = CrossAttn(LN(queries), LN(context))` (no residual), `x = x + MLP(LN(x))`,
    `depth` pre-norm transformer blocks, and a linear map to `output_dim` per token.

    Args:
        grid_shape: `(M, gh, gw)` token grid of the encoder (M modalities).
        modality: index of the decoded modality in `[0, M)`.
        output_dim: prediction width per token (`ph * pw * C` for pixels, `ph * pw * K`
            for class logits).
        decoder_dim: decoder width (MultiMAE: 256).
        depth: self-attention blocks after the cross-attention (MultiMAE: 2).
        num_heads: heads of every attention (MultiMAE: 8).
        mlp_ratio: MLP hidden width / decoder width (4).
        norm_epsilon: LayerNorm epsilon (1e-6).
        **kwargs: standard layer arguments.

    Examples:
        >>> dec = MultiMAEDecoder((2, 2, 2), modality=1, output_dim=12, decoder_dim=16, depth=1, num_heads=2)
        >>> latent = np.zeros((1, 1 + 3, 8), "float32")  # global token + 3 visible of 2 x 4 tokens
        >>> ids_restore = np.array([[3, 0, 4, 5, 1, 6, 2, 7]])
        >>> tuple(dec(latent, np.array([[1, 4, 6]]), ids_restore).shape)
        (1, 4, 12)
    """

    def __init__(self, grid_shape, modality, output_dim, decoder_dim=256, depth=2, num_heads=8, mlp_ratio=4.0,
                 norm_epsilon=1e-6, **kwargs):
        super().__init__(**kwargs)
        if not (isinstance(grid_shape, (tuple, list)) and len(grid_shape) == 3):
            raise ValueError(f"`grid_shape` must be (M, gh, gw), got {grid_shape!r}.")
        self.grid_shape = tuple(check_positive_int(g, "grid_shape") for g in grid_shape)
        if isinstance(modality, bool) or not isinstance(modality, int) or not 0 <= modality < self.grid_shape[0]:
            raise ValueError(f"`modality` must be an int in [0, {self.grid_shape[0]}), got {modality!r}.")
        self.modality = modality
        self.output_dim = check_positive_int(output_dim, "output_dim")
        self.decoder_dim = check_positive_int(decoder_dim, "decoder_dim")
        self.depth = check_positive_int(depth, "depth")
        self.num_heads = check_positive_int(num_heads, "num_heads")
        if decoder_dim % num_heads or decoder_dim % 4:
            raise ValueError(f"`decoder_dim`={decoder_dim} must be divisible by `num_heads`={num_heads} and by 4 "
                             "(the 2D sin-cos table).")
        self.mlp_ratio = float(mlp_ratio)
        self.norm_epsilon = float(norm_epsilon)
        p = self.dtype_policy
        self.proj_context = keras.layers.Dense(decoder_dim, dtype=p, name="proj_context")
        self.query_norm = LayerNorm(epsilon=norm_epsilon, dtype=p, name="query_norm")
        self.context_norm = LayerNorm(epsilon=norm_epsilon, dtype=p, name="context_norm")
        self.cross_attn = MultiHeadCrossAttention(num_heads, dtype=p, name="cross_attn")
        self.out_norm = LayerNorm(epsilon=norm_epsilon, dtype=p, name="out_norm")
        self.mlp = MLP(mlp_ratio, dtype=p, name="mlp")
        self.blocks = [TransformerBlock(num_heads, mlp_ratio=mlp_ratio, norm_epsilon=norm_epsilon, dtype=p,
                                        name=f"block_{i}") for i in range(depth)]
        self.out_proj = keras.layers.Dense(output_dim, dtype=p, name="out_proj")
        m, gh, gw = self.grid_shape
        self.num_tokens = gh * gw  # of this modality
        # Fixed sin-cos table of one modality's grid, repeated for each modality: (M N, Dd)
        self.pos_table = np.tile(sincos_2d(decoder_dim, (gh, gw)), (m, 1)).astype("float32")

    def build(self, latent_shape, ids_keep_shape=None, ids_restore_shape=None):
        d = self.decoder_dim
        self.proj_context.build(latent_shape)
        self.mask_token = self.add_weight(shape=(1, 1, d), initializer="zeros", name="mask_token")
        self.modality_embeddings = self.add_weight(
            shape=(self.grid_shape[0], d), initializer=keras.initializers.TruncatedNormal(stddev=0.02),
            name="modality_embeddings")
        tokens = (None, self.num_tokens, d)
        self.query_norm.build(tokens)
        self.context_norm.build((None, None, d))
        self.cross_attn.build(tokens, (None, None, d))
        self.out_norm.build(tokens)
        self.mlp.build(tokens)
        for block in self.blocks:
            block.build(tokens)
        self.out_proj.build(tokens)
        self.built = True

    def place_embeddings(self):
        """Position + modality embedding of every place of the grid: `(1, M N, Dd)`."""
        modality = ops.repeat(self.modality_embeddings, self.num_tokens, axis=0)  # (M N, Dd)
        return ops.expand_dims(ops.convert_to_tensor(self.pos_table) + modality, 0)

    def call(self, latent, ids_keep, ids_restore, training=None):
        x = self.proj_context(latent)  # (B, 1 + K, Dd)
        global_token, visible = x[:, :1], x[:, 1:]
        full = restore_tokens(visible, ids_restore, self.mask_token)  # (B, M N, Dd), mask tokens when hidden
        full = full + ops.cast(self.place_embeddings(), full.dtype)
        start = self.modality * self.num_tokens
        queries = full[:, start : start + self.num_tokens]  # (B, N, Dd): this modality's places
        context = ops.concatenate([gather_tokens(full, ids_keep), global_token], axis=1)  # (B, K + 1, Dd)
        y = self.cross_attn(self.query_norm(queries), self.context_norm(context), training=training)
        y = y + self.mlp(self.out_norm(y), training=training)
        for block in self.blocks:
            y = block(y, training=training)
        return self.out_proj(y)  # (B, N, output_dim)

    def compute_output_shape(self, latent_shape, ids_keep_shape=None, ids_restore_shape=None):
        return (latent_shape[0], self.num_tokens, self.output_dim)

    def get_config(self):
        config = super().get_config()
        config.update(grid_shape=self.grid_shape, modality=self.modality, output_dim=self.output_dim,
                      decoder_dim=self.decoder_dim, depth=self.depth, num_heads=self.num_heads,
                      mlp_ratio=self.mlp_ratio, norm_epsilon=self.norm_epsilon)
        return config
