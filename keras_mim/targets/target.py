"""The contract every per-token target keeps (pixels, HOG, Fourier spectrum, ...)."""

import keras


@keras.saving.register_keras_serializable(package="keras_mim")
class Target(keras.layers.Layer):
    """Base class of per-token targets: what a prediction `(B, N, P)` is scored against.

    A target is weightless and deterministic. A model asks it once, at construction,
    how wide its prediction head must be (`output_dim(patch_size, num_channels)`, which
    raises a `ValueError` if the target cannot work with that patch or channel count),
    then calls `target(images, patch_size=...)` inside its loss to get `(B, N, P)`
    float32, tokens in the row-major patch order of `patchify`. Subclasses implement
    `output_dim` and `call`, and add their arguments to `get_config`.

    Args:
        **kwargs: standard layer arguments.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.built = True  # no weights

    def output_dim(self, patch_size, num_channels):
        """Values per token for this patch size and channel count."""
        raise NotImplementedError

    def call(self, images, patch_size):
        raise NotImplementedError
