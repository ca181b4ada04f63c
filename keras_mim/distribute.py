"""Training on several devices: data parallel (JAX, TensorFlow) and model parallel (JAX).

One entry point, `distribution_scope(kind)`, returns the context the model must be
built, compiled and fitted in:

- `"none"`: nothing changes (one device, as without this module).
- `"data"`: data parallel over all visible accelerators (GPUs or TPU cores; the CPU
  when there are none). The global batch (`fit`'s `batch_size`) is split evenly over
  the devices and the gradients are averaged, so a run trains the same model as on one
  device. JAX: `keras.distribution.DataParallel`; TensorFlow:
  `tf.distribute.MirroredStrategy`. PyTorch: Keras 3 has no distribution support for
  the torch backend (`keras.distribution` is JAX-only, the TensorFlow backend's trainer
  follows `tf.distribute`), so this raises a `ValueError`.
- `"model"` (JAX only): `keras.distribution.ModelParallel` on a `("batch", "model")`
  device mesh, with the transformer kernels split along `"model"` by
  `transformer_layout_map` — for presets too big for one device (ViT-L, ViT-H).

Random masks on several replicas. Under JAX the train step is one SPMD program over the
global batch: masks are drawn for the whole batch at once, exactly as on one device.
Under `MirroredStrategy` every replica runs the step on its own slice of the batch and
reads its own copy of each `keras.random.SeedGenerator` state; those copies start
equal, so every replica would draw the same masks (and the same dropout / drop-path
noise) for its slice. Inside `distribution_scope("data")` on TensorFlow each seed
state created gets a distinct value on every replica but the first (see
`distinct_replica_seeds`, which does the same for a model built under a strategy of
your own).

Losses on several replicas. Under `tf.distribute` each replica's loss is divided by the
number of replicas before the gradients are summed (`scale_loss`); keras_mim's models
return `scale_loss(loss)` from `compute_loss`, as Keras' own losses do.

This is the one module outside `keras_mim.data` that imports a backend, lazily and
only for the backend that runs.
"""

import contextlib

import keras

KINDS = ("none", "data", "model")
SUPPORTED = {"data": ("jax", "tensorflow"), "model": ("jax",)}
MODEL_AXIS = "model"
BATCH_AXIS = "batch"
# Added (times the replica index) to the first word of a seed state on every replica
# but the first: a large odd constant, so replicas never share a stream with each
# other nor, in practice, with a generator seeded a few units away.
REPLICA_SEED_STRIDE = 0x9E3779B1
SEED_STATE_NAME = "seed_generator_state"  # the variable name keras.random.SeedGenerator uses


def check_kind(kind, backend=None, name="kind"):
    """Check that `kind` is one of `KINDS` and that `backend` (default: the running
    one) supports it; returns `kind`.

    Args:
        kind: `"none"`, `"data"` or `"model"`.
        backend: a Keras backend name; default `keras.backend.backend()`.
        name: how error messages name the argument (e.g. `"--distribute"`).

    Raises:
        ValueError: naming the value and what is supported.

    Example:
    >>> check_kind("none")
    'none'
    """
    if kind not in KINDS:
        raise ValueError(f"`{name}` must be one of {KINDS}, got {kind!r}.")
    backend = backend or keras.backend.backend()
    if kind != "none" and backend not in SUPPORTED[kind]:
        what = "data-parallel" if kind == "data" else "model-parallel"
        hint = (
            "Keras 3 has no distribution support for the torch backend (keras.distribution covers "
            "JAX; on TensorFlow keras_mim uses tf.distribute.MirroredStrategy)"
            if backend == "torch"
            else f"Keras supports it only on {' and '.join(SUPPORTED[kind])}"
        )
        raise ValueError(
            f"{what} training (`{name}`={kind!r}) is not supported on the {backend!r} backend: {hint}. "
            f"Use the {' or '.join(SUPPORTED[kind])} backend (KERAS_BACKEND), or `{name}`='none'."
        )
    return kind


