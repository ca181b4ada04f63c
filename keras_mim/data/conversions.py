"""The pixel conversions of the image pipelines, in TF ops (tf.data runs them on every
backend): integer pixels to float, grayscale <-> RGB, and resizing to a fixed size."""

from keras_mim.utils import to_2tuple

RESIZE_MODES = ("resize", "crop", "pad")
# ITU-R BT.601 luma (tf.image.rgb_to_grayscale and Pillow's "L" use the same weights).
_LUMA = (0.299, 0.587, 0.114)


def to_float(image):
    """uint8 / 255, uint16 / 65535, floats cast to float32 (taken as `[0, 1]`)."""
    import tensorflow as tf

    scale = {tf.uint8: 255.0, tf.uint16: 65535.0}.get(image.dtype, 1.0)
    return tf.cast(image, tf.float32) / scale


def convert_channels(image, num_channels):
    """`(..., C)` float image as `num_channels` channels (TF ops): grayscale repeated to
    RGB, RGB to grayscale by BT.601 luma. `C` may be unknown until run time."""
    import tensorflow as tf

    image = tf.convert_to_tensor(image)
    if image.shape[-1] == num_channels:
        return image

    def convert():
        if num_channels == 3:
            return tf.repeat(image[..., :1], 3, axis=-1)
        return tf.reduce_sum(image[..., :3] * tf.constant(_LUMA, image.dtype), axis=-1, keepdims=True)

    out = convert() if image.shape[-1] is not None else tf.cond(
        tf.shape(image)[-1] == num_channels, lambda: image, convert)
    out.set_shape(image.shape[:-1].concatenate([num_channels]))
    return out


def resize_images(image, image_size, mode="resize"):
    """Resize one `(H, W, C)` float image to `image_size` (bilinear, antialiased), TF ops.

    `"resize"` stretches the whole image; `"crop"` takes the largest centred box of the
    target aspect ratio (= resize the short side, then centre crop); `"pad"` fits the whole
    image inside and pads the rest with zeros (centred).
    """
    import tensorflow as tf

    height, width = to_2tuple(image_size, "image_size")
    if mode == "pad":
        return tf.image.resize_with_pad(image, height, width, antialias=True)
    if mode == "crop":
        shape = tf.cast(tf.shape(image)[:2], tf.float32)
        crop_h = tf.minimum(shape[0], tf.round(shape[1] * height / width))
        crop_w = tf.minimum(shape[1], tf.round(shape[0] * width / height))
        top, left = tf.floor((shape[0] - crop_h) / 2), tf.floor((shape[1] - crop_w) / 2)
        box = [tf.cast(tf.maximum(v, 1.0) if i >= 2 else v, tf.int32)
               for i, v in enumerate((top, left, crop_h, crop_w))]
        image = image[box[0]:box[0] + box[2], box[1]:box[1] + box[3]]
    return tf.image.resize(image, (height, width), method="bilinear", antialias=True)
