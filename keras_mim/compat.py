"""The private Keras APIs keras_mim relies on, all in this one module.

Each entry reaches past the public API because no public API does the job; its comment
says what the private name is, why nothing public replaces it, and the versions it was
checked on. `tests/test_compat.py` tests every assumption made here (one test per entry),
so a release that changes one fails there instead of silently changing results, and
`pyproject.toml` bounds `keras` to the minor version those tests ran on. No other module
of keras_mim imports `keras.src` or uses a private method of a Keras or argparse class
(`tests/test_compat.py` checks that too).
"""

import keras
from keras.src.layers.preprocessing.data_layer import DataLayer as _KerasDataLayer
from keras.src.layers.preprocessing.image_preprocessing.base_image_preprocessing_layer import (
    BaseImagePreprocessingLayer,
)
from keras.src.utils.backend_utils import DynamicBackend

#: Keras releases every entry was checked on (the range `pyproject.toml` allows).
CHECKED_KERAS_VERSIONS = ("3.15.0", "3.15.1")


def backend_ops(name):
    """The ops of the Keras backend `name` ("tensorflow", "jax", "torch"), whichever backend
    Keras runs: a namespace with `numpy`, `random`, `cast`, `shape`, `convert_to_tensor`
    taking the arguments of `keras.ops` / `keras.random` (e.g. TensorFlow ops for a
    `tf.data` map under JAX).

    Private: `keras.src.utils.backend_utils.DynamicBackend`, the namespace Keras' own
    preprocessing layers run on inside `tf.data` (`layer.backend`). `keras.ops` always runs
    the global backend, so nothing public gives TensorFlow ops under JAX or torch.
    Checked on Keras 3.15.0 and 3.15.1.
    """
    return DynamicBackend(name)


class ImagePreprocessingLayer(BaseImagePreprocessingLayer):
    """Base of an image augmentation layer that runs as Keras' own do: inside `tf.data` with
    TensorFlow ops on every backend, and inside a model with the backend's ops.

    The base takes one image `(H, W, C)`, a batch, or a dict with "images" (and "labels",
    "segmentation_masks"), and calls the subclass' `get_random_transformation(data,
    training, seed)` once, then `transform_images(images, transformation, training)` on
    batched images (`transform_labels`, `transform_segmentation_masks` likewise). The
    subclass computes with `self.backend` (the ops of the backend it runs in; TensorFlow
    inside `tf.data`) and draws random numbers with `self.seed_generator()`.

    Private (Keras 3.15.0 and 3.15.1):

    - `keras.src...BaseImagePreprocessingLayer`, the base of `keras.layers.RandomCrop`,
      `RandAugment` and the other augmentation layers: Keras exports no base class that
      switches to TensorFlow ops inside `tf.data`.
    - `_USE_BASE_FACTOR = False`: the layer has no `factor` argument (Keras' augmentation
      strength); passing one is a ValueError.
    - `_get_seed_generator(backend_name)`: the layer's `seed` / `generator` as a seed
      generator of the backend the layer runs in (a TensorFlow one inside `tf.data` under
      JAX or torch, where the layer's own `SeedGenerator` lives in the other backend).
    """

    _USE_BASE_FACTOR = False

    def seed_generator(self):
        """The seed generator to draw from in the backend the layer runs in now."""
        return self._get_seed_generator(self.backend.name)


class DataLayer(_KerasDataLayer):
    """Base of a (non-image) preprocessing layer that runs as Keras' own do: inside `tf.data`
    with TensorFlow ops on every backend, inside a model with the backend's ops. The
    subclass computes with `self.backend` (`numpy`, `cast`, `shape`, ... of the backend
    it runs in) and may call Keras' own data layers (`keras.layers.MelSpectrogram`).

    Private: `keras.src.layers.preprocessing.data_layer.DataLayer`, the base of
    `keras.layers.MelSpectrogram` and the other data layers: Keras exports no base class that switches to TensorFlow ops inside `tf.data`. Checked on
    Keras 3.15.0 and 3.15.1.
    """


class Equalization(keras.layers.Equalization):
    """`keras.layers.Equalization` whose per-channel histogram is an overridable method,
    `histogram(values, value_range, nbins)` (int counts of `nbins` equal-width bins).

    Private: `Equalization._custom_histogram_fixed_width`, where Keras counts it. Keras picks
    its implementation by the global backend, not by the backend the layer runs in, so
    inside `tf.data` under JAX it builds a loop over the 256 bins per channel (tens of
    seconds to trace for RGB); no public argument changes it. Checked on Keras 3.15.0 and
    3.15.1.
    """

    def histogram(self, values, value_range, nbins):
        """Keras' own histogram; override to count it another way."""
        return super()._custom_histogram_fixed_width(values, value_range, nbins)

    def _custom_histogram_fixed_width(self, values, value_range, nbins):
        return self.histogram(values, value_range, nbins)


def replace_rand_augment_op(layer, name, op):
    """Replace the op `name` (e.g. "equalization") of the `keras.layers.RandAugment` `layer`.

    Private: `RandAugment._AUGMENT_LAYERS`, the names of the attributes holding its ops,
    which it looks up by name at every call; RandAugment takes no ops argument. Checked on
    Keras 3.15.0 and 3.15.1.
    """
    if name not in layer._AUGMENT_LAYERS:
        raise ValueError(f"`name` must be one of RandAugment's ops {layer._AUGMENT_LAYERS}, got {name!r}.")
    setattr(layer, name, op)


class OptimizerUpdateHooks:
    """Mix in before a Keras optimizer class to override two steps of `optimizer.apply`
    under public names (call `super()` to run the optimizer's own):

    - `update_variables(grads, variables, learning_rate)`: the optimizer's
      backend-specific update of `variables` with `learning_rate` (the current rate,
      `optimizer.learning_rate`); called once per update by `apply`, after loss-scale
      handling, gradient accumulation and clipping.
    - `decay_variables(variables)`: the decoupled weight decay of `variables` (a no-op
      when `weight_decay` is None), run just before `update_variables`.

    `keras_uses_weight_decay(variable)` tells whether Keras' own rule (no
    `exclude_from_weight_decay` match) decays `variable`.

    Private (Keras 3.15.0 and 3.15.1): `_backend_update_step`, `_apply_weight_decay` and
    `_use_weight_decay` of `keras.optimizers.Optimizer`. The public `update_step(gradient,
    variable, learning_rate)` is not called by every backend (torch's Adam and AdamW update
    all variables at once), the public `learning_rate` is one for all variables, and the
    exclusions set by `exclude_from_weight_decay` cannot be read back publicly.
    """

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        self.update_variables(grads, trainable_variables, learning_rate)

    def update_variables(self, grads, variables, learning_rate):
        """The optimizer's own update of `variables` with `learning_rate`."""
        super()._backend_update_step(grads, variables, learning_rate)

    def _apply_weight_decay(self, variables):
        self.decay_variables(variables)

    def decay_variables(self, variables):
        """The optimizer's own decoupled weight decay of `variables`."""
        super()._apply_weight_decay(variables)

    def keras_uses_weight_decay(self, variable):
        """Whether Keras' rule (`exclude_from_weight_decay`) keeps weight decay on `variable`."""
        return super()._use_weight_decay(variable)