def list_devices(backend=None):
    """The devices a `"data"` run spreads over: all GPUs (TPU cores on JAX), else the
    CPU devices (one, unless simulated ones were configured).

    Args:
        backend: a Keras backend name; default the running one. It must support data
            parallelism (JAX, TensorFlow).

    Returns:
        list of device names as the backend writes them (JAX `"gpu:0"`, TensorFlow
        `"/device:GPU:0"`).

    Example:
    >>> import keras
    >>> if keras.backend.backend() != "torch":
    ...     assert len(list_devices()) >= 1
    """
    backend = backend or keras.backend.backend()
    check_kind("data", backend)
    if backend == "jax":
        return list(keras.distribution.list_devices())
    import tensorflow as tf

    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    return [d.name for d in devices]


def check_global_batch(batch_size, num_devices, name="batch_size"):
    """Raise unless the global batch splits evenly over `num_devices`.

    Args:
        batch_size: the global batch (what `fit` gets as `batch_size`).
        num_devices: number of data-parallel replicas.
        name: how the error message names the batch size (e.g. `"--batch-size"`).

    Returns:
        the per-device batch, `batch_size // num_devices`.

    Example:
    >>> check_global_batch(32, 4)
    8
    """
    if not isinstance(num_devices, int) or num_devices < 1:
        raise ValueError(f"`num_devices` must be a positive int, got {num_devices!r}.")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"`{name}` must be a positive int, got {batch_size!r}.")
    if batch_size % num_devices:
        raise ValueError(
            f"`{name}`={batch_size} must be divisible by the number of devices, {num_devices}, so that "
            f"every device gets the same share of the batch; use e.g. "
            f"{num_devices * max(1, round(batch_size / num_devices))}."
        )
    return batch_size // num_devices


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

    Example:
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

    Example:
    >>> import keras
    >>> if keras.backend.backend() == "jax":
    ...     dist = model_parallel(1)
    ...     assert tuple(dist.device_mesh.axis_names) == ("batch", "model")
    """
    check_kind("model")
    devices = list(devices) if devices is not None else list_devices()
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


def scale_loss(loss):
    """A model's total loss as `compute_loss` must return it under data parallelism.

    Under TensorFlow's `tf.distribute` every replica computes the loss of its own slice
    and the gradients are summed over replicas, so each replica's loss is divided by
    the number of replicas (as Keras' own `Loss` objects do); `fit` multiplies it back
    for the logs. With the per-replica mean losses of keras_mim (every sample hides the
    same number of tokens) the update then equals a one-device step on the global
    batch. Elsewhere (one replica, JAX's single SPMD program, torch) `loss` is
    returned unchanged.

    Args:
        loss: scalar float loss tensor of this replica.

    Returns:
        the loss to return from `compute_loss`.

    Example:
    >>> float(scale_loss(keras.ops.convert_to_tensor(2.0)))  # one replica
    2.0
    """
    if keras.backend.backend() != "tensorflow":
        return loss
    import tensorflow as tf

    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return loss if replicas == 1 else loss * (1.0 / replicas)


def _fold_replica(value, replica):
    """Seed state `[a, b]` of replica `replica` (0 keeps its own)."""
    return [(int(value[0]) + replica * REPLICA_SEED_STRIDE) % (2**62), int(value[1])]


def _split_mirrored(variable):
    """Give replica i > 0 of a mirrored seed state its own value; False if `variable`
    holds no per-replica copies."""
    copies = getattr(variable, "values", None)
    if not isinstance(copies, (tuple, list)) or len(copies) < 2:
        return False
    first = copies[0].numpy()
    for replica, copy in enumerate(copies[1:], start=1):
        copy.assign(_fold_replica(first, replica))
    return True


def distinct_replica_seeds(model):
    """Give every replica its own random stream (TensorFlow `MirroredStrategy`).

    Each `keras.random.SeedGenerator` state of `model` keeps its value on the first
    replica, so replica 0 draws what a one-device run would draw for its slice, and
    gets `state[0] + i * REPLICA_SEED_STRIDE` on replica i. `distribution_scope("data")`
    does this for every model created inside it (seed states are not part of saved
    weights, so loading does not undo it); call it for a model built under a
    `tf.distribute.MirroredStrategy` scope of your own. Calling it again changes
    nothing. Without per-replica copies (one device, JAX, torch) it does nothing.

    Args:
        model: a built Keras model (or layer).

    Returns:
        the number of seed states given per-replica values.

    Example:
    >>> import keras_mim
    >>> distinct_replica_seeds(keras_mim.RandomMaskGenerator(0.75, seed=0))  # one device
    0
    """
    count = 0
    for variable in model.variables:
        if variable.name == SEED_STATE_NAME and _split_mirrored(getattr(variable, "value", variable)):
            count += 1
    return count


@contextlib.contextmanager
def _tf_data_parallel(devices):
    import tensorflow as tf

    strategy = tf.distribute.MirroredStrategy(devices=list(devices))

    def creator(next_creator, **kwargs):
        variable = next_creator(**kwargs)
        name = kwargs.get("name") or ""
        if name.split("/")[-1].split(":")[0] == SEED_STATE_NAME:
            _split_mirrored(variable)
        return variable

    with strategy.scope(), tf.variable_creator_scope(creator):
        yield strategy


@contextlib.contextmanager
def distribution_scope(kind="data", devices=None, model_parallel_size=None):
    """The context a model is built, compiled and fitted in to train on several devices.

    Build the model, `compile` it and call `fit` (and `evaluate`, `save`) inside the
    scope; `fit`'s `batch_size` is the global batch, split evenly over the devices.

    Args:
        kind: `"none"` (no-op), `"data"` (data parallel: JAX `DataParallel`,
            TensorFlow `MirroredStrategy`) or `"model"` (JAX `ModelParallel` with
            `transformer_layout_map`).
        devices: devices to use, as the backend names them; default all GPUs / TPU
            cores, else the CPU devices (`list_devices`).
        model_parallel_size: for `"model"`: devices per model replica (default: all).

    Yields:
        None for `"none"`, the `keras.distribution.Distribution` on JAX, the
        `tf.distribute.Strategy` on TensorFlow.

    Raises:
        ValueError: on an unknown `kind` or one the running backend does not support
            (any `"data"`/`"model"` on torch), before anything is built.

    Example:
    >>> import keras_mim
    >>> with distribution_scope("none"):  # "data" on a multi-GPU/TPU host
    ...     model = keras_mim.MaskedAutoencoder.from_preset("mae_vit_test", seed=0)
    ...     model.compile(optimizer="adamw")
    """
    check_kind(kind)
    if kind == "none":
        yield None
        return
    backend = keras.backend.backend()
    devices = list(devices) if devices is not None else list_devices()
    if not devices:
        raise ValueError(f"`devices` must name at least one device, got {devices!r}.")
    if kind == "model":
        dist = model_parallel(model_parallel_size or len(devices), devices=devices)
        with dist.scope():
            yield dist
    elif backend == "jax":
        dist = keras.distribution.DataParallel(devices=devices)
        with dist.scope():
            yield dist
    else:
        with _tf_data_parallel(devices) as strategy:
            yield strategy


def data_parallel(devices=None):
    """`distribution_scope("data", devices)`: data parallel over all (or the given) devices.

    Args:
        devices: devices to use; default all GPUs / TPU cores, else the CPU devices.

    Returns:
        a context manager; see `distribution_scope`.

    Example:
    >>> import keras
    >>> if keras.backend.backend() != "torch":
    ...     with data_parallel():
    ...         pass
    """
    return distribution_scope("data", devices=devices)


def num_replicas(kind="data", devices=None, model_parallel_size=None):
    """How many slices `fit`'s global batch is split into under `distribution_scope(kind)`.

    Args:
        kind: as in `distribution_scope` (1 for `"none"`).
        devices: as in `distribution_scope`.
        model_parallel_size: as in `distribution_scope` (`"model"` only).

    Returns:
        int: the device count for `"data"`, devices / `model_parallel_size` for `"model"`.

    Example:
    >>> num_replicas("none")
    1
    """
    check_kind(kind)
    if kind == "none":
        return 1
    count = len(devices) if devices is not None else len(list_devices())
    return count if kind == "data" else count // (model_parallel_size or count)
