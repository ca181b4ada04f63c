"""ViT encoders to and from keras-hub backbones (`ViTBackbone`, `DINOV2Backbone`).

keras-hub is an optional extra (`pip install "keras-mim[keras-hub]"`); it is imported only
when a function here is called. The weights are copied tensor by tensor (numpy), so the
converted model computes the same function on every backend.

What differs between the architectures, and what is refused:

- Positions: keras_mim's default table is MAE's fixed 2D sin-cos (zeros in the cls slot);
  keras-hub's `ViTBackbone` learns a table (`Embedding`) that includes the cls slot. Out, the
  table's values are copied into the learned one (identical outputs at the encoder's image
  size; keras-hub's table then trains, and keras-hub does not resize it for other sizes). In,
  the encoder gets `pos_embed="learned"`.
- DINOv2 keeps a 518 px table and interpolates it (bicubic) to the backbone's `image_shape`;
  the encoder takes the interpolated table at that size as its learned table.
- Image shape: `DINOV2Backbone` is square only; `ViTBackbone` and keras_mim take H != W.
- LayerScale: DINOv2 has it (kept as the encoder's `layer_scale`); `ViTBackbone` has none, so an
  encoder with LayerScale is refused out.
- Registers (DINOv2 with registers) and SwiGLU MLPs (DINOv2-giant) have no keras_mim
  counterpart: refused in, naming the part.
- Biases: keras-hub's `use_mha_bias` switches the qkv and the output projection biases together;
  keras_mim's `qkv_bias` only the qkv ones. An encoder with `qkv_bias=False` is refused out; in,
  missing biases (`use_mha_bias`, `use_mlp_bias`, `use_patch_bias` False) become zero biases
  (identical outputs; they then train).
- Video encoders (`num_frames`) have no keras-hub ViT: refused out.
- The mask token (keras_mim's mask-token mode, DINOv2's `masks=`) replaces hidden patch
  embeddings before positions are added in both; DINOv2's comes in with the encoder.
"""

import keras
import numpy as np

LAYOUT_NOTE = "see keras_mim/models/keras_hub_vit.py for what maps"


def import_keras_hub():
    """`keras_hub`, or an ImportError that says how to install it."""
    try:
        import keras_hub
    except ImportError as err:
        raise ImportError(
            "keras-hub is not installed; `pip install \"keras-mim[keras-hub]\"` (or `pip install "
            "keras-hub`) to convert encoders to and from keras-hub backbones."
        ) from err
    return keras_hub


def _np(variable):
    return np.asarray(keras.ops.convert_to_numpy(variable))


def _assign(variable, value, what):
    value = np.asarray(value, dtype="float32")
    if tuple(variable.shape) != value.shape:
        raise ValueError(f"{what}: expected shape {tuple(variable.shape)}, got {value.shape} ({LAYOUT_NOTE}).")
    variable.assign(value.astype(variable.dtype))


def _split_qkv(attn):
    """keras_mim attention -> (q, k, v) kernels `(D, H, hd)`, biases `(H, hd)`, output kernel
    `(H, hd, D)` and bias `(D,)`."""
    heads, dim = attn.num_heads, attn.qkv.kernel.shape[0]
    hd = dim // heads
    kernel = _np(attn.qkv.kernel).reshape(dim, 3, heads, hd)
    bias = _np(attn.qkv.bias).reshape(3, heads, hd) if attn.qkv_bias else np.zeros((3, heads, hd))
    out = _np(attn.proj.kernel).reshape(heads, hd, dim)
    return [kernel[:, i] for i in range(3)], [bias[i] for i in range(3)], out, _np(attn.proj.bias)


def _join_qkv(attn, mha, what):
    """keras `MultiHeadAttention` weights -> keras_mim attention (fused qkv)."""
    dense = (mha.query_dense, mha.key_dense, mha.value_dense)
    kernels = [_np(d.kernel) for d in dense]  # (D, H, hd)
    dim = kernels[0].shape[0]
    _assign(attn.qkv.kernel, np.stack(kernels, axis=1).reshape(dim, 3 * dim), f"{what} qkv kernel")
    if attn.qkv_bias:
        _assign(attn.qkv.bias, np.stack([_np(d.bias) for d in dense]).reshape(3 * dim), f"{what} qkv bias")
    _assign(attn.proj.kernel, _np(mha.output_dense.kernel).reshape(dim, dim), f"{what} output kernel")
    bias = _np(mha.output_dense.bias) if mha.output_dense.bias is not None else np.zeros(dim)
    _assign(attn.proj.bias, bias, f"{what} output bias")


