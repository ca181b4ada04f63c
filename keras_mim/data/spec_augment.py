"""SpecAugment's time and frequency masking for fine-tuning on spectrograms, as Audio-MAE's
data loader applies it (`torchaudio.transforms.TimeMasking` / `FrequencyMasking`, one band
of each per clip), for `tf.data` pipelines.

Keras has no spectrogram-masking layer (its `RandomErasing` erases boxes, not bands that
span the whole other axis), so this is a few TensorFlow ops: a band's width is
`floor(u * max_width)` and its start `floor(v * (size - u * max_width))` for uniform `u`,
`v`, as torchaudio's `mask_along_axis`; the band is set to `mask_value`.
"""

def _check_width(value, name):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"`{name}` must be an int >= 0 (0 switches it off), got {value!r}.")
    return value


def spec_augment(time_mask=0, frequency_mask=0, mask_value=0.0, seed=None):
    """A function `spectrogram (frames, mel_bins, C) -> spectrogram` for `tf.data` maps that
    sets one random band of up to `time_mask` frames and one of up to `frequency_mask`
    mel bins to `mask_value`.

    Audio-MAE masks the raw log-mel values with 0 before normalising them; on a
    spectrogram normalised as `(x - mean) / (2 std)`, that is `mask_value = -mean / (2 std)`.
    Its recipes: AudioSet (1024 x 128) 192 frames and 48 bins; ESC-50 (512 x 128) 96 and 24.

    Args:
        time_mask: the widest band of frames (axis 0); 0 switches it off.
        frequency_mask: the widest band of mel bins (axis 1); 0 switches it off.
        mask_value: the value written into the bands.
        seed: optional int seed (a `tf.random.Generator` drawn from in order).

    Examples:
        >>> import numpy as np, tensorflow as tf
        >>> augment = spec_augment(time_mask=8, frequency_mask=4, mask_value=-1.0, seed=0)
        >>> out = augment(tf.zeros((16, 8, 1))).numpy()
        >>> out.shape, bool(((out == 0) | (out == -1)).all())
        ((16, 8, 1), True)
    """
    import tensorflow as tf

    _check_width(time_mask, "time_mask")
    _check_width(frequency_mask, "frequency_mask")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"`seed` must be an int or None, got {seed!r}.")
    generator = (tf.random.Generator.from_seed(seed) if seed is not None
                 else tf.random.Generator.from_non_deterministic_state())

    def band(size, max_width):  # (size,) bool, True inside the band
        width = generator.uniform(()) * max_width
        start = generator.uniform(()) * (tf.cast(size, tf.float32) - width)
        index = tf.range(size)
        return (index >= tf.cast(start, tf.int32)) & (index < tf.cast(start + width, tf.int32))

    def augment(spectrogram):
        spectrogram = tf.convert_to_tensor(spectrogram)
        shape = tf.shape(spectrogram)
        hidden = tf.zeros(shape[:2], tf.bool)
        if time_mask:
            hidden |= band(shape[0], float(min(time_mask, spectrogram.shape[0] or time_mask)))[:, None]
        if frequency_mask:
            hidden |= band(shape[1], float(min(frequency_mask, spectrogram.shape[1] or frequency_mask)))[None, :]
        value = tf.cast(mask_value, spectrogram.dtype)
        return tf.where(hidden[:, :, None], value, spectrogram)

    return augment
