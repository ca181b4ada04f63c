"""I-JEPA's multi-block masks: static counts, disjoint sets, block shapes from the official rule."""

import math

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keras_mim.masking import MultiBlockMaskGenerator
from tests.conftest import to_numpy


def official_sides(n, scale, aspect, grid):
    """Block sides by the official collator's formula (facebookresearch/ijepa
    `_sample_block_size`), without its shrinking below the grid side: area
    `int(N * scale)`, `h = round(sqrt(area * aspect))`, `w = round(sqrt(area / aspect))`."""
    area = np.floor(np.float32(n) * np.float32(scale))
    h = np.clip(np.round(np.sqrt(area * np.float32(aspect))), 1, grid[0])
    w = np.clip(np.round(np.sqrt(area / np.float32(aspect))), 1, grid[1])
    return h.astype(int), w.astype(int)


def allowed_sides(n, scale, aspect, grid):
    """Every `(h, w)` the ranges can give, from a dense sweep of scale and aspect."""
    s = np.linspace(*scale, 201, dtype="float32")[:, None]
    a = np.linspace(*aspect, 801, dtype="float32")[None, :]
    h, w = official_sides(n, s, a, grid)
    return set(zip(h.ravel().tolist(), w.ravel().tolist()))


def draw(gen, grid, batch=6):
    return {k: to_numpy(v) for k, v in gen(np.zeros((batch, 1), "float32"), grid_shape=grid).items()}


def is_row_major_prefix(cells, width):
    """Whether `cells` (row, col) are the first cells, row-major, of a rectangle of
    `width` columns: full rows, then a partial last row from its left edge."""
    top, left = cells[:, 0].min(), cells[:, 1].min()
    expected = [(top + k // width, left + k % width) for k in range(len(cells))]
    return sorted(map(tuple, cells.tolist())) == sorted(expected)


#: JAX compiles its eager ops anew for each grid shape (~1.4 s an example, CI): fewer there.
EXAMPLES = 6 if keras.backend.backend() == "jax" else 20


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(gh=st.integers(6, 14), gw=st.integers(6, 14), m=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_counts_are_static_sets_disjoint_and_blocks_follow_the_official_shape_rule(gh, gw, m, seed):
    gen = MultiBlockMaskGenerator(num_targets=m, target_scale=(0.1, 0.15), seed=seed)
    grid, n = (gh, gw), gh * gw
    targets_hw = allowed_sides(n, gen.target_scale, gen.target_aspect, grid)
    context_hw = allowed_sides(n, gen.context_scale, (1.0, 1.0), grid)
    t = min(h * w for h, w in targets_hw)  # the documented rule: the smallest block
    c = min(h * w for h, w in context_hw) - m * t  # smallest context block minus M x T
    if c < 1:
        with pytest.raises(ValueError, match="cannot fit"):
            gen.num_visible(grid)
        return
    assert (gen.num_target_tokens(grid), gen.num_visible(grid)) == (t, c)
    out = draw(gen, grid)
    assert out["ids_keep"].shape == (6, c) and out["target_ids"].shape == (6, m, t)
    max_ctx_side = max(max(h, w) for h, w in context_hw)
    for b in range(6):
        context = set(out["ids_keep"][b].tolist())
        assert len(context) == c and np.flatnonzero(out["mask"][b] == 0).tolist() == sorted(context)
        union = set()
        for block in out["target_ids"][b]:
            assert len(set(block.tolist())) == t
            cells = np.stack(np.divmod(block, gw), axis=-1)  # (T, 2) rows, cols
            width = cells[:, 1].max() - cells[:, 1].min() + 1
            rows = cells[:, 0].max() - cells[:, 0].min() + 1
            # the first T tokens, row-major, of an allowed rectangle
            assert is_row_major_prefix(cells, width), block
            assert any(w == width and h >= rows for h, w in targets_hw), (rows, width)
            union |= set(block.tolist())
        assert not context & union  # no target token in the context
        np.testing.assert_array_equal(np.flatnonzero(out["target_mask"][b]), sorted(union))
        rows, cols = np.divmod(np.array(sorted(context)), gw)
        assert rows.max() - rows.min() < max_ctx_side and cols.max() - cols.min() < max_ctx_side


def test_vit_b16_grid_gives_the_documented_counts():
    gen = MultiBlockMaskGenerator(seed=0)  # the official settings
    assert (gen.num_target_tokens((14, 14)), gen.num_visible((14, 14))) == (24, 73)
    out = draw(gen, (14, 14), batch=32)
    # the blocks vary in size and place across the batch
    sizes = {len({*np.divmod(ids, 14)[1].tolist()}) for ids in out["target_ids"].reshape(-1, 24)}
    assert len(sizes) >= 3
    assert len({row.tobytes() for row in out["mask"]}) == 32


def test_noise_fixes_context_and_targets():
    gen = MultiBlockMaskGenerator(num_targets=2, target_scale=(0.2, 0.25), seed=0)
    grid = (6, 6)
    t, c = gen.num_target_tokens(grid), gen.num_visible(grid)
    noise = np.tile(np.arange(36, dtype="float32"), (2, 1))
    out = draw_noise = {k: to_numpy(v) for k, v in gen(noise, grid_shape=grid, noise=noise).items()}
    np.testing.assert_array_equal(np.sort(draw_noise["ids_keep"], axis=1), np.tile(np.arange(c), (2, 1)))
    top = np.arange(35, 35 - 2 * t, -1)  # highest scores first
    np.testing.assert_array_equal(out["target_ids"][0], np.sort(top.reshape(2, t), axis=-1))


@pytest.mark.parametrize("kwargs, word", [
    ({"num_targets": 0}, "num_targets"),
    ({"target_scale": (0.3, 0.2)}, "target_scale"),
    ({"context_scale": (0.5, 1.5)}, "context_scale"),
    ({"target_aspect": (0, 1)}, "target_aspect"),
    ({"num_context": -1}, "num_context"),
])
def test_bad_arguments_fail_clearly(kwargs, word):
    with pytest.raises(ValueError, match=word):
        MultiBlockMaskGenerator(**kwargs)


def test_blocks_that_cannot_fit_the_grid_and_too_many_context_tokens_fail_clearly():
    with pytest.raises(ValueError, match="cannot fit"):
        MultiBlockMaskGenerator(num_targets=4, target_scale=(0.3, 0.4)).num_visible((8, 8))
    gen = MultiBlockMaskGenerator(num_context=math.prod((14, 14)))
    with pytest.raises(ValueError, match="num_context"):
        gen.num_visible((14, 14))
    with pytest.raises(ValueError, match="2D grid"):
        MultiBlockMaskGenerator().num_visible((2, 8, 8))