def _copy_norm(target, source, what):
    _assign(target.gamma, _np(source.gamma), f"{what} scale")
    _assign(target.beta, _np(source.beta), f"{what} offset")


def _copy_dense(target, source, what):
    _assign(target.kernel, _np(source.kernel), f"{what} kernel")
    bias = _np(source.bias) if source.bias is not None else np.zeros(target.kernel.shape[-1])
    _assign(target.bias, bias, f"{what} bias")


def check_exportable(encoder):
    """Raise a ValueError naming the part of `encoder` a keras-hub `ViTBackbone` lacks."""
    # the ViTEncoder layout, by its parts (this module is imported by ViTEncoder's methods)
    if not all(hasattr(encoder, part) for part in ("patch_embed", "pos_embed", "blocks", "norm", "num_frames")):
        raise TypeError(
            f"`encoder` must be a keras_mim ViTEncoder (e.g. `model.encoder` of a pretrained model), "
            f"got {type(encoder).__name__}; keras-hub has no backbone for the others here."
        )
    refused = []
    if encoder.num_frames is not None:
        refused.append(f"video tokens (`num_frames`={encoder.num_frames}): keras-hub's ViT takes images only")
    if encoder.layer_scale is not None:
        refused.append(f"LayerScale (`layer_scale`={encoder.layer_scale}): ViTBackbone's blocks have none")
    if not encoder.qkv_bias:
        refused.append("`qkv_bias=False`: ViTBackbone's `use_mha_bias` removes the output projection's bias too")
    hidden = int(encoder.embed_dim * encoder.mlp_ratio)
    if refused:
        raise ValueError(f"This encoder cannot become a keras-hub ViTBackbone: {'; '.join(refused)}.")
    return hidden


def to_keras_hub(encoder):
    """A keras-hub `ViTBackbone` computing what `encoder` computes, with its weights.

    The backbone's output `(B, [1 +] N, D)` equals `encoder(images)` (cls token first);
    `keras_hub.models.ViTImageClassifier(backbone=..., num_classes=...)` and every keras-hub
    task fine-tune it, and `backbone.save_to_preset(dir)` stores it as a keras-hub preset.
    The fixed sin-cos table becomes ViTBackbone's learned table (same values). A mask token,
    if the encoder has one, is not part of a ViTBackbone and is left behind.

    Args:
        encoder: a `ViTEncoder` (images, no LayerScale, `qkv_bias=True`), or a model built
            around one (a pretraining model, a classifier): its `encoder` is converted.

    Returns:
        A built `keras_hub.models.ViTBackbone`.

    Examples:
        >>> import numpy as np
        >>> from keras_mim.models import ViTEncoder
        >>> enc = ViTEncoder(image_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2)
        >>> backbone = to_keras_hub(enc)  # doctest: +SKIP
        >>> x = np.random.rand(1, 16, 16, 3).astype("float32")
        >>> np.allclose(backbone(x), enc(x), atol=1e-5)  # doctest: +SKIP
        True
    """
    encoder = getattr(encoder, "encoder", encoder)  # a model built around an encoder
    hidden = check_exportable(encoder)
    keras_hub = import_keras_hub()
    dim = encoder.embed_dim
    backbone = keras_hub.models.ViTBackbone(
        image_shape=encoder.image_size + (encoder.num_channels,),
        patch_size=encoder.patch_size,
        num_layers=encoder.depth,
        num_heads=encoder.num_heads,
        hidden_dim=dim,
        mlp_dim=hidden,
        layer_norm_epsilon=encoder.norm_epsilon,
        use_class_token=encoder.use_cls_token,
        dtype=encoder.dtype_policy.name,
    )
    embed = backbone.get_layer("vit_patching_and_embedding")
    _copy_dense(embed.patch_embedding, encoder.patch_embed.proj, "patch embedding")
    positions = _np(encoder.pos_embed.pos_embed)[0]  # ([1 +] N, D); the cls row first
    _assign(embed.position_embedding.embeddings, positions, "position table")
    if encoder.use_cls_token:
        _assign(embed.class_token, _np(encoder.cls_token), "cls token")
    blocks = backbone.get_layer("vit_encoder")
    for i, (ours, theirs) in enumerate(zip(encoder.blocks, blocks.encoder_layers)):
        what = f"block {i}"
        _copy_norm(theirs.layer_norm_1, ours.norm1, f"{what} norm1")
        (q, k, v), (bq, bk, bv), out, bout = _split_qkv(ours.attn)
        mha = theirs.mha
        for dense, kernel, bias in ((mha.query_dense, q, bq), (mha.key_dense, k, bk), (mha.value_dense, v, bv)):
            _assign(dense.kernel, kernel, f"{what} attention kernel")
            _assign(dense.bias, bias, f"{what} attention bias")
        _assign(mha.output_dense.kernel, out, f"{what} output kernel")
        _assign(mha.output_dense.bias, bout, f"{what} output bias")
        _copy_norm(theirs.layer_norm_2, ours.norm2, f"{what} norm2")
        _copy_dense(theirs.mlp.dense_1, ours.mlp.fc1, f"{what} fc1")
        _copy_dense(theirs.mlp.dense_2, ours.mlp.fc2, f"{what} fc2")
    _copy_norm(blocks.layer_norm, encoder.norm, "final norm")
    return backbone


