"""TimeFrequencyMaskGenerator: hidden tokens are exactly the union of whole time rows and
frequency columns, with static counts (hypothesis over grids and ratios)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_mim.masking import TimeFrequencyMaskGenerator, get_mask_generator
from tests.conftest import to_numpy


@settings(max_examples=6, deadline=None)  # every new grid compiles anew on JAX
@given(t=st.integers(2, 9), f=st.integers(2, 6), rt=st.floats(0.0, 0.8), rf=st.floats(0.0, 0.7), seed=st.integers(0, 99))
def test_hidden_tokens_are_whole_rows_and_columns(t, f, rt, rf, seed):
    gen = TimeFrequencyMaskGenerator(time_ratio=rt, freq_ratio=rf, seed=seed)
    rows, cols = t - int(t * (1 - rt)), f - int(f * (1 - rf))  # hidden: the official keep counts
    if rows >= t or cols >= f:
        with pytest.raises(ValueError, match="hide every row or column"):
            gen.num_visible((t, f))
        return
    out = {k: to_numpy(v) for k, v in gen(np.zeros((4, 1), "float32"), grid_shape=(t, f)).items()}
    mask = out["mask"].reshape(4, t, f)
    hidden_rows, hidden_cols = mask.min(axis=2) == 1, mask.min(axis=1) == 1
    for b in range(4):
        # a token is hidden iff its row or its column is; with exactly `rows` rows and `cols` columns
        expected = hidden_rows[b][:, None] | hidden_cols[b][None, :]
        if rows and cols:
            np.testing.assert_array_equal(mask[b] == 1, expected)
        assert (mask[b] == 0).sum() == (t - rows) * (f - cols) == gen.num_visible((t, f))
    assert abs(gen.mask_ratio - (1 - (1 - rt) * (1 - rf))) < 1e-9


def test_official_ratios_and_bad_input():
    gen = get_mask_generator("time_frequency", seed=0)
    assert gen.mask_ratio == pytest.approx(0.8) and gen.num_visible((64, 8)) == 25 * 4  # int(25.6) x int(4.0)
    assert get_mask_generator("time_frequency", mask_ratio=0.8).time_ratio == 0.6
    with pytest.raises(ValueError, match="derives `mask_ratio`"):
        TimeFrequencyMaskGenerator(mask_ratio=0.5)
    with pytest.raises(ValueError, match=r"\(time, frequency\) grid"):
        gen.num_visible((2, 4, 4))
    with pytest.raises(ValueError, match="`time_ratio` must be in"):
        TimeFrequencyMaskGenerator(time_ratio=1.0)
