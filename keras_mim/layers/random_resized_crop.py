"""Random resized crop (torchvision's `RandomResizedCrop`) as a Keras preprocessing layer.

The box rule is written once, in `crop_boxes`, over whatever backend namespace it is given:
the layer runs it with the ops of the backend it is called in (TensorFlow inside `tf.data`,
whatever Keras' backend is; JAX, TensorFlow or torch inside a model), and
`keras_mim.data.random_resized_crop_box` runs it with TensorFlow's stateless random numbers.
"""

import math

import keras

from keras_mim.compat import ImagePreprocessingLayer
from keras_mim.utils import check_positive_int

CROP_METHODS = ("torchvision", "clamped")
INTERPOLATIONS = ("bilinear", "nearest")


def check_range(value, name, upper=None):
    """`value` as a float pair `(low, high)` with `0 < low <= high` (`<= upper`), or raise."""
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
            or not 0 < value[0] <= value[1] or (upper is not None and value[1] > upper)):
        bound = f" <= {upper}" if upper is not None else ""
        raise ValueError(f"`{name}` must be a pair (low, high) with 0 < low <= high{bound}, got {value!r}.")
    return float(value[0]), float(value[1])


def crop_boxes(backend, image_size, area_fraction, log_aspect, position, ratio, method="torchvision"):
    """Random-resized-crop boxes from uniform draws, in the ops of `backend` (loop-free).

    `method="torchvision"` is `torchvision.transforms.RandomResizedCrop.get_params`: each of
    the `K` candidates has area `area_fraction * H * W` and aspect ratio
    `w / h = exp(log_aspect)`, `w = round(sqrt(area * r))`, `h = round(sqrt(area / r))`
    (half to even, as Python's `round`); the first candidate with `0 < w <= W` and
    `0 < h <= H` is placed at a uniform integer position (`torch.randint(0, H - h + 1)`).
    If none fits: a centre crop of the whole image, its aspect ratio clamped to `ratio`
    (at least 1 pixel per side). `method="clamped"` (CropMAE's `RRC`) takes the first
    candidate with `w`, `h` clamped to `[1, W]`, `[1, H]`.

    Args:
        backend: a namespace of Keras ops: `keras.ops`, a preprocessing layer's
            `self.backend` or `keras_mim.compat.backend_ops(name)`; every op below comes
            from it.
        image_size: `(H, W)`, ints or int scalar tensors.
        area_fraction: `(..., K)` draws, uniform in `scale`.
        log_aspect: `(..., K)` draws, uniform in `log(ratio)`.
        position: `(..., 2)` draws, uniform in `[0, 1)`.
        ratio: `(low, high)` aspect-ratio range (for the fallback box).
        method: `"torchvision"` or `"clamped"`.

    Returns:
        `(top, left, height, width)`, int32 tensors of shape `(...)`.

    Examples:
        >>> import keras, numpy as np
        >>> box = crop_boxes(keras.ops, (10, 200), np.full((3,), 2.0, "float32"), np.zeros((3,), "float32"),
        ...                  np.zeros((2,), "float32"), ratio=(0.75, 4 / 3))  # no candidate fits
        >>> [int(v) for v in box]
        [0, 93, 10, 13]
    """
    ops = backend.numpy
    area_fraction, log_aspect, position = (backend.convert_to_tensor(v, "float32")
                                           for v in (area_fraction, log_aspect, position))
    height = backend.cast(image_size[0], "float32")
    width = backend.cast(image_size[1], "float32")
    area = area_fraction * (height * width)
    aspect = ops.exp(log_aspect)
    w = ops.round(ops.sqrt(area * aspect))
    h = ops.round(ops.sqrt(area / aspect))
    if method == "torchvision":
        valid = ops.logical_and(ops.logical_and(w > 0, w <= width), ops.logical_and(h > 0, h <= height))
        first = ops.expand_dims(ops.argmax(backend.cast(valid, "int32"), axis=-1), -1)
        found = ops.any(valid, axis=-1)
        in_ratio = width / height
        fallback_w = ops.where(in_ratio > ratio[1], ops.maximum(ops.round(height * ratio[1]), 1.0), width)
        fallback_h = ops.where(in_ratio < ratio[0], ops.maximum(ops.round(width / ratio[0]), 1.0), height)
        w = ops.where(found, ops.squeeze(ops.take_along_axis(w, first, axis=-1), -1), fallback_w)
        h = ops.where(found, ops.squeeze(ops.take_along_axis(h, first, axis=-1), -1), fallback_h)
    elif method == "clamped":
        found = True
        w = ops.clip(w[..., 0], 1.0, width)
        h = ops.clip(h[..., 0], 1.0, height)
    else:
        raise ValueError(f"`method` must be one of {CROP_METHODS}, got {method!r}.")
    top = ops.where(found, ops.minimum(ops.floor(position[..., 0] * (height - h + 1)), height - h),
                    ops.floor((height - h) / 2))
    left = ops.where(found, ops.minimum(ops.floor(position[..., 1] * (width - w + 1)), width - w),
                     ops.floor((width - w) / 2))
    return tuple(backend.cast(v, "int32") for v in (top, left, h, w))


