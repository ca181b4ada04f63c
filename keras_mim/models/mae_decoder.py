"""The light MAE decoder: visible latents + mask tokens -> per-patch predictions."""

import math

import keras
from keras import ops

from keras_mim.layers.layer_norm import LayerNorm
from keras_mim.layers.pos_embed import PositionEmbedding, check_grid
from keras_mim.layers.token_ops import gather_tokens, restore_tokens
from keras_mim.layers.transformer_block import TransformerBlock
from keras_mim.layers.window_transformer_block import WindowTransformerBlock
from keras_mim.utils import check_positive_int


def unshuffle_tokens(decoder, latent, ids_restore):
    """The start of an MAE-style decoder: project `latent` `(B, P + K, De)` with
    `decoder.embed`, fill the hidden places with `decoder.mask_token`, unshuffle with
    `ids_restore` and add `decoder.pos_embed` (the P prefix tokens get its cls row).

    Returns `(prefix (B, P, Dd), tokens (B, N, Dd))`; shared by every decoder that
    rebuilds the full token grid (MAE, the two-view cross-attention decoder).
    """
    x = decoder.embed(latent)  # (B, P + K, Dd)
    p = decoder.num_prefix_tokens
    prefix, visible = x[:, :p], x[:, p:]
    tokens = decoder.pos_embed(restore_tokens(visible, ids_restore, decoder.mask_token))  # (B, N, Dd)
    if p:
        prefix = prefix + ops.cast(decoder.pos_embed.cls_embedding(), tokens.dtype)
    return prefix, tokens


