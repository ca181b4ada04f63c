"""keras_mim.compat: one test per private Keras API it relies on, each checking
the behaviour keras_mim assumes (against numpy, not against keras_mim's own results), so
a release that changes one fails here; and no other module of keras_mim uses one."""

import ast
import importlib
import inspect
import pathlib
import pkgutil
import re
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_mim
from keras_mim import compat
from tests.conftest import to_numpy

PACKAGE = pathlib.Path(keras_mim.__file__).parent
# The ops of `backend_ops` / `layer.backend` that keras_mim's box and resize code calls.
NUMPY_OPS = ("abs", "any", "arange", "argmax", "clip", "einsum", "equal", "exp", "expand_dims", "floor", "full",
             "logical_and", "maximum", "minimum", "round", "sqrt", "squeeze", "sum", "take_along_axis", "where",
             "zeros")


def test_backend_ops_are_tensorflow_ops_on_every_backend():
    ops = compat.backend_ops("tensorflow")
    assert ops.name == "tensorflow"
    assert [n for n in NUMPY_OPS if not callable(getattr(ops.numpy, n, None))] == []
    x = ops.convert_to_tensor(np.array([[0.5, 1.5, 2.5, -2.5]]), "float32")
    assert isinstance(x, tf.Tensor) and x.dtype == tf.float32
    rounded = ops.numpy.round(x)  # the box rule needs numpy's half-to-even rounding
    assert isinstance(rounded, tf.Tensor)
    np.testing.assert_array_equal(rounded.numpy(), [[0.0, 2.0, 2.0, -2.0]])
    assert tuple(ops.shape(x)) == (1, 4) and ops.cast(x, "int32").dtype == tf.int32
    picked = ops.numpy.take_along_axis(x, ops.convert_to_tensor([[2]]), axis=-1)
    np.testing.assert_array_equal(picked.numpy(), [[2.5]])
    draws = ops.random.uniform((2000,), 2.0, 3.0, seed=1)
    assert isinstance(draws, tf.Tensor) and 2.0 <= float(tf.reduce_min(draws)) < float(tf.reduce_max(draws)) < 3.0


class ProbeLayer(compat.ImagePreprocessingLayer):
    """Adds one uniform draw per image; records the backend and arguments of each hook."""

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.generator = keras.random.SeedGenerator(seed)

    def get_random_transformation(self, data, training=True, seed=None):
        CALLS.append(("draw", self.backend.name, training))
        images = data["images"] if isinstance(data, dict) else data
        shape = self.backend.shape(images)
        batch = shape[0] if len(shape) == 4 else 1
        return self.backend.random.uniform((batch,), seed=seed if seed is not None else self.seed_generator())

    def transform_images(self, images, transformation, training=True):
        CALLS.append(("images", self.backend.name, len(images.shape)))
        return images + self.backend.cast(transformation, images.dtype)[:, None, None, None]

    def transform_labels(self, labels, transformation, training=True):
        CALLS.append(("labels", self.backend.name, training))
        return labels

    def transform_segmentation_masks(self, segmentation_masks, transformation, training=True):
        CALLS.append(("masks", self.backend.name, training))
        return segmentation_masks

    def compute_output_shape(self, input_shape):
        return input_shape


CALLS = []


def test_image_preprocessing_layer_runs_tensorflow_ops_inside_tf_data():
    CALLS.clear()
    with pytest.raises(ValueError, match="factor"):
        ProbeLayer(factor=0.5)  # `_USE_BASE_FACTOR = False`
    images = np.zeros((3, 4, 4, 1), "float32")
    out = to_numpy(ProbeLayer(seed=3)(images))  # eager: the running backend's ops
    assert CALLS == [("draw", keras.backend.backend(), True), ("images", keras.backend.backend(), 4)]
    draws = out[:, 0, 0, 0]
    assert np.all(out == draws[:, None, None, None]) and len(set(draws)) == 3 and np.all((0 <= draws) & (draws < 1))
    CALLS.clear()
    layer = ProbeLayer(seed=3)
    single = to_numpy(layer(images[0], training=False))  # one image: the hooks get a batch of one
    assert single.shape == (4, 4, 1) and CALLS[0][2] is False and CALLS[1][2] == 4
    batches = []
    for _ in range(2):  # in tf.data: TensorFlow ops and a TensorFlow seed generator, repeatable
        CALLS.clear()
        dataset = tf.data.Dataset.from_tensor_slices(images).batch(3).map(ProbeLayer(seed=5))
        batches.append(next(iter(dataset)).numpy())
        assert {c[1] for c in CALLS} == {"tensorflow"}
    np.testing.assert_array_equal(batches[0], batches[1])
    assert len(set(batches[0][:, 0, 0, 0])) == 3
    assert layer.backend.name == keras.backend.backend()  # switched back after the tf.data call
    CALLS.clear()
    data = {"images": images, "labels": np.zeros((3, 2), "float32"), "segmentation_masks": images}
    layer(data)
    assert [c[0] for c in CALLS] == ["draw", "images", "labels", "masks"]


