"""The ViT encoder shared by every pretraining method and downstream model."""

import keras
import numpy as np
from keras import ops

from keras_mim.layers.patching import PatchEmbedding
from keras_mim.layers.pos_embed import PositionEmbedding2D
from keras_mim.layers.token_ops import gather_tokens
from keras_mim.layers.transformer_block import TransformerBlock
from keras_mim.utils import check_image_size, check_positive_int, to_2tuple


@keras.saving.register_keras_serializable(package="keras_mim")
class ViTEncoder(keras.Model):
    """Vision Transformer encoder (pre-norm blocks, fused qkv, exact GELU), as in MAE.

    `encoder(images)` encodes all tokens. `encoder(images, ids_keep=ids)` encodes only
    the tokens at `ids` (MAE's visible subset), so the cost scales with what is kept.
    The output is `(B, [1 +] K, D)`: the cls token first when `cls_token=True`, then
    the encoded patch tokens in the order of `ids_keep` (row-major grid order without it).

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
        pos_embed: `"sincos"` (fixed, MAE) or `"learned"`.
        drop_path_rate: stochastic depth, rising linearly to this value over the blocks.
        layer_scale: None, or the initial LayerScale value.
        norm_epsilon: LayerNorm epsilon (MAE: 1e-6).
        seed: optional int seed for drop path.
        **kwargs: standard model arguments (name, dtype).

    Example:
    >>> import numpy as np
    >>> enc = ViTEncoder(image_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2)
    >>> tuple(enc(np.zeros((2, 32, 32, 3), "float32")).shape)
    (2, 17, 32)
    """

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
        pos_embed="sincos",
        drop_path_rate=0.0,
        layer_scale=None,
        norm_epsilon=1e-6,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.image_size = to_2tuple(image_size, "image_size")
        self.patch_size = to_2tuple(patch_size, "patch_size")
        self.grid_shape = check_image_size(self.image_size, self.patch_size, "`image_size`")
        self.num_patches = self.grid_shape[0] * self.grid_shape[1]
        self.num_channels = check_positive_int(num_channels, "num_channels")
        self.embed_dim = check_positive_int(embed_dim, "embed_dim")
        self.depth = check_positive_int(depth, "depth")
        self.num_heads = check_positive_int(num_heads, "num_heads")
        if embed_dim % num_heads:
            raise ValueError(f"`num_heads`={num_heads} must divide `embed_dim`={embed_dim}.")
        if pos_embed == "sincos" and embed_dim % 4:
            raise ValueError(f"Sin-cos position embedding needs `embed_dim` divisible by 4, got {embed_dim}.")
        self.mlp_ratio = float(mlp_ratio)
        self.qkv_bias = bool(qkv_bias)
        self.use_cls_token = bool(cls_token)
        self.pos_embed_mode = pos_embed
        self.drop_path_rate = float(drop_path_rate)
        self.layer_scale = layer_scale
        self.norm_epsilon = float(norm_epsilon)
        self.seed = seed
        self.num_prefix_tokens = int(self.use_cls_token)

        p = self.dtype_policy
        self.patch_embed = PatchEmbedding(self.patch_size, embed_dim, dtype=p, name="patch_embed")
        self.pos_embed = PositionEmbedding2D(
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
        self.norm = keras.layers.LayerNormalization(epsilon=norm_epsilon, dtype=p, name="norm")
        self.build()  # every shape is known from the config

    def build(self, images_shape=None):
        if self.built:
            return
        h, w = self.image_size
        self.patch_embed.build((None, h, w, self.num_channels))
        token_shape = (None, self.num_patches, self.embed_dim)
        self.pos_embed.build(token_shape)
        if self.use_cls_token:
            self.cls_token = self.add_weight(
                shape=(1, 1, self.embed_dim),
                initializer=keras.initializers.RandomNormal(stddev=0.02),
                name="cls_token",
            )
        for block in self.blocks:
            block.build(token_shape)
        self.norm.build(token_shape)
        self.built = True

    def build_from_config(self, config):
        # Every shape is fixed by the config; the recorded input shape adds nothing.
        self.build()

    def check_images(self, images, name="images"):
        """Raise a clear error unless `images` is float `(B, H, W, C)` fitting this encoder."""
        shape = tuple(images.shape)
        if len(shape) != 4:
            raise ValueError(
                f"`{name}` must be a batch of images (B, H, W, C), got rank {len(shape)} "
                f"shape {shape}."
            )
        dtype = keras.backend.standardize_dtype(images.dtype)
        if "float" not in dtype:
            raise TypeError(
                f"`{name}` must be a float tensor (scaled pixels), got dtype {dtype}; "
                "cast it, e.g. `images.astype('float32') / 255`."
            )
        if shape[-1] != self.num_channels:
            raise ValueError(
                f"`{name}` has {shape[-1]} channels but the encoder expects "
                f"`num_channels`={self.num_channels}."
            )
        return check_image_size(shape[1:3], self.patch_size, f"`{name}` size")

    def embed_patches(self, images):
        """Patch tokens with position embedding, no cls: `(B, N, D)`."""
        grid = self.check_images(images)
        x = self.patch_embed(images)
        return self.pos_embed(x, grid_shape=None if grid == self.grid_shape else grid)

    def encode_tokens(self, tokens, training=None):
        """Prepend the cls token, run the blocks and the final norm: `(B, [1+]K, D)`."""
        x = tokens
        if self.use_cls_token:
            cls = ops.cast(self.cls_token + self.pos_embed.cls_embedding(), x.dtype)
            cls = ops.broadcast_to(cls, (ops.shape(x)[0], 1, self.embed_dim))
            x = ops.concatenate([cls, x], axis=1)
        for block in self.blocks:
            x = block(x, training=training)
        return self.norm(x)

    def call(self, images, ids_keep=None, training=None):
        x = self.embed_patches(images)  # (B, N, D)
        if ids_keep is not None:
            x = gather_tokens(x, ids_keep)  # (B, K, D)
        return self.encode_tokens(x, training=training)

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
            pos_embed=self.pos_embed_mode,
            drop_path_rate=self.drop_path_rate,
            layer_scale=self.layer_scale,
            norm_epsilon=self.norm_epsilon,
            seed=self.seed,
        )
        return config
