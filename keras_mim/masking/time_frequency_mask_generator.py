"""Audio-MAE's time and frequency masking: hide whole rows (time) and columns (frequency)."""

import keras
from keras import ops

from keras_mim.masking.mask_generator import MaskGenerator, check_grid_shape
from keras_mim.utils import check_mask_ratio


@keras.saving.register_keras_serializable(package="keras_mim")
class TimeFrequencyMaskGenerator(MaskGenerator):
    """Hides random time rows and frequency columns of a spectrogram's token grid.

    On a `(T, F)` grid (time x frequency, Audio-MAE's 64 x 8 for 1024 frames x 128 mel
    bins in 16 x 16 patches), `int(T * (1 - time_ratio))` time rows and `int(F * (1 -
    freq_ratio))` frequency columns are kept per sample (the official `random_masking_2d`'s
    counts) and the others hidden; a token is hidden when its row or its column is, so
    exactly `int(T * (1 - time_ratio)) * int(F * (1 - freq_ratio))` tokens stay visible
    in every sample (25 x 4 on 64 x 8 at Audio-MAE's ablation, time 0.6 and frequency
    0.5), and `mask_ratio` follows from the two ratios.

    Args:
        time_ratio: fraction of time rows to hide, in [0, 1) (official `mask_t_prob` 0.6).
        freq_ratio: fraction of frequency columns to hide, in [0, 1) (`mask_f_prob` 0.5).
        seed: optional int for repeatable masks.
        **kwargs: standard layer arguments. A `mask_ratio` key (as written by
            `get_config`) is accepted only if it equals `1 - (1 - time_ratio) * (1 -
            freq_ratio)`.

    Examples:
        >>> import numpy as np
        >>> gen = TimeFrequencyMaskGenerator(time_ratio=0.5, freq_ratio=0.5, seed=0)
        >>> out = gen(np.zeros((2, 1), "float32"), grid_shape=(4, 4))
        >>> gen.num_visible((4, 4)), gen.mask_ratio
        (4, 0.75)
        >>> m = keras.ops.convert_to_numpy(out["mask"]).reshape(2, 4, 4)
        >>> [int((m[b].min(axis=1) == 1).sum()) for b in range(2)]  # 2 whole time rows hidden
        [2, 2]
    """

    grid_rank = 2

    def __init__(self, time_ratio=0.6, freq_ratio=0.5, seed=None, **kwargs):
        time_ratio = check_mask_ratio(time_ratio, name="time_ratio")
        freq_ratio = check_mask_ratio(freq_ratio, name="freq_ratio")
        mask_ratio = 1.0 - (1.0 - time_ratio) * (1.0 - freq_ratio)
        given = kwargs.pop("mask_ratio", None)
        if given is not None and abs(float(given) - mask_ratio) > 1e-6:
            raise ValueError(
                f"TimeFrequencyMaskGenerator derives `mask_ratio` from `time_ratio` and `freq_ratio` "
                f"(1 - (1 - {time_ratio}) * (1 - {freq_ratio}) = {mask_ratio:.4f}); got mask_ratio={given!r}."
            )
        super().__init__(mask_ratio=mask_ratio, seed=seed, **kwargs)
        self.time_ratio = time_ratio
        self.freq_ratio = freq_ratio

    def _counts(self, grid_shape):
        """`(T, F, hidden rows, hidden columns)` of a `(T, F)` grid; raises if nothing stays visible."""
        grid = check_grid_shape(grid_shape)
        if len(grid) != 2:
            raise ValueError(f"TimeFrequencyMaskGenerator needs a (time, frequency) grid, got grid_shape={grid}.")
        t, f = grid
        rows, cols = t - int(t * (1.0 - self.time_ratio)), f - int(f * (1.0 - self.freq_ratio))  # hidden
        if rows >= t or cols >= f:
            raise ValueError(
                f"`time_ratio`={self.time_ratio} and `freq_ratio`={self.freq_ratio} hide every row or column "
                f"of grid {grid}; use lower ratios."
            )
        return t, f, rows, cols

    def num_visible(self, grid_shape):
        t, f, rows, cols = self._counts(grid_shape)
        return (t - rows) * (f - cols)

    def scores(self, batch_size, grid_shape):
        t, f, rows, cols = self._counts(grid_shape)
        # A row (column) is hidden when its rank among the sample's random draws is >= the kept count.
        row_rank = ops.argsort(ops.argsort(keras.random.uniform((batch_size, t), seed=self.seed_generator), axis=-1))
        col_rank = ops.argsort(ops.argsort(keras.random.uniform((batch_size, f), seed=self.seed_generator), axis=-1))
        row_hidden = ops.cast(row_rank >= t - rows, "float32")[:, :, None]  # (B, T, 1)
        col_hidden = ops.cast(col_rank >= f - cols, "float32")[:, None, :]  # (B, 1, F)
        hidden = ops.maximum(row_hidden, col_hidden)  # (B, T, F): 1 where the row or the column is hidden
        # Visible tokens score 0, hidden ones 1; ties break by token index in `select_tokens`.
        return ops.reshape(hidden, (-1, t * f))

    def get_config(self):
        config = super().get_config()
        config.update(time_ratio=self.time_ratio, freq_ratio=self.freq_ratio)
        return config