class DoubleLayer(compat.DataLayer):
    def call(self, x):
        CALLS.append(("double", self.backend.name))
        return self.backend.numpy.multiply(x, 2.0)


def test_data_layer_runs_tensorflow_ops_inside_tf_data():
    CALLS.clear()
    x = np.arange(6, dtype="float32").reshape(3, 2)
    np.testing.assert_array_equal(to_numpy(DoubleLayer()(x)), 2 * x)
    assert CALLS == [("double", keras.backend.backend())]
    CALLS.clear()
    out = next(iter(tf.data.Dataset.from_tensor_slices(x).batch(3).map(DoubleLayer()))).numpy()
    np.testing.assert_array_equal(out, 2 * x)
    assert {c[1] for c in CALLS} == {"tensorflow"}


class FlatEqualization(compat.Equalization):
    def histogram(self, values, value_range, nbins):  # a flat histogram: cheap, and seen
        CALLS.append(("histogram", tuple(float(v) for v in value_range), nbins))
        return self.backend.numpy.ones((nbins,), "int32")


def test_equalization_histogram_is_keras_own_and_overridable():
    values = np.random.default_rng(0).integers(0, 16, size=(6, 7)).astype("float32")
    counts = to_numpy(compat.Equalization(value_range=(0, 255)).histogram(values, (0, 15), 16))
    np.testing.assert_array_equal(counts, np.bincount(values.astype(int).ravel(), minlength=16))
    CALLS.clear()
    FlatEqualization(value_range=(0, 1))(np.random.default_rng(1).random((1, 6, 6, 2)).astype("float32"))
    assert CALLS == [("histogram", (0.0, 255.0), 256)] * 2  # Keras calls the hook once per channel


def test_rand_augment_calls_the_replaced_op():
    layer = keras.layers.RandAugment(value_range=(0, 1), num_ops=1, seed=0)
    with pytest.raises(ValueError, match="equalisation"):
        compat.replace_rand_augment_op(layer, "equalisation", FlatEqualization(value_range=(0, 1)))
    compat.replace_rand_augment_op(layer, "equalization", FlatEqualization(value_range=(0, 1)))
    CALLS.clear()
    images = tf.data.Dataset.from_tensors(np.random.default_rng(1).random((1, 6, 6, 1)).astype("float32"))
    next(iter(images.map(layer)))  # as keras_mim.data.rand_augment is used: inside tf.data
    assert ("histogram", (0.0, 255.0), 256) in CALLS