def _axis_weights(backend, start, size, length, out_length, interpolation, antialias):
    """Resampling matrices `(B, out_length, length)` taking `size` pixels from `start` of an
    axis of `length` pixels to `out_length` pixels (half-pixel centres, as PIL / TF / torch
    with `align_corners=False`; triangle filter widened by the shrink factor if `antialias`)."""
    ops = backend.numpy
    start = backend.cast(start, "float32")[:, None, None]
    size = backend.cast(size, "float32")[:, None, None]
    pixels = backend.cast(ops.arange(length), "float32")[None, None, :]  # (1, 1, L)
    outputs = backend.cast(ops.arange(out_length), "float32")[None, :, None]  # (1, n, 1)
    centres = start + (outputs + 0.5) * size / out_length  # source coordinate of each output
    inside = ops.logical_and(pixels >= start, pixels < start + size)
    if interpolation == "nearest":
        index = ops.clip(ops.floor(centres), start, start + size - 1)
        return backend.cast(ops.equal(pixels, index), "float32")
    support = ops.maximum(size / out_length, 1.0) if antialias else 1.0
    weights = ops.maximum(1.0 - ops.abs(pixels + 0.5 - centres) / support, 0.0)
    weights = ops.where(inside, weights, 0.0)
    return weights / ops.sum(weights, axis=-1, keepdims=True)


def crop_and_resize(backend, images, boxes, size, interpolation="bilinear", antialias=True):
    """Crop one box per image from `(B, H, W, C)` images and resize it to `size` (static).

    Bilinear is the triangle filter on half-pixel centres, as `tf.image.resize`,
    `torch.nn.functional.interpolate(align_corners=False)` and PIL; with `antialias`, the
    filter widens by the shrink factor when a side shrinks (as PIL and
    `tf.image.resize(antialias=True)`). Done as two batched matrix products, so every box
    may differ and the output shape is static.

    Args:
        backend: a namespace of Keras backend ops.
        images: float `(B, H, W, C)`.
        boxes: `(top, left, height, width)`, int tensors `(B,)`.
        size: `(height, width)` of the output, ints.
        interpolation: `"bilinear"` or `"nearest"`.
        antialias: widen the bilinear filter when shrinking.

    Returns:
        `(B, size[0], size[1], C)` tensor of the dtype of `images`.
    """
    top, left, height, width = boxes
    shape = backend.shape(images)
    rows = _axis_weights(backend, top, height, shape[1], size[0], interpolation, antialias)
    cols = _axis_weights(backend, left, width, shape[2], size[1], interpolation, antialias)
    rows, cols = backend.cast(rows, images.dtype), backend.cast(cols, images.dtype)
    out = backend.numpy.einsum("bih,bhwc->biwc", rows, images)
    return backend.numpy.einsum("bjw,biwc->bijc", cols, out)


