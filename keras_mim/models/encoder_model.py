"""What every model built around a keras_mim encoder shares: config round trips of its
sub-objects and input checks made before Keras traces a step."""

import keras

from keras_mim.models.preset_io import PresetMixin
from keras_mim.utils import copy_model  # noqa: F401  (its home was here; kept importable)


def deserialize_nested(value):
    """A config entry: serialized Keras objects (dicts with `class_name` and `config`)
    become objects again; anything else is returned as is."""
    if isinstance(value, dict) and "class_name" in value and "config" in value:
        return keras.saving.deserialize_keras_object(value)
    return value


class EncoderModel(PresetMixin, keras.Model):
    """Base class of the models built around `self.encoder` (pretraining models,
    classifiers, probes).

    `fit`, `evaluate` and `predict` check the images (rank, dtype, channels, size)
    against `self.encoder` before Keras traces a step: an error raised inside a traced
    step on JAX leaves the model's variables purged (Keras 3.15), losing the user's
    weights. Subclasses set `self.encoder` (an encoder keeping the protocol of
    `ViTEncoder`). `from_preset` / `save_to_preset` come from `PresetMixin`. `from_config` turns every serialized Keras object in the config
    (sub-models, layers, targets, mask generators) back into an object.
    """

    #: How size errors describe what the model does with its inputs.
    input_verb = "takes"

    def build_from_config(self, config):
        # Every shape is fixed by the config; the recorded input shape adds nothing.
        self.build()

    @classmethod
    def from_config(cls, config):
        return cls(**{key: deserialize_nested(value) for key, value in config.items()})

    # Subclassed Keras models are built by their first call; these models know every
    # shape from their config, so what needs the weights builds them first.
    def load_weights(self, filepath, *args, **kwargs):
        """`keras.Model.load_weights`, building the model first if needed."""
        if not self.built:
            self.build()
        return super().load_weights(filepath, *args, **kwargs)

    def count_params(self):
        """`keras.Model.count_params`, building the model first if needed."""
        if not self.built:
            self.build()
        return super().count_params()

    def summary(self, *args, **kwargs):
        """`keras.Model.summary`, building the model first if needed."""
        if not self.built:
            self.build()
        return super().summary(*args, **kwargs)

    @staticmethod
    def data_spec(x):
        """What `fit` will feed: a tf.data dataset's element spec, else `x`; of a
        `(inputs, labels)` pair, the inputs."""
        spec = getattr(x, "element_spec", x)
        if isinstance(spec, (tuple, list)) and spec:
            spec = spec[0]
        return spec

    def check_input_size(self, shape, name="x", what="inputs"):
        """Raise unless `shape[1:-1]` is the encoder's input size (`(H, W)`, `(T, H, W)` for clips)."""
        size = tuple(shape[1:-1])
        expected = tuple(self.encoder.input_size)
        if size != expected:
            clips = ", with `num_frames` first for clips" if what == "inputs" else ""
            raise ValueError(
                f"`{name}` has {what} of size {size} but this model {self.input_verb} {expected} "
                f"(`image_size`{clips}); resize or crop them, or build the model with that size."
            )

    def _check_data(self, x):
        spec = self.data_spec(x)
        if hasattr(spec, "shape") and hasattr(spec, "dtype"):
            self.encoder.check_images(spec, name="x")
            self.check_input_size(spec.shape)

    def fit(self, x=None, *args, **kwargs):
        self._check_data(x)
        return super().fit(x, *args, **kwargs)

    def evaluate(self, x=None, *args, **kwargs):
        self._check_data(x)
        return super().evaluate(x, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        self._check_data(x)
        return super().predict(x, *args, **kwargs)