@pytest.mark.parametrize("base", ["SGD", "AdamW"])
def test_optimizer_hooks_scale_the_update_and_decay_as_keras(base):
    """What layer-wise lr decay relies on: the rate given to `update_variables` drives the
    update (here halved), Keras' decoupled decay runs first with the unscaled rate, and
    `exclude_from_weight_decay` is read back by `keras_uses_weight_decay`."""

    class HalfRate(compat.OptimizerUpdateHooks, getattr(keras.optimizers, base)):
        def update_variables(self, grads, variables, learning_rate):
            CALLS.append(("update", [v.path for v in variables]))
            super().update_variables(grads, variables, keras.ops.multiply(learning_rate, 0.5))

        def decay_variables(self, variables):
            CALLS.append(("decay", [v.path for v in variables]))
            super().decay_variables(variables)

    CALLS.clear()
    dense = keras.layers.Dense(3, name=f"hooks_{base.lower()}")
    dense.build((None, 2))
    kernel, bias = (to_numpy(v).astype("float64") for v in (dense.kernel, dense.bias))
    lr, wd = 0.1, 0.2
    opt = HalfRate(learning_rate=lr, weight_decay=wd)
    opt.exclude_from_weight_decay(var_list=[dense.bias])
    grads = [np.full((2, 3), 0.5, "float32"), np.array([1.0, -2.0, 3.0], "float32")]
    opt.apply(grads, dense.trainable_variables)
    paths = [dense.kernel.path, dense.bias.path]
    assert CALLS == [("decay", paths), ("update", paths)]
    assert opt.keras_uses_weight_decay(dense.kernel) and not opt.keras_uses_weight_decay(dense.bias)

    def step(g):  # the first update of SGD / Adam (Keras' epsilon on the uncorrected sqrt(v))
        if base == "SGD":
            return g
        b1, b2, eps = opt.beta_1, opt.beta_2, opt.epsilon
        return np.sqrt(1 - b2) / (1 - b1) * (1 - b1) * g / (np.sqrt((1 - b2) * g * g) + eps)

    expected_kernel = kernel * (1 - lr * wd) - 0.5 * lr * step(grads[0].astype("float64"))
    expected_bias = bias - 0.5 * lr * step(grads[1].astype("float64"))
    np.testing.assert_allclose(to_numpy(dense.kernel), expected_kernel, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(to_numpy(dense.bias), expected_bias, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------- nothing private outside compat.py
def _modules():
    for info in pkgutil.walk_packages(keras_mim.__path__, "keras_mim."):
        if not info.name.endswith("__main__"):
            yield importlib.import_module(info.name)


def _public_keras_classes(package=keras):
    """The classes of Keras' public namespaces (`keras`, `keras.layers`, ...; not `keras.src`)."""
    classes = {obj for obj in vars(package).values() if inspect.isclass(obj)}
    for info in pkgutil.iter_modules(package.__path__):
        if info.ispkg and info.name not in ("src", "_tf_keras"):
            classes |= _public_keras_classes(importlib.import_module(f"{package.__name__}.{info.name}"))
    return classes


def _self_attributes(cls):
    """Single-underscore names the class' own code reads or calls on `self`."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    return {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name) and node.value.id == "self"
            and re.fullmatch(r"_[A-Za-z]\w*", node.attr)}


def test_no_private_keras_or_argparse_api_outside_compat():
    forbidden = re.compile(r"keras\.src[\w.]*|super\(\)\._[A-Za-z]\w*|argparse\._\w+|\._actions\b|backend\._\w+")
    found = [f"{path.relative_to(PACKAGE)}: {m.group()}" for path in sorted(PACKAGE.rglob("*.py"))
             if path.name != "compat.py" for m in forbidden.finditer(path.read_text())]
    public = _public_keras_classes()
    for module in _modules():
        for cls in vars(module).values():
            if not inspect.isclass(cls) or cls.__module__ != module.__name__ or module is compat:
                continue
            foreign = [b for b in cls.__mro__ if b.__module__.split(".")[0] in ("keras", "argparse")]
            if not foreign:
                continue
            private_names = {name for b in foreign for name in vars(b) if re.fullmatch(r"_[A-Za-z]\w*", name)}
            for base in cls.__bases__:
                origin = base.__module__.split(".")[0]
                if (origin == "keras" and base not in public) or (origin == "argparse" and base.__name__[0] == "_"):
                    found.append(f"{cls.__qualname__}: private base class {base.__module__}.{base.__name__}")
            own = [k for k in cls.__mro__ if k.__module__.startswith("keras_mim.") and k.__module__ != compat.__name__]
            for klass in own:
                for name in (set(vars(klass)) | _self_attributes(klass)) & private_names:
                    found.append(f"{klass.__module__}.{klass.__qualname__}: {name} of a Keras/argparse class")
    assert not found, "private APIs outside keras_mim/compat.py:\n" + "\n".join(sorted(set(found)))
