import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)
    yield


def to_numpy(x):
    return keras.ops.convert_to_numpy(keras.ops.stop_gradient(x))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def backend_grads(fn, *arrays):
    """Gradients of scalar `fn(*arrays)` with respect to every argument, as numpy."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return [np.asarray(g) for g in jax.grad(fn, argnums=tuple(range(len(arrays))))(*arrays)]
    if backend == "tensorflow":
        import tensorflow as tf

        tensors = [tf.constant(a) for a in arrays]
        with tf.GradientTape() as tape:
            tape.watch(tensors)
            out = fn(*tensors)
        grads = tape.gradient(out, tensors)
    else:
        import torch

        tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
        grads = torch.autograd.grad(fn(*tensors), tensors, allow_unused=True)
    return [np.zeros(a.shape) if g is None else to_numpy(g) for g, a in zip(grads, arrays)]