def _vit_backbone_args(backbone):
    """ViTEncoder arguments of a keras-hub `ViTBackbone`."""
    h_axis, w_axis, c_axis = (0, 1, 2) if backbone.data_format == "channels_last" else (1, 2, 0)
    shape = backbone.image_shape
    ratio = backbone.mlp_dim / backbone.hidden_dim
    if int(backbone.hidden_dim * ratio) != backbone.mlp_dim:
        raise ValueError(f"ViTBackbone `mlp_dim`={backbone.mlp_dim} is not a whole width ratio of "
                         f"`hidden_dim`={backbone.hidden_dim}.")
    return dict(
        image_size=(shape[h_axis], shape[w_axis]), patch_size=tuple(backbone.patch_size),
        num_channels=shape[c_axis], embed_dim=backbone.hidden_dim, depth=backbone.num_layers,
        num_heads=backbone.num_heads, mlp_ratio=ratio, qkv_bias=backbone.use_mha_bias,
        cls_token=backbone.use_class_token, pos_embed="learned", norm_epsilon=backbone.layer_norm_epsilon,
    )


def _dinov2_args(backbone):
    """ViTEncoder arguments of a keras-hub `DINOV2Backbone` (refusing registers and SwiGLU)."""
    refused = []
    if backbone.num_register_tokens:
        refused.append(f"register tokens (`num_register_tokens`={backbone.num_register_tokens})")
    if backbone.use_swiglu_ffn:
        refused.append("the SwiGLU MLP (`use_swiglu_ffn=True`)")
    if refused:
        raise ValueError(f"This DINOV2Backbone cannot become a ViTEncoder: keras_mim has no {' or '.join(refused)}.")
    shape = backbone.image_shape
    size = (shape[0], shape[1]) if backbone.embeddings.data_format == "channels_last" else (shape[1], shape[2])
    channels = shape[2] if backbone.embeddings.data_format == "channels_last" else shape[0]
    return dict(
        image_size=size, patch_size=backbone.patch_size, num_channels=channels, embed_dim=backbone.hidden_dim,
        depth=backbone.num_layers, num_heads=backbone.num_heads,
        mlp_ratio=backbone.intermediate_dim / backbone.hidden_dim, qkv_bias=True, cls_token=True,
        mask_token=backbone.use_mask_token, pos_embed="learned", layer_scale=backbone.layer_scale_init_value,
        norm_epsilon=1e-6,
    )


