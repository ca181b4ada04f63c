"""Model parallelism (JAX): `keras.distribution.ModelParallel` over a `("batch", "model")`
device mesh, with the transformer kernels split along `"model"` by `transformer_layout_map`.

Backend-free (only `keras.distribution`): `keras_mim.distribute` re-exports every name, and
`distribute.distribution_scope("model")` is the usual way in.
"""

import keras

from keras_mim.distribution_checks import check_kind

MODEL_AXIS = "model"
BATCH_AXIS = "batch"


def transformer_layout_map(device_mesh, model_axis=MODEL_AXIS, shard_biases=True):
    """A `keras.distribution.LayoutMap` that splits every transformer block of a
    keras_mim model over the `model_axis` of `device_mesh` (Megatron-style).

    In every attention block (`attn`, `self_attn`, `cross_attn`) and MLP, the input
    projections (`qkv`, `q`, `kv`, `fc1`) are split by output column and the output
    projections (`proj`, `fc2`) by input row, so each device holds 1/M of the block
    weights (M = size of `model_axis`) and their optimizer slots. Everything else
    (patch embedding, norms, tokens, position embeddings, heads) stays replicated.
    Sharded widths (3*dim, mlp hidden, dim) must be divisible by M; they are for the
    ViT-B/L/H presets and M in 1, 2, 4, 8, 16. The paths match encoder blocks
    (`encoder/block_3/attn/qkv/kernel`), decoder blocks
    (`.../decoder_block_0/mlp/fc1/kernel`) and cross-attention blocks.

    Args:
        device_mesh: a `keras.distribution.DeviceMesh` with a `model_axis` axis (and
            usually a `"batch"` axis for the data-parallel part).
        model_axis: name of the mesh axis the kernels are split along.
        shard_biases: also split the biases of the column-split layers (they follow
            their kernel's output columns).

    Returns:
        a `LayoutMap`; give it to `keras.distribution.ModelParallel(layout_map=...)`.

    Examples:
        >>> import keras
        >>> mesh = keras.distribution.DeviceMesh((1, 1), ("batch", "model"), devices=["cpu:0"])
        >>> layout_map = transformer_layout_map(mesh)
        >>> layout_map["encoder/block_0/attn/qkv/kernel"].axes
        (None, 'model')
        >>> layout_map["encoder/block_0/mlp/fc2/kernel"].axes
        ('model', None)
        >>> layout_map["encoder/patch_embed/proj/kernel"] is None
        True
    """
    if not isinstance(device_mesh, keras.distribution.DeviceMesh):
        raise TypeError(f"`device_mesh` must be a keras.distribution.DeviceMesh, got {device_mesh!r}.")
    if model_axis not in device_mesh.axis_names:
        raise ValueError(
            f"`model_axis`={model_axis!r} is not an axis of `device_mesh` (axes {tuple(device_mesh.axis_names)})."
        )
    attn = r"(?:.*/)?(?:attn|self_attn|cross_attn)"
    layout_map = keras.distribution.LayoutMap(device_mesh)
    layout_map[attn + r"/(?:qkv|q|kv)/kernel"] = (None, model_axis)
    layout_map[attn + r"/proj/kernel"] = (model_axis, None)
    layout_map[r"(?:.*/)?mlp/fc1/kernel"] = (None, model_axis)
    layout_map[r"(?:.*/)?mlp/fc2/kernel"] = (model_axis, None)
    if shard_biases:
        layout_map[attn + r"/(?:qkv|q|kv)/bias"] = (model_axis,)
        layout_map[r"(?:.*/)?mlp/fc1/bias"] = (model_axis,)
    return layout_map


def model_parallel(model_parallel_size, devices=None, shard_biases=True):
    """A `keras.distribution.ModelParallel` (JAX) over a `("batch", "model")` mesh:
    `model_parallel_size` devices share each model replica (its transformer kernels
    split by `transformer_layout_map`), the rest replicate it and split the batch.

    Args:
        model_parallel_size: devices per model replica; must divide the device count.
        devices: devices to use (JAX names, e.g. `["gpu:0", "gpu:1"]`); default all.
        shard_biases: see `transformer_layout_map`.

    Returns:
        the distribution; use it as `with distribution.scope(): ...` (or through
        `distribution_scope("model", model_parallel_size=...)`).

    Examples:
        >>> import keras
        >>> if keras.backend.backend() == "jax":
        ...     dist = model_parallel(1)
        ...     assert tuple(dist.device_mesh.axis_names) == ("batch", "model")
    """
    check_kind("model")  # JAX, whose devices keras.distribution lists
    devices = list(devices) if devices is not None else list(keras.distribution.list_devices())
    if (
        not isinstance(model_parallel_size, int)
        or isinstance(model_parallel_size, bool)
        or model_parallel_size < 1
        or len(devices) % model_parallel_size
    ):
        raise ValueError(
            f"`model_parallel_size` must be a positive int dividing the number of devices "
            f"({len(devices)}), got {model_parallel_size!r}."
        )
    mesh = keras.distribution.DeviceMesh(
        (len(devices) // model_parallel_size, model_parallel_size), (BATCH_AXIS, MODEL_AXIS), devices=devices
    )
    return keras.distribution.ModelParallel(
        layout_map=transformer_layout_map(mesh, shard_biases=shard_biases), batch_dim_name=BATCH_AXIS
    )

