"""The ViT encoder shared by every pretraining method and downstream model."""

import math

import keras
import numpy as np
from keras import ops

from keras_mim.layers.layer_norm import LayerNorm
from keras_mim.layers.patching import PatchEmbedding
from keras_mim.layers.pos_embed import PositionEmbedding
from keras_mim.layers.token_ops import gather_tokens
from keras_mim.layers.transformer_block import TransformerBlock
from keras_mim.models.feature_export import FeatureExport
from keras_mim.models.preset_io import EncoderPresetMixin
from keras_mim.utils import (
    block_indices,
    check_clip_size,
    check_image_batch,
    check_image_size,
    check_positive_int,
    to_2tuple,
)


@keras.saving.register_keras_serializable(package="keras_mim")
class ViTEncoder(EncoderPresetMixin, FeatureExport, keras.Model):
    """Vision Transformer encoder (pre-norm blocks, fused qkv, exact GELU), as in MAE.

    `encoder(images)` encodes all tokens. `encoder(images, ids_keep=ids)` encodes only
    the tokens at `ids` (MAE's visible subset), so the cost scales with what is kept.
    `encoder(images, token_mask=mask)` (mask-token mode, SimMIM / data2vec; needs
    `mask_token=True`) encodes all N tokens with the hidden patches' embeddings replaced
    by a learned mask token before the position embedding. The output is
    `(B, [1 +] K, D)`: the cls token first when `cls_token=True`, then the encoded patch
    tokens in the order of `ids_keep` (row-major grid order without it).

    With `num_frames` set it is a video encoder (VideoMAE): inputs are clips
    `(B, T, H, W, C)`, cut into `tubelet_size x ph x pw` tubelets, so the token grid is
    `(T / tubelet_size, H / ph, W / pw)` and the sin-cos table is 3D (or VideoMAE's flat
    1D table with `pos_embed="sincos_1d"`). Everything downstream (masking, decoders,
    targets, probes) reads the grid from `grid_shape` and works unchanged.

    Encoder protocol (what pretraining models rely on, so that other encoders, e.g. a
    hierarchical one, can take this one's place): attributes `image_size`, `input_size` (the
    input's spatial shape, `(T, H, W)` for clips), `patch_size`, `num_channels`, `grid_shape` (the patch grid masks live on), `num_patches`,
    `num_prefix_tokens`, `output_grid_shape` and `output_dim` (the grid and width of the
    output tokens), `patch_shape` (the input block behind one token: `(ph, pw)`, or
    `(t, ph, pw)` for clips), `num_frames` (None for images) and
    `call(images, ids_keep=None, token_mask=None, training=None)` and `check_images(shape)`
    (`ENCODER_PROTOCOL` in models/pretraining_model.py lists them).

    Args:
        image_size: int or `(H, W)`; H and W divisible by `patch_size`.
        patch_size: int or `(ph, pw)`.
        num_channels: input channels C (3 RGB, 1 grayscale, any for multispectral).
        embed_dim: token width D.
        depth: number of transformer blocks.
        num_heads: attention heads.
        mlp_ratio: MLP hidden width / D.
        qkv_bias: bias on the qkv projection.
        cls_token: whether to prepend a learned cls token.
        mask_token: whether to own a learned mask token for mask-token mode (`token_mask=`).
        pos_embed: `"sincos"` (fixed: MAE's 2D table, 3D for clips), `"sincos_1d"`
            (VideoMAE's fixed table over the flattened grid) or `"learned"`.
        drop_path_rate: stochastic depth, rising linearly to this value over the blocks.
        layer_scale: None, or the initial LayerScale value.
        norm_epsilon: LayerNorm epsilon (MAE: 1e-6).
        num_frames: None for images; the clip length T for a video encoder.
        tubelet_size: frames per token of a video encoder (VideoMAE: 2); T must be a
            multiple of it.
        seed: optional int seed for drop path.
        **kwargs: standard model arguments (name, dtype).

    Examples:
        >>> import numpy as np
        >>> enc = ViTEncoder(image_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2)
        >>> tuple(enc(np.zeros((2, 32, 32, 3), "float32")).shape)
        (2, 17, 32)
        >>> video = ViTEncoder(image_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2,
        ...                    num_frames=4, tubelet_size=2, cls_token=False)
        >>> video.grid_shape, tuple(video(np.zeros((2, 4, 32, 32, 3), "float32")).shape)
        ((2, 4, 4), (2, 32, 32))
    """

    #: Presets without an `encoder_class` are ViTs: `ViTEncoder.from_preset(name)` builds theirs.
    takes_vit_presets = True

    def __init__(
        self,
        image_size=224,
        patch_size=16,
        num_channels=3,
        embed_dim=768,
        depth=12,
        num_heads=12,
        mlp_ratio=4.0,
        qkv_bias=True,
        cls_token=True,
        mask_token=False,
        pos_embed="sincos",
        drop_path_rate=0.0,
        layer_scale=None,
        norm_epsilon=1e-6,
        num_frames=None,
        tubelet_size=2,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.image_size = to_2tuple(image_size, "image_size")
        self.patch_size = to_2tuple(patch_size, "patch_size")
        self.num_frames = None if num_frames is None else check_positive_int(num_frames, "num_frames")
        self.tubelet_size = check_positive_int(tubelet_size, "tubelet_size")
        if self.num_frames is None:
            self.patch_shape = self.patch_size
            self.grid_shape = check_image_size(self.image_size, self.patch_size, "`image_size`")
        else:
            self.patch_shape = (self.tubelet_size,) + self.patch_size
            self.grid_shape = check_clip_size(
                (self.num_frames,) + self.image_size, self.patch_shape, "clip size (`num_frames`, `image_size`)"
            )
        self.num_patches = math.prod(self.grid_shape)
        self.num_channels = check_positive_int(num_channels, "num_channels")
        self.embed_dim = check_positive_int(embed_dim, "embed_dim")
        self.depth = check_positive_int(depth, "depth")
        self.num_heads = check_positive_int(num_heads, "num_heads")
        if embed_dim % num_heads:
            raise ValueError(f"`num_heads`={num_heads} must divide `embed_dim`={embed_dim}.")
        multiple = 16 if pos_embed == "sincos" and self.num_frames else 4 if pos_embed == "sincos" else 2
        if pos_embed != "learned" and embed_dim % multiple:
            raise ValueError(
                f"`pos_embed`={pos_embed!r} on a {len(self.grid_shape)}D token grid needs `embed_dim` "
                f"divisible by {multiple}, got {embed_dim}."
            )
        self.mlp_ratio = float(mlp_ratio)
        self.qkv_bias = bool(qkv_bias)
        self.use_cls_token = bool(cls_token)
        self.use_mask_token = bool(mask_token)
        self.pos_embed_mode = pos_embed
        self.drop_path_rate = float(drop_path_rate)
        self.layer_scale = layer_scale
        self.norm_epsilon = float(norm_epsilon)
        self.seed = seed
        self.num_prefix_tokens = int(self.use_cls_token)
        self.output_grid_shape = self.grid_shape
        self.output_dim = self.embed_dim

        p = self.dtype_policy
        self.patch_embed = PatchEmbedding(self.patch_shape, embed_dim, dtype=p, name="patch_embed")
        self.pos_embed = PositionEmbedding(
            self.grid_shape, mode=pos_embed, cls_token=cls_token, dtype=p, name="pos_embed"
        )
        rates = np.linspace(0.0, self.drop_path_rate, depth)
        self.blocks = [
            TransformerBlock(
                num_heads,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                drop_path=float(rates[i]),
                layer_scale=layer_scale,
                norm_epsilon=norm_epsilon,
                seed=None if seed is None else seed + 2 * i,
                dtype=p,
                name=f"block_{i}",
            )
            for i in range(depth)
        ]
        self.norm = LayerNorm(epsilon=norm_epsilon, dtype=p, name="norm")
        self.build()  # every shape is known from the config

    def build(self, images_shape=None):
        if self.built:
            return
        self.patch_embed.build((None,) + self.input_size + (self.num_channels,))
        token_shape = (None, self.num_patches, self.embed_dim)
        self.pos_embed.build(token_shape)
        if self.use_cls_token:
            self.cls_token = self.add_weight(
                shape=(1, 1, self.embed_dim),
                initializer=keras.initializers.RandomNormal(stddev=0.02),
                name="cls_token",
            )
        if self.use_mask_token:
            self.mask_token = self.add_weight(
                shape=(1, 1, self.embed_dim),
                initializer=keras.initializers.RandomNormal(stddev=0.02),
                name="mask_token",
            )
        for block in self.blocks:
            block.build(token_shape)
        self.norm.build(token_shape)
        self.built = True

    def build_from_config(self, config):
        # Every shape is fixed by the config; the recorded input shape adds nothing.
        self.build()

    @property
    def input_size(self):
        """`(H, W)` for images, `(T, H, W)` for clips: the size a batch must have."""
        return self.image_size if self.num_frames is None else (self.num_frames,) + self.image_size

    def check_images(self, images, name="images"):
        """Raise a clear error unless `images` is float `(B, H, W, C)` (clips:
        `(B, T, H, W, C)`) fitting this encoder; returns its token grid."""
        shape = check_image_batch(images, self.num_channels, name, clips=self.num_frames is not None)
        if self.num_frames is None:
            return check_image_size(shape[1:3], self.patch_size, f"`{name}` size")
        if shape[1] != self.num_frames:
            raise ValueError(
                f"`{name}` has clips of {shape[1]} frames but the encoder expects "
                f"`num_frames`={self.num_frames}."
            )
        return check_clip_size(shape[1:4], self.patch_shape, f"`{name}` clip size")

    def embed_patches(self, images, token_mask=None):
        """Patch tokens with position embedding, no cls: `(B, N, D)`. With `token_mask`
        `(B, N)` (1 = hidden), hidden embeddings become the mask token first."""
        grid = self.check_images(images)
        x = self.patch_embed(images)  # (B, N, D)
        if token_mask is not None:
            if not self.use_mask_token:
                raise ValueError(
                    "`token_mask=` (mask-token mode) needs an encoder built with `mask_token=True`."
                )
            w = ops.cast(ops.expand_dims(token_mask, -1), x.dtype)  # (B, N, 1)
            x = x * (1 - w) + ops.cast(self.mask_token, x.dtype) * w
        return self.pos_embed(x, grid_shape=None if grid == self.grid_shape else grid)

    def prepend_cls(self, tokens):
        """`(B, K, D) -> (B, 1 + K, D)` with the cls token (plus its position row) first;
        unchanged without a cls token."""
        if not self.use_cls_token:
            return tokens
        cls = ops.cast(self.cls_token + self.pos_embed.cls_embedding(), tokens.dtype)
        cls = ops.broadcast_to(cls, (ops.shape(tokens)[0], 1, self.embed_dim))
        return ops.concatenate([cls, tokens], axis=1)

    def encode_tokens(self, tokens, training=None, return_layers=None):
        """Prepend the cls token, run the blocks and the final norm: `(B, [1+]K, D)`.

        With `return_layers` (block indices, negative from the end), also return the
        list of those blocks' outputs (before the final norm): `(output, [features])`.
        """
        x = self.prepend_cls(tokens)
        wanted = None if return_layers is None else self.layer_indices(return_layers)
        features = {}
        for i, block in enumerate(self.blocks):
            x = block(x, training=training)
            if wanted is not None and i in wanted:
                features[i] = x
        x = self.norm(x)
        if wanted is None:
            return x
        return x, [features[i] for i in wanted]

    def layer_indices(self, layers):
        """Normalise block indices (negative count from the end); raise on bad ones."""
        return block_indices(layers, self.depth)

    def select_tokens(self, images, ids_keep=None, token_mask=None):
        """Embedded patch tokens the blocks will see: all N, the `ids_keep` subset
        `(B, K, D)`, or all N with mask tokens where `token_mask` is 1."""
        if ids_keep is not None and token_mask is not None:
            raise ValueError(
                "Pass either `ids_keep` (drop hidden tokens) or `token_mask` (mask tokens), not both."
            )
        x = self.embed_patches(images, token_mask=token_mask)  # (B, N, D)
        return x if ids_keep is None else gather_tokens(x, ids_keep)  # (B, K, D)

    def call(self, images, ids_keep=None, token_mask=None, training=None):
        return self.encode_tokens(self.select_tokens(images, ids_keep, token_mask), training=training)

    def forward_features(self, images, layers, ids_keep=None, token_mask=None, training=None):
        """Outputs of the blocks `layers` (list of `(B, [1+]K, D)`, before the final
        norm) and the final output, as `(output, features)`."""
        x = self.select_tokens(images, ids_keep, token_mask)
        return self.encode_tokens(x, training=training, return_layers=layers)

    def cls_attention(self, images, training=False):
        """Last block's attention from the cls token to each patch, mean over heads:
        `(B, N)` float32 summing to at most 1 (what MaskAlign guides its masks with)."""
        if not self.use_cls_token:
            raise ValueError("`cls_attention` needs an encoder with `cls_token=True`.")
        x = self.prepend_cls(self.embed_patches(images))
        for block in self.blocks[:-1]:
            x = block(x, training=training)
        last = self.blocks[-1]
        probs = last.attn.attention_probs(last.norm1(x))  # (B, H, 1+N, 1+N)
        return ops.mean(probs[:, :, 0, 1:], axis=1)

    def get_config(self):
        config = super().get_config()
        config.update(
            image_size=self.image_size,
            patch_size=self.patch_size,
            num_channels=self.num_channels,
            embed_dim=self.embed_dim,
            depth=self.depth,
            num_heads=self.num_heads,
            mlp_ratio=self.mlp_ratio,
            qkv_bias=self.qkv_bias,
            cls_token=self.use_cls_token,
            mask_token=self.use_mask_token,
            pos_embed=self.pos_embed_mode,
            drop_path_rate=self.drop_path_rate,
            layer_scale=self.layer_scale,
            norm_epsilon=self.norm_epsilon,
            num_frames=self.num_frames,
            tubelet_size=self.tubelet_size,
            seed=self.seed,
        )
        return config

    @classmethod
    def from_keras_hub(cls, backbone, **overrides):
        """An encoder with the weights of a keras-hub `ViTBackbone` or `DINOV2Backbone`
        (outputs identical at the backbone's image size); `overrides` set what the backbone
        does not fix (`mask_token=True`, `drop_path_rate`, `seed`). What maps and what is
        refused: `keras_mim.models.keras_hub_vit`.

        Examples:
            >>> import keras_hub  # doctest: +SKIP
            >>> backbone = keras_hub.models.DINOV2Backbone.from_preset("dinov2_small")  # doctest: +SKIP
            >>> encoder = ViTEncoder.from_keras_hub(backbone)  # doctest: +SKIP
        """
        from keras_mim.models.keras_hub_vit import from_keras_hub

        return from_keras_hub(backbone, encoder_class=cls, **overrides)

    def to_keras_hub(self):
        """This encoder as a keras-hub `ViTBackbone` with the same weights (see `to_keras_hub`
        in `keras_mim.models.keras_hub_vit`)."""
        from keras_mim.models.keras_hub_vit import to_keras_hub

        return to_keras_hub(self)
