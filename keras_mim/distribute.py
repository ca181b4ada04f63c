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
only for the backend that runs. Its backend-free parts live beside it and are
importable from here: the kinds and argument checks in `keras_mim.distribution_checks`,
the model-parallel mesh and layout map in `keras_mim.model_parallel`.
"""

import contextlib

import keras

from keras_mim.distribution_checks import KINDS, SUPPORTED, check_global_batch, check_kind  # noqa: F401
from keras_mim.model_parallel import BATCH_AXIS, MODEL_AXIS, model_parallel, transformer_layout_map  # noqa: F401

# Added (times the replica index) to the first word of a seed state on every replica
# but the first: a large odd constant, so replicas never share a stream with each
# other nor, in practice, with a generator seeded a few units away.
REPLICA_SEED_STRIDE = 0x9E3779B1
SEED_STATE_NAME = "seed_generator_state"  # the variable name keras.random.SeedGenerator uses


def list_devices(backend=None):
    """The devices a `"data"` run spreads over: all GPUs (TPU cores on JAX), else the
    CPU devices (one, unless simulated ones were configured).

    Args:
        backend: a Keras backend name; default the running one. It must support data
            parallelism (JAX, TensorFlow).

    Returns:
        list of device names as the backend writes them (JAX `"gpu:0"`, TensorFlow
        `"/device:GPU:0"`).

    Examples:
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

    Examples:
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

    Examples:
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

    Examples:
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

    Examples:
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

    Examples:
        >>> num_replicas("none")
        1
    """
    check_kind(kind)
    if kind == "none":
        return 1
    count = len(devices) if devices is not None else len(list_devices())
    return count if kind == "data" else count // (model_parallel_size or count)