@keras.saving.register_keras_serializable(package="keras_mim")
class RandomResizedCrop(ImagePreprocessingLayer):
    """Crops a random box of random area and aspect ratio and resizes it (torchvision's rule).

    In training, each image gets its own box drawn by torchvision's
    `RandomResizedCrop.get_params` (see `crop_boxes`): area fraction uniform in `scale`,
    log aspect ratio `w / h` uniform in `log(ratio)`, up to 10 candidates, the first that
    fits taken at a uniform position, else a centre crop with the aspect ratio clamped to
    `ratio`. The box is resized to `(height, width)` (bilinear, antialiased when shrinking,
    as torchvision's tensor transform and PIL). At inference (`training=False`) the box is
    that centre crop: the whole image when its aspect ratio lies in `ratio`, otherwise its
    centre trimmed to the nearest ratio in range, resized (no randomness).

    It is a Keras preprocessing layer: it runs inside `tf.data` (`ds.map(layer)`) on every
    backend (with TensorFlow ops there) and inside a model on device, jit-compiled (JAX,
    TF XLA) or not. Inputs: one image `(H, W, C)` or a batch `(B, H, W, C)`, channels last,
    any size and channel count, float or integer (cast to float, values kept: uint8 stays
    in 0..255).

    Args:
        height: output height, a positive int.
        width: output width, a positive int.
        scale: `(low, high)` range of the crop's area as a fraction of the image,
            `0 < low <= high <= 1`.
        ratio: `(low, high)` range of the crop's aspect ratio `w / h`, `0 < low <= high`.
        interpolation: `"bilinear"` or `"nearest"` (half-pixel centres).
        antialias: widen the bilinear filter when a side shrinks (default True).
        seed: optional int seed of the layer's `SeedGenerator`.
        **kwargs: standard layer arguments (`name`, `dtype`).

    Examples:
        >>> import numpy as np
        >>> layer = RandomResizedCrop(16, 24, scale=(0.2, 1.0), seed=0)
        >>> images = np.random.default_rng(0).random((2, 40, 30, 3)).astype("float32")
        >>> tuple(layer(images).shape), tuple(layer(images[0], training=False).shape)
        ((2, 16, 24, 3), (16, 24, 3))
    """

    def __init__(self, height, width, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), interpolation="bilinear",
                 antialias=True, seed=None, data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        if self.data_format != "channels_last":
            raise ValueError(f"`data_format` must be 'channels_last', got {self.data_format!r}.")
        self.height = check_positive_int(height, "height")
        self.width = check_positive_int(width, "width")
        self.scale = check_range(scale, "scale", upper=1.0)
        self.ratio = check_range(ratio, "ratio")
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"`interpolation` must be one of {INTERPOLATIONS}, got {interpolation!r}.")
        if not isinstance(antialias, bool):
            raise TypeError(f"`antialias` must be a bool, got {antialias!r}.")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"`seed` must be an int or None, got {seed!r}.")
        self.interpolation = interpolation
        self.antialias = antialias
        self.seed = seed
        self.generator = keras.random.SeedGenerator(seed)
        self.max_attempts = 10
        self.supports_jit = True

    def get_random_transformation(self, data, training=True, seed=None):
        images = data["images"] if isinstance(data, dict) else data
        shape = self.backend.shape(images)
        batch = shape[0] if len(shape) == 4 else 1
        image_size = shape[-3:-1]
        if training:
            seed = seed if seed is not None else self.seed_generator()
            uniform = self.backend.random.uniform
            draws = (uniform((batch, self.max_attempts), *self.scale, seed=seed),
                     uniform((batch, self.max_attempts), math.log(self.ratio[0]), math.log(self.ratio[1]), seed=seed),
                     uniform((batch, 2), seed=seed))
        else:  # no candidate fits: the deterministic centre crop
            draws = (self.backend.numpy.full((batch, 1), 2.0), self.backend.numpy.zeros((batch, 1)),
                     self.backend.numpy.zeros((batch, 2)))
        return crop_boxes(self.backend, image_size, *draws, ratio=self.ratio)

    def transform_images(self, images, transformation, training=True):
        return self._crop_resize(images, transformation, self.interpolation)

    def transform_segmentation_masks(self, segmentation_masks, transformation, training=True):
        # As Keras' augmentation layers: in training, the images' boxes (nearest).
        if not training:
            return segmentation_masks
        return self._crop_resize(segmentation_masks, transformation, "nearest")

    def _crop_resize(self, images, transformation, interpolation):
        images = self.backend.cast(images, self.compute_dtype)
        return crop_and_resize(self.backend, images, transformation, (self.height, self.width),
                               interpolation, self.antialias)

    def transform_labels(self, labels, transformation, training=True):
        return labels

    def compute_output_shape(self, input_shape, *args, **kwargs):
        return tuple(input_shape[:-3]) + (self.height, self.width, input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(height=self.height, width=self.width, scale=self.scale, ratio=self.ratio,
                      interpolation=self.interpolation, antialias=self.antialias, seed=self.seed)
        return config
