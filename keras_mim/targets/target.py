"""The contract every per-token target keeps (pixels, HOG, Fourier spectrum, teacher features)."""

import keras

from keras_mim.losses import mse_per_token


@keras.saving.register_keras_serializable(package="keras_mim")
class Target(keras.layers.Layer):
    """Base class of per-token targets: what a prediction `(B, N, P)` is scored against.

    A target holds no trainable weight and is deterministic. A model checks it once, at
    construction, against its encoder (`check_compatible(image_shape, num_patches)`, a
    no-op but for targets that depend on the image size, such as a teacher's features),
    asks it how wide its prediction head must be (`output_dim(patch_size,
    num_channels)`, which raises a `ValueError` if the target cannot work with that patch
    or channel count), then calls `target(images, patch_size=...)` inside its loss to get
    `(B, N, P)` float32, tokens in the row-major patch order of `patchify`, and scores
    each token with `loss_per_token(pred, target)` (MSE unless the target says
    otherwise). Subclasses implement `output_dim` and `call`, and add their arguments to
    `get_config`.

    Args:
        **kwargs: standard layer arguments.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.built = True  # no weights (a teacher's come built)

    def check_compatible(self, image_shape, num_patches):
        """Raise a `ValueError` unless this target can score a student whose images are
        `image_shape` (e.g. `(H, W, C)`) cut into `num_patches` tokens. Nothing to check
        here: pixel-derived targets check the patch in `output_dim`."""
        return None

    def output_dim(self, patch_size, num_channels):
        """Values per token for this patch size and channel count."""
        raise NotImplementedError

    def call(self, images, patch_size):
        raise NotImplementedError

    def loss_per_token(self, pred, target):
        """Per-token loss `(B, N, P) -> (B, N)`, float32 (default: mean squared error)."""
        return mse_per_token(pred, target)