def _load_vit_backbone(encoder, backbone):
    embed = backbone.get_layer("vit_patching_and_embedding")
    _copy_dense(encoder.patch_embed.proj, embed.patch_embedding, "patch embedding")
    _assign(encoder.pos_embed.pos_embed, _np(embed.position_embedding.embeddings)[None], "position table")
    if encoder.use_cls_token:
        _assign(encoder.cls_token, _np(embed.class_token), "cls token")
    blocks = backbone.get_layer("vit_encoder")
    for i, (ours, theirs) in enumerate(zip(encoder.blocks, blocks.encoder_layers)):
        _copy_norm(ours.norm1, theirs.layer_norm_1, f"block {i} norm1")
        _join_qkv(ours.attn, theirs.mha, f"block {i}")
        _copy_norm(ours.norm2, theirs.layer_norm_2, f"block {i} norm2")
        _copy_dense(ours.mlp.fc1, theirs.mlp.dense_1, f"block {i} fc1")
        _copy_dense(ours.mlp.fc2, theirs.mlp.dense_2, f"block {i} fc2")
    _copy_norm(encoder.norm, blocks.layer_norm, "final norm")


def _load_dinov2_backbone(encoder, backbone):
    embed = backbone.embeddings
    _copy_dense(encoder.patch_embed.proj, embed.patch_embeddings.projection, "patch embedding")
    # the table interpolated to the backbone's image size, cls row first: (1, 1 + N, D)
    _assign(encoder.pos_embed.pos_embed, _np(embed.interpolated_position_embeddings), "position table")
    _assign(encoder.cls_token, _np(embed.cls_token), "cls token")
    if encoder.use_mask_token and backbone.use_mask_token:
        _assign(encoder.mask_token, _np(embed.mask_token)[None], "mask token")
    for i, (ours, theirs) in enumerate(zip(encoder.blocks, backbone.encoder.layers)):
        _copy_norm(ours.norm1, theirs.norm1, f"block {i} norm1")
        _join_qkv(ours.attn, theirs.attention.attention, f"block {i}")
        _assign(ours.ls1.gamma, _np(theirs.layer_scale1.lambda1), f"block {i} layer scale 1")
        _copy_norm(ours.norm2, theirs.norm2, f"block {i} norm2")
        _copy_dense(ours.mlp.fc1, theirs.mlp.fc1, f"block {i} fc1")
        _copy_dense(ours.mlp.fc2, theirs.mlp.fc2, f"block {i} fc2")
        _assign(ours.ls2.gamma, _np(theirs.layer_scale2.lambda1), f"block {i} layer scale 2")
    _copy_norm(encoder.norm, backbone.layernorm, "final norm")


def from_keras_hub(backbone, encoder_class, **overrides):
    """A `ViTEncoder` with the weights of a keras-hub `ViTBackbone` or `DINOV2Backbone`.

    The encoder computes the backbone's function (`encoder(images)` equals `backbone(images)`),
    and can be pretrained further with any keras_mim method (e.g. domain-adaptive MAE from a
    DINOv2 checkpoint). `encoder_class` is `ViTEncoder` or a subclass (`ViTEncoder.from_keras_hub`
    passes itself); `overrides` set encoder arguments the backbone does not fix
    (`mask_token=True` for mask-token methods, `drop_path_rate`, `seed`).
    """
    keras_hub = import_keras_hub()
    if isinstance(backbone, keras_hub.models.ViTBackbone):
        args, load = _vit_backbone_args(backbone), _load_vit_backbone
    elif isinstance(backbone, keras_hub.models.DINOV2Backbone):
        args, load = _dinov2_args(backbone), _load_dinov2_backbone
    else:
        raise TypeError(
            f"`backbone` must be a keras_hub.models.ViTBackbone or DINOV2Backbone, got "
            f"{type(backbone).__name__}."
        )
    fixed = set(args) - {"mask_token"}
    clash = sorted(fixed & set(overrides))
    if clash:
        raise TypeError(f"{clash} are fixed by the backbone's architecture; allowed overrides are encoder "
                        f"arguments it does not fix (mask_token, drop_path_rate, seed, name, dtype).")
    encoder = encoder_class(**{**args, **overrides})
    load(encoder, backbone)
    return encoder