@keras.saving.register_keras_serializable(package="keras_mim")
class MAEDecoder(keras.layers.Layer):
    """MAE decoder: project, append mask tokens, unshuffle, add the fixed sin-cos
    position embedding, run `depth` blocks, norm, project each token to `output_dim`.

    Local attention (Audio-MAE's decoder): with `window_size`, the blocks are
    `WindowTransformerBlock`s on the 2D grid, their windows shifted by `shift_size`
    in every second block, and the cls token is left out of the blocks (as the
    official `decoder_mode=1`).

    `decoder(latent, ids_restore, ids_decode=ids)` runs the blocks only on the tokens
    at positions `ids` `(B, M)` (VideoMAE V2's dual masking: the visible tokens and the
    subset of hidden ones to reconstruct) and returns `(B, M, output_dim)` in that
    order, so the cost of the blocks scales with M instead of N.

    Args:
        grid_shape: `(gh, gw)` (or `(T, gh, gw)` for clips) token grid of the encoder.
        output_dim: prediction width per token (`ph * pw * C` for pixels).
        decoder_dim: decoder token width (MAE: 512).
        depth: decoder blocks (MAE: 8).
        num_heads: decoder heads (MAE: 16).
        mlp_ratio: MLP hidden width / decoder width.
        num_prefix_tokens: tokens before the patches in the encoder output (1 for cls).
        norm_epsilon: LayerNorm epsilon.
        pos_embed: fixed table, `"sincos"` (MAE 2D / 3D for clips) or `"sincos_1d"`
            (VideoMAE's flat table).
        window_size: None (global attention), or `(wt, wf)`: local window attention on
            a 2D grid (Audio-MAE: (4, 4)).
        shift_size: the windows' shift in every second block (default: half the window
            along the first axis, Audio-MAE's (2, 0)); `(0, 0)`: no shift.
        **kwargs: standard layer arguments.

    Examples:
        >>> import numpy as np
        >>> dec = MAEDecoder((2, 2), output_dim=12, decoder_dim=16, depth=1, num_heads=2)
        >>> latent = np.zeros((1, 3, 8), "float32")  # cls + 2 visible tokens of width 8
        >>> tuple(dec(latent, np.array([[0, 2, 1, 3]])).shape)
        (1, 4, 12)
    """

    def __init__(
        self,
        grid_shape,
        output_dim,
        decoder_dim=512,
        depth=8,
        num_heads=16,
        mlp_ratio=4.0,
        num_prefix_tokens=1,
        norm_epsilon=1e-6,
        pos_embed="sincos",
        window_size=None,
        shift_size=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.grid_shape = check_grid(grid_shape)
        if isinstance(window_size, int):
            window_size = (window_size, window_size)
        self.window_size = None if window_size is None else tuple(int(w) for w in window_size)
        if self.window_size is None and shift_size is not None:
            raise ValueError(f"`shift_size`={shift_size!r} shifts windows: give `window_size` too.")
        if self.window_size is not None and len(self.grid_shape) != 2:
            raise ValueError(f"`window_size` needs a 2D token grid, got grid_shape={self.grid_shape}.")
        if shift_size is None and self.window_size is not None:
            shift_size = (self.window_size[0] // 2, 0)
        self.shift_size = None if shift_size is None else tuple(int(s) for s in shift_size)
        if pos_embed not in ("sincos", "sincos_1d"):
            raise ValueError(f"`pos_embed` must be 'sincos' or 'sincos_1d', got {pos_embed!r}.")
        self.pos_embed_mode = pos_embed
        self.output_dim = check_positive_int(output_dim, "output_dim")
        self.decoder_dim = check_positive_int(decoder_dim, "decoder_dim")
        self.depth = check_positive_int(depth, "depth")
        self.num_heads = check_positive_int(num_heads, "num_heads")
        if decoder_dim % num_heads:
            raise ValueError(f"`num_heads`={num_heads} must divide `decoder_dim`={decoder_dim}.")
        self.mlp_ratio = float(mlp_ratio)
        self.num_prefix_tokens = int(num_prefix_tokens)
        self.norm_epsilon = float(norm_epsilon)
        p = self.dtype_policy
        self.embed = keras.layers.Dense(decoder_dim, dtype=p, name="decoder_embed")
        self.pos_embed = PositionEmbedding(
            self.grid_shape, pos_embed, cls_token=self.num_prefix_tokens > 0, dtype=p,
            name="decoder_pos_embed",
        )
        if self.window_size is None:
            self.blocks = [
                TransformerBlock(num_heads, mlp_ratio, norm_epsilon=norm_epsilon, dtype=p,
                                 name=f"decoder_block_{i}")
                for i in range(depth)
            ]
        else:
            self.blocks = [
                WindowTransformerBlock(num_heads, self.grid_shape, self.window_size,
                                       self.shift_size if i % 2 else (0, 0), mlp_ratio,
                                       norm_epsilon=norm_epsilon, dtype=p, name=f"decoder_block_{i}")
                for i in range(depth)
            ]
        self.norm = LayerNorm(epsilon=norm_epsilon, dtype=p, name="decoder_norm")
        self.pred = keras.layers.Dense(output_dim, dtype=p, name="decoder_pred")

    def build(self, latent_shape, ids_restore_shape=None):
        self.embed.build(latent_shape)
        n = math.prod(self.grid_shape)
        shape = (None, n + self.num_prefix_tokens, self.decoder_dim)
        self.pos_embed.build(shape)
        self.mask_token = self.add_weight(
            shape=(1, 1, self.decoder_dim),
            initializer=keras.initializers.RandomNormal(stddev=0.02),
            name="mask_token",
        )
        for block in self.blocks:
            block.build(shape if self.window_size is None else (None, n, self.decoder_dim))
        self.norm.build(shape)
        self.pred.build(shape)

    def call(self, latent, ids_restore, ids_decode=None, training=None):
        prefix, x = unshuffle_tokens(self, latent, ids_restore)  # (B, P, Dd), (B, N, Dd)
        if ids_decode is not None:
            if self.window_size is not None:
                raise ValueError("Partial decoding (`ids_decode`) needs the whole grid with window attention.")
            x = gather_tokens(x, ids_decode)  # (B, M, Dd): only the tokens to decode
        if self.window_size is not None:  # windows on the grid: the cls token stays out (Audio-MAE)
            for block in self.blocks:
                x = block(x, training=training)
            return self.pred(self.norm(x))  # (B, N, output_dim)
        if self.num_prefix_tokens:
            x = ops.concatenate([prefix, x], axis=1)
        for block in self.blocks:
            x = block(x, training=training)
        x = self.pred(self.norm(x))
        return x[:, self.num_prefix_tokens :]  # (B, N or M, output_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            grid_shape=self.grid_shape,
            output_dim=self.output_dim,
            decoder_dim=self.decoder_dim,
            depth=self.depth,
            num_heads=self.num_heads,
            mlp_ratio=self.mlp_ratio,
            num_prefix_tokens=self.num_prefix_tokens,
            norm_epsilon=self.norm_epsilon,
            pos_embed=self.pos_embed_mode,
            window_size=self.window_size,
            shift_size=self.shift_size,
        )
        return config


def make_decoder(decoder, encoder, output_dim, decoder_cls=MAEDecoder):
    """A `decoder_cls` on `encoder`'s token grid predicting `output_dim` values per token.

    Args:
        decoder: None (the class defaults), a dict of `decoder_cls` arguments, or a
            `decoder_cls` instance (checked against the encoder and `output_dim`).
        encoder: the model's encoder (`grid_shape`, `num_prefix_tokens`).
        output_dim: prediction width per token.
        decoder_cls: `MAEDecoder` or another decoder with the same first arguments
            (`grid_shape, output_dim, num_prefix_tokens=...`).
    """
    grid, prefix = tuple(encoder.grid_shape), encoder.num_prefix_tokens
    if decoder is None or isinstance(decoder, dict):
        kwargs = {"name": "decoder", **(decoder or {})}
        return decoder_cls(grid, output_dim, num_prefix_tokens=prefix, **kwargs)
    if not isinstance(decoder, decoder_cls):
        raise TypeError(
            f"`decoder` must be a {decoder_cls.__name__}, a dict of its arguments or None, got "
            f"{type(decoder).__name__}."
        )
    found = (tuple(decoder.grid_shape), decoder.output_dim, decoder.num_prefix_tokens)
    if found != (grid, output_dim, prefix):
        raise ValueError(
            f"`decoder` (grid {found[0]}, output_dim {found[1]}, {found[2]} prefix tokens) does not "
            f"match the encoder and target (grid {grid}, output_dim {output_dim}, {prefix} prefix tokens)."
        )
    return decoder
