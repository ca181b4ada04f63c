import os
import tempfile
import zlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# The CLI runs the tests start in fresh processes keep their compiled steps here, not in the
# user's cache folder (keras_mim/cli/backend.py, `use_compile_cache`).
os.environ.setdefault("KERAS_MIM_COMPILE_CACHE", os.path.join(tempfile.gettempdir(), "keras_mim_test_compile_cache"))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


#: The backends of this CI run's passes, in order (`tools/test.sh` sets it). Unset (a plain
#: `pytest` call), every test runs.
CI_PASSES = os.environ.get("KERAS_MIM_TEST_PASSES", "").split()
#: Markers of the tests a CI run needs on one backend only (see `one_pass_backend`).
ONE_PASS_MARKERS = ("backend_independent", "one_backend")
#: Where a `one_backend` test runs unless its marker says `backend=`: PyTorch, whose eager ops
#: cost no compilation (a JAX or XLA pass compiles every new small shape and every train
#: step; measured: the CLI, property and docstring tests ran 2-8x faster on torch).
DEFAULT_ONE_PASS = "torch"


def one_pass_backend(item, passes=CI_PASSES):
    """The one pass of a CI run that runs `item`, or None if every pass runs it.

    `backend_independent` tests give the same result on every backend (source checks,
    argument parsing, notebooks and scripts that pick their own backend); `one_backend`
    tests are end to end (a CLI run, a learning study) whose per-backend parts the unit
    tests and the method suite check on every backend. Either runs in the pass named by
    its marker's `backend=` argument if this run has that pass (`backend="rotate"`, never a
    pass, falls to the stable hash below: it spreads a parametrized test's cases over the
    passes); else a `one_backend` test
    (it runs in the pytest process) in `DEFAULT_ONE_PASS`'s, and a `backend_independent`
    one (pure Python, or its own child processes) in one chosen by a stable hash of the
    test id, which spreads the notebooks and scripts over the passes. `every_backend` on a test
    overrides its module's `one_backend`."""
    marks = [m for name in ONE_PASS_MARKERS for m in item.iter_markers(name)]
    if not marks or not passes or item.get_closest_marker("every_backend"):
        return None
    default = DEFAULT_ONE_PASS if item.get_closest_marker("one_backend") else None
    pinned = next((m.kwargs["backend"] for m in marks if "backend" in m.kwargs), default)
    if pinned in passes:
        return pinned
    return passes[zlib.crc32(item.nodeid.encode()) % len(passes)]


def pytest_configure(config):
    """JAX: a persistent compilation cache shared by the xdist workers (and by the passes
    of a `tools/test.sh` run), so the many tests that compile the same test-preset train
    step or the same small op compile it once: a tiny MAE's first `fit` step measured
    7.7 s cold, 1.8 s from the cache. JAX keys each entry by the program, the flags and
    its own version, so a hit is the same executable. A cache the user set is kept."""
    if keras.backend.backend() != "jax":
        return
    import jax

    if jax.config.jax_compilation_cache_dir:
        return
    shared = os.environ.get("KERAS_MIM_TEST_SHARED")
    folder = os.path.join(shared, "jax_cache") if shared else os.path.join(
        tempfile.gettempdir(), f"keras_mim_test_jax_cache_{os.getuid()}")
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def pytest_collection_modifyitems(config, items):
    backend = keras.backend.backend()
    keep, drop = [], []
    for item in items:
        target = one_pass_backend(item)
        (drop if target not in (None, backend) else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
    # The `slow` tests first (stable otherwise): pytest-xdist hands tests out in this order, so
    # the longest ones start while both workers still have short ones to even out the end,
    # instead of one long test running alone at the end of a pass.
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)
    yield


def to_numpy(x):
    return keras.ops.convert_to_numpy(keras.ops.stop_gradient(x))


def expected_visible(num_tokens, ratio):
    """Visible tokens for a hidden `ratio` of `num_tokens`, in exact decimal arithmetic (the
    ratio as written, `Fraction(str(ratio))`): 0.9 of 20 leaves 2, where float arithmetic
    gives 1.9999999999999996."""
    from fractions import Fraction

    return int(num_tokens * (1 - Fraction(str(ratio))))


def inference_outputs(model, x):
    """`model(x, training=False)`; on JAX through `model.predict_on_batch`, one jitted program:
    eager JAX compiles each op for every new shape, a whole small model's forward pass 3-7x
    slower than compiling it once (measured on the method suite's test presets: hiera_mae
    9.6 s vs 1.4 s, pointmae 6.1 s vs 1.3 s). The outputs are the same computation."""
    if keras.backend.backend() == "jax":
        return model.predict_on_batch(x)
    return model(x, training=False)


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
