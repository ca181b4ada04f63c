"""A ViT on several paired inputs at once (RGB, depth, segmentation, band groups): MultiMAE's
input adapters and shared encoder (EPFL-VILAB/MultiMAE, `input_adapters.py`, `multimae.py`)."""

import keras
from keras import ops

from keras_mim.layers.patching import PatchEmbedding
from keras_mim.layers.token_ops import gather_tokens
from keras_mim.models.vit_encoder import ViTEncoder
from keras_mim.utils import check_image_batch, check_positive_int, modality_specs


@keras.saving.register_keras_serializable(package="keras_mim")
class MultiModalEncoder(keras.Model):
    """ViT encoder on a dict of paired inputs, one patch embedding per modality.

    Each modality becomes `gh x gw` tokens of width D through its own patch embedding
    (a class map first through a learned `Embedding(K, class_embed_dim)` per pixel, as
    MultiMAE's segmentation adapter), gets the position embedding (the same fixed 2D
    sin-cos table for every modality, as MultiMAE) and, with `modality_embedding=True`,
    a learned vector of its own (MultiMAE has none: its modalities differ only by their
    projections). The tokens of the given modalities are concatenated in the order of
    `modalities` (a `(M, gh, gw)` token grid, what `DirichletMaskGenerator` splits), the
    `ids_keep` subset is taken, and one stack of transformer blocks encodes them after a
    learned global token (MultiMAE's `global_tokens`, here first, like a cls token).

    The first modality is the main one: its patch embedding, the position table, the
    global token, the blocks and the final norm are an ordinary `ViTEncoder`,
    `encoder.trunk`, so after pretraining `encoder.trunk` is a ViT on that modality alone
    that every probe, classifier and export of keras_mim takes (MultiMAE's
    `multimae2vit_converter`, without conversion). Any subset of the modalities can be
    given at inference and fine-tuning; tokens of absent ones are simply not there.

    Args:
        modalities: dict name -> channel count (float images `(B, H, W, C)`) or
            `{"classes": K}` (int class maps `(B, H, W)` with values in `[0, K)`).
            MultiMAE: `{"rgb": 3, "depth": 1, "semseg": {"classes": 133}}`.
        image_size: int or `(H, W)` of every modality.
        patch_size: int or `(ph, pw)`, the same for every modality.
        embed_dim: token width D.
        depth: transformer blocks.
        num_heads: attention heads.
        mlp_ratio: MLP hidden width / D.
        qkv_bias: bias on the qkv projections.
        pos_embed: `"sincos"` (fixed, MultiMAE) or `"learned"` (one table shared by the
            modalities).
        modality_embedding: add a learned per-modality vector to its tokens.
        class_embed_dim: width of the per-pixel class embedding of class-map modalities
            (MultiMAE: 64).
        drop_path_rate: stochastic depth of the last block.
        norm_epsilon: LayerNorm epsilon.
        seed: optional int seed of drop path.
        **kwargs: standard model arguments.

    Examples:
        >>> import numpy as np
        >>> enc = MultiModalEncoder({"rgb": 3, "depth": 1, "semseg": {"classes": 4}}, image_size=16,
        ...                         patch_size=4, embed_dim=32, depth=2, num_heads=2)
        >>> x = {"rgb": np.zeros((2, 16, 16, 3), "float32"), "depth": np.zeros((2, 16, 16, 1), "float32"),
        ...      "semseg": np.zeros((2, 16, 16), "int32")}
        >>> enc.grid_shape, tuple(enc(x).shape), tuple(enc({"rgb": x["rgb"]}).shape)
        ((3, 4, 4), (2, 49, 32), (2, 17, 32))
    """

    def __init__(self, modalities, image_size=224, patch_size=16, embed_dim=768, depth=12, num_heads=12,
                 mlp_ratio=4.0, qkv_bias=True, pos_embed="sincos", modality_embedding=False, class_embed_dim=64,
                 drop_path_rate=0.0, norm_epsilon=1e-6, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.modalities = modality_specs(modalities)
        if "channels" not in next(iter(self.modalities.values())):
            raise ValueError(f"The first modality is the main one (its own ViT after pretraining) and must have "
                             f"channels; got {self.modalities}.")
        self.names = tuple(self.modalities)
        self.main = self.names[0]
        if pos_embed not in ("sincos", "learned"):
            raise ValueError(f"`pos_embed` must be 'sincos' or 'learned', got {pos_embed!r}.")
        self.use_modality_embedding = bool(modality_embedding)
        self.class_embed_dim = check_positive_int(class_embed_dim, "class_embed_dim")
        p = self.dtype_policy
        self.trunk = ViTEncoder(
            image_size=image_size, patch_size=patch_size, num_channels=self.modalities[self.main]["channels"],
            embed_dim=embed_dim, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
            cls_token=True, pos_embed=pos_embed, drop_path_rate=drop_path_rate, norm_epsilon=norm_epsilon,
            seed=seed, dtype=p, name="trunk",
        )
        t = self.trunk
        self.image_size, self.patch_size, self.patch_shape = t.image_size, t.patch_size, t.patch_size
        self.input_size, self.num_channels, self.embed_dim, self.depth = t.image_size, t.num_channels, t.embed_dim, t.depth
        self.grid_shape = (len(self.names),) + tuple(t.grid_shape)
        self.num_patches = len(self.names) * t.num_patches
        self.output_grid_shape, self.output_dim, self.num_prefix_tokens = self.grid_shape, t.embed_dim, 1
        self.num_frames = None
        # modalities after the main one: a patch embedding each (class maps: an Embedding first)
        self.patch_embeds = [PatchEmbedding(self.patch_size, t.embed_dim, dtype=p, name=f"patch_embed_{n}")
                             for n in self.names[1:]]
        self.class_embeds = [keras.layers.Embedding(spec["classes"], self.class_embed_dim, dtype=p, name=f"class_embed_{n}",
                                                    embeddings_initializer=keras.initializers.TruncatedNormal(stddev=0.02))
                             for n, spec in self.modalities.items() if "classes" in spec]
        self.build()

    @classmethod
    def cell_size(cls, patch_size=16, **config):
        """Pixels behind one token (the patch), for preset listings."""
        return patch_size

    def build(self, input_shape=None):
        if self.built:
            return
        h, w = self.image_size
        classes = iter(self.class_embeds)
        for name, layer in zip(self.names[1:], self.patch_embeds):
            if "classes" in self.modalities[name]:
                next(classes).build((None, h, w))
                layer.build((None, h, w, self.class_embed_dim))
            else:
                layer.build((None, h, w, self.modalities[name]["channels"]))
        if self.use_modality_embedding:
            self.modality_embeddings = self.add_weight(
                shape=(len(self.names), self.embed_dim), name="modality_embeddings",
                initializer=keras.initializers.TruncatedNormal(stddev=0.02))
        self.built = True

    def build_from_config(self, config):
        self.build()

    def as_dict(self, inputs):
        """`inputs` as a dict of modalities (a single tensor is the main modality)."""
        return inputs if isinstance(inputs, dict) else {self.main: inputs}

    def present(self, inputs):
        """The modalities given in `inputs`, in the encoder's order; raises on unknown names."""
        inputs = self.as_dict(inputs)
        unknown = sorted(set(inputs) - set(self.names))
        if unknown:
            raise ValueError(f"Unknown modalities {unknown} in the inputs; this encoder was built on "
                             f"{list(self.names)} (absent ones may be left out, new ones cannot be added).")
        if not inputs:
            raise ValueError(f"The inputs hold no modality; give at least one of {list(self.names)}.")
        return [n for n in self.names if n in inputs]

    def check_images(self, inputs, name="x"):
        """Raise unless every given modality has the expected rank, dtype, channels and size."""
        inputs = self.as_dict(inputs)
        for modality in self.present(inputs):
            x, spec, where = inputs[modality], self.modalities[modality], f"{name}[{modality!r}]"
            shape = tuple(x.shape)
            if "classes" in spec:
                dtype = keras.backend.standardize_dtype(x.dtype)
                if len(shape) != 3 or "int" not in dtype:
                    raise ValueError(f"`{where}` must be an int class map (B, H, W) with values in "
                                     f"[0, {spec['classes']}), got shape {shape} and dtype {dtype}.")
                size = shape[1:3]
            else:
                size = check_image_batch(x, spec["channels"], where)[1:3]
            if tuple(size) != tuple(self.image_size):  # (the image size is a whole number of patches)
                raise ValueError(f"`{where}` has size {tuple(size)} but every modality of this encoder is "
                                 f"{self.image_size} (`image_size`).")
        return self.grid_shape

    def embed_modality(self, name, x):
        """One modality's patch tokens with the position (and modality) embedding: `(B, N, D)`."""
        i = self.names.index(name)
        if i == 0:
            tokens = self.trunk.patch_embed(x)
        else:
            if "classes" in self.modalities[name]:
                classes = [n for n in self.names if "classes" in self.modalities[n]]
                x = self.class_embeds[classes.index(name)](ops.cast(x, "int32"))  # (B, H, W, E)
            tokens = self.patch_embeds[i - 1](x)
        tokens = self.trunk.pos_embed(tokens)
        if self.use_modality_embedding:
            tokens = tokens + ops.cast(self.modality_embeddings[i], tokens.dtype)
        return tokens

    def embed(self, inputs):
        """Tokens of the given modalities, concatenated in the encoder's order: `(B, M' N, D)`."""
        inputs = self.as_dict(inputs)
        return ops.concatenate([self.embed_modality(n, inputs[n]) for n in self.present(inputs)], axis=1)

    def call(self, inputs, ids_keep=None, training=None):
        """Encode the given modalities (all their tokens, or the `ids_keep` subset of their
        concatenation): `(B, 1 + K, D)`, the global token first."""
        x = self.embed(inputs)
        if ids_keep is not None:
            x = gather_tokens(x, ids_keep)
        return self.trunk.encode_tokens(x, training=training)

    def get_config(self):
        config = super().get_config()
        t = self.trunk
        config.update(modalities=self.modalities, image_size=t.image_size, patch_size=t.patch_size,
                      embed_dim=t.embed_dim, depth=t.depth, num_heads=t.num_heads, mlp_ratio=t.mlp_ratio,
                      qkv_bias=t.qkv_bias, pos_embed=t.pos_embed_mode,
                      modality_embedding=self.use_modality_embedding, class_embed_dim=self.class_embed_dim,
                      drop_path_rate=t.drop_path_rate, norm_epsilon=t.norm_epsilon, seed=t.seed)
        return config
