"""Structured mask generators: each one's defining property, checked against plain numpy."""

import math

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from keras_mim.masking.block_mask_generator import BlockMaskGenerator
from keras_mim.masking.disjoint_mask_generator import DisjointMaskGenerator, duplicate_for_disjoint
from keras_mim.masking.grid_mask_generator import GridMaskGenerator
from keras_mim.masking.running_cell_mask_generator import RunningCellMaskGenerator
from keras_mim.masking.simmim_mask_generator import SimMIMMaskGenerator
from keras_mim.masking.tube_mask_generator import TubeMaskGenerator
from tests.conftest import expected_visible, to_numpy


def draw(gen, batch, grid):
    """One call of the generator: the mask as numpy `(B, *grid)` plus the raw outputs."""
    out = {k: to_numpy(v) for k, v in gen(np.zeros((batch, 1), "float32"), grid_shape=grid).items()}
    n = math.prod(grid)
    keep = gen.num_visible(grid)
    assert out["mask"].shape == (batch, n) and out["ids_keep"].shape == (batch, keep)
    for b in range(batch):  # the kept ids are exactly the visible tokens
        np.testing.assert_array_equal(np.sort(out["ids_keep"][b]), np.flatnonzero(out["mask"][b] == 0))
    return out["mask"].reshape((batch,) + tuple(grid))


# ---------------------------------------------------------------------------- block (BEiT)
@pytest.mark.one_backend  # property test, many shapes: one CI pass; fixed cases run on every backend
@settings(max_examples=10, deadline=None)
@given(
    gh=st.integers(2, 8),
    gw=st.integers(2, 8),
    ratio=st.sampled_from([0.1, 0.4, 0.6, 0.9]),
    min_patches=st.integers(1, 6),
)
def test_block_exact_count(gh, gw, ratio, min_patches):
    n = gh * gw
    gen = BlockMaskGenerator(ratio, min_num_patches=min_patches, seed=1)
    if expected_visible(n, ratio) < 1:
        with pytest.raises(ValueError, match="leaves no visible token"):
            gen.num_visible((gh, gw))
        return
    mask = draw(gen, 3, (gh, gw))
    np.testing.assert_array_equal(mask.sum((1, 2)), n - expected_visible(n, ratio))


def test_block_hidden_tokens_are_clustered():
    gh = gw = 14
    mask = draw(BlockMaskGenerator(0.4, seed=2), 8, (gh, gw))
    hidden = int(mask[0].sum())
    rng = np.random.default_rng(0)
    random = np.zeros((8, gh * gw))
    for b in range(8):
        random[b, rng.permutation(gh * gw)[:hidden]] = 1
    random = random.reshape(8, gh, gw)
    block_parts = np.mean([ndimage.label(m)[1] for m in mask])
    random_parts = np.mean([ndimage.label(m)[1] for m in random])
    assert block_parts < 0.4 * random_parts, (block_parts, random_parts)


@pytest.mark.parametrize(
    "grid, ratio, area, aspect, box",
    [((8, 8), 0.25, 16, 1.0, (4, 4)), ((6, 8), 0.25, 12, 0.75, (3, 4))],
)
def test_block_single_rectangle(grid, ratio, area, aspect, box):
    # One rectangle of exactly the hidden count: the hidden set is that rectangle.
    gen = BlockMaskGenerator(ratio, min_num_patches=area, min_aspect=aspect, max_aspect=aspect, seed=3)
    mask = draw(gen, 6, grid)
    tops = set()
    for m in mask:
        rows, cols = np.nonzero(m)
        assert (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) == box
        assert m[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all()
        tops.add((rows.min(), cols.min()))
    assert len(tops) > 1  # random positions


def test_block_rejects_bad_arguments():
    with pytest.raises(ValueError, match="`min_num_patches` must be a positive int, got 0"):
        BlockMaskGenerator(min_num_patches=0)
    with pytest.raises(ValueError, match="`max_num_patches` must be None or an int >= min_num_patches=4"):
        BlockMaskGenerator(max_num_patches=2)
    with pytest.raises(ValueError, match="`min_aspect` must be a positive number, got 0"):
        BlockMaskGenerator(min_aspect=0)
    with pytest.raises(ValueError, match="`max_aspect` must be >= min_aspect=0.5, got 0.2"):
        BlockMaskGenerator(min_aspect=0.5, max_aspect=0.2)
    with pytest.raises(ValueError, match=r"needs a 2D grid .* grid_shape=\(2, 4, 4\)"):
        BlockMaskGenerator().num_visible((2, 4, 4))


# ---------------------------------------------------------------------------- SimMIM
@pytest.mark.one_backend  # property test, many shapes: one CI pass; fixed cases run on every backend
@settings(max_examples=10, deadline=None)
@given(
    ch=st.integers(1, 4),
    cw=st.integers(1, 4),
    scale=st.sampled_from([1, 2, 4]),
    ratio=st.sampled_from([0.0, 0.3, 0.6, 0.75]),
)
def test_simmim_whole_cells_and_count(ch, cw, scale, ratio):
    gen = SimMIMMaskGenerator(ratio, mask_patch_size=4 * scale, model_patch_size=4, seed=4)
    grid = (ch * scale, cw * scale)
    hidden_cells = math.ceil(ch * cw * ratio)
    if hidden_cells >= ch * cw:
        with pytest.raises(ValueError, match="hides all"):
            gen.num_visible(grid)
        return
    assert gen.num_visible(grid) == math.prod(grid) - hidden_cells * scale**2
    mask = draw(gen, 3, grid)
    cells = mask.reshape(3, ch, scale, cw, scale)
    per_cell = cells.sum((2, 4))
    assert set(np.unique(per_cell)) <= {0, scale**2}  # each cell all hidden or all visible
    np.testing.assert_array_equal((per_cell > 0).sum((1, 2)), hidden_cells)


def test_simmim_default_geometry_and_randomness():
    # 192 px, patch 4, 32 px cells: 48 x 48 tokens, 6 x 6 cells, ceil(36 * 0.6) = 22 hidden.
    gen = SimMIMMaskGenerator(seed=5)
    assert gen.scale == 8 and gen.num_visible((48, 48)) == 48 * 48 - 22 * 64
    mask = draw(gen, 4, (48, 48))
    cells = mask.reshape(4, 6, 8, 6, 8)[:, :, 0, :, 0]
    np.testing.assert_array_equal(cells.sum((1, 2)), 22)
    assert len({c.tobytes() for c in cells}) == 4


def test_simmim_rejects_bad_arguments():
    with pytest.raises(ValueError, match="`mask_patch_size`=6 must be a multiple of `model_patch_size`=4"):
        SimMIMMaskGenerator(mask_patch_size=6, model_patch_size=4)
    with pytest.raises(ValueError, match="`model_patch_size` must be a positive int, got 0"):
        SimMIMMaskGenerator(model_patch_size=0)
    gen = SimMIMMaskGenerator(mask_patch_size=16, model_patch_size=4)
    with pytest.raises(ValueError, match=r"grid \(6, 8\) is not divisible by the cell scale 4"):
        gen.num_visible((6, 8))
    with pytest.raises(ValueError, match="needs a 2D grid"):
        gen.num_visible((2, 8, 8))


# ---------------------------------------------------------------------------- grid / UM-MAE
@pytest.mark.one_backend  # property test, many shapes: one CI pass; fixed cases run on every backend
@settings(max_examples=10, deadline=None)
@given(
    ch=st.integers(1, 3),
    cw=st.integers(1, 3),
    stride=st.sampled_from([2, 3]),
    per_cell=st.booleans(),
)
def test_grid_one_visible_token_per_cell(ch, cw, stride, per_cell):
    gen = GridMaskGenerator(stride, random_per_cell=per_cell, seed=6)
    assert math.isclose(gen.mask_ratio, 1 - 1 / stride**2)
    batch = 4
    mask = draw(gen, batch, (ch * stride, cw * stride))
    visible = 1 - mask.reshape(batch, ch, stride, cw, stride).transpose(0, 1, 3, 2, 4)  # (B, ch, cw, s, s)
    np.testing.assert_array_equal(visible.sum((3, 4)), 1)
    offsets = visible.reshape(batch, ch * cw, stride * stride).argmax(-1)  # kept position in each cell
    if not per_cell:
        np.testing.assert_array_equal(offsets, offsets[:, :1].repeat(ch * cw, axis=1))


def test_grid_offsets_are_random():
    fixed = draw(GridMaskGenerator(2, seed=7), 16, (4, 4))
    per_cell = draw(GridMaskGenerator(2, random_per_cell=True, seed=7), 4, (4, 4))
    offsets = (1 - fixed).reshape(16, 2, 2, 2, 2).transpose(0, 1, 3, 2, 4).reshape(16, 4, 4).argmax(-1)
    assert len(set(offsets[:, 0])) > 1  # the shift varies across samples
    cells = (1 - per_cell).reshape(4, 2, 2, 2, 2).transpose(0, 1, 3, 2, 4).reshape(4, 4, 4).argmax(-1)
    assert any(len(set(c)) > 1 for c in cells)  # positions vary across the cells of a sample


def test_grid_config_round_trip_and_bad_arguments():
    gen = GridMaskGenerator(3, random_per_cell=True, seed=1)
    config = gen.get_config()
    assert config["stride"] == 3 and config["random_per_cell"] is True
    clone = GridMaskGenerator.from_config(config)
    assert clone.get_config() == config and clone.num_visible((6, 6)) == 4
    with pytest.raises(ValueError, match="derives `mask_ratio` from `stride`.*got mask_ratio=0.5"):
        GridMaskGenerator(2, mask_ratio=0.5)
    with pytest.raises(ValueError, match="`stride` must be an int >= 2, got 1"):
        GridMaskGenerator(1)
    with pytest.raises(TypeError, match="`random_per_cell` must be a bool"):
        GridMaskGenerator(2, random_per_cell="yes")
    with pytest.raises(ValueError, match=r"grid \(4, 5\) is not divisible by `stride`=2"):
        GridMaskGenerator(2).num_visible((4, 5))


# ---------------------------------------------------------------------------- tube (VideoMAE)
@pytest.mark.one_backend  # property test, many shapes: one CI pass; fixed cases run on every backend
@settings(max_examples=10, deadline=None)
@given(
    t=st.integers(1, 3),
    gh=st.integers(1, 5),
    gw=st.integers(2, 5),
    ratio=st.sampled_from([0.0, 0.5, 0.75, 0.9]),
)
def test_tube_same_mask_in_every_slice(t, gh, gw, ratio):
    gen = TubeMaskGenerator(ratio, seed=8)
    s = gh * gw
    per_frame_hidden = int(ratio * s)
    if per_frame_hidden >= s:
        with pytest.raises(ValueError, match="leaves no visible position"):
            gen.num_visible((t, gh, gw))
        return
    assert gen.num_visible((t, gh, gw)) == t * (s - per_frame_hidden)
    mask = draw(gen, 3, (t, gh, gw)).reshape(3, t, s)
    np.testing.assert_array_equal(mask, np.repeat(mask[:, :1], t, axis=1))
    np.testing.assert_array_equal(mask[:, 0].sum(-1), per_frame_hidden)


def test_tube_official_count_and_2d_grid_error():
    gen = TubeMaskGenerator()
    assert gen.num_visible((8, 14, 14)) == 8 * 20  # VideoMAE 16 x 224, ratio 0.9
    with pytest.raises(ValueError, match=r"use a \(T, gh, gw\) grid"):
        gen.num_visible((14, 14))


# ---------------------------------------------------------------------------- running cell (VideoMAE V2)
def official_running_cell_maps(frames, height, width, mask_ratio):
    """The 4 maps of VideoMAE V2's RunningCellMaskingGenerator, re-implemented in numpy."""
    num_masks = int(4 * mask_ratio)
    queue = np.hstack([np.ones(num_masks), np.zeros(4 - num_masks)])
    maps = []
    for ptr in range(4):
        frames_masks = []
        for _ in range(frames):
            ptr += 1  # run_cell, then get_cell
            unit = queue[(np.arange(4) + ptr) % 4].reshape(2, 2)
            frames_masks.append(np.tile(unit, [height // 2, width // 2]).flatten())
        maps.append(np.stack(frames_masks))
    return np.stack(maps)  # (4, T, gh * gw)


@pytest.mark.parametrize("ratio", [0.25, 0.5, 0.75])
def test_running_cell_matches_official_maps(ratio):
    grid = (4, 4, 6)
    maps = official_running_cell_maps(*grid, ratio)
    gen = RunningCellMaskGenerator(ratio, seed=9)
    mask = draw(gen, 16, grid).reshape(16, 4, 24)
    picked = []
    for m in mask:
        matches = [i for i in range(4) if np.array_equal(m, maps[i])]
        assert len(matches) == 1, m
        picked.append(matches[0])
    assert len(set(picked)) > 1  # the start pointer is random
    assert gen.num_visible(grid) == int(mask[0].size - mask[0].sum())


def test_running_cell_half_ratio_covers_every_position():
    mask = draw(RunningCellMaskGenerator(0.5, seed=10), 4, (4, 2, 4))
    assert mask.mean() == 0.5
    np.testing.assert_array_equal(mask.mean((1, 2, 3)), 0.5)
    assert (mask.min(axis=1) == 0).all()  # every spatial position is visible in some slice


def test_running_cell_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"int\(4 \* mask_ratio\) in \{1, 2, 3\}.*got 0.2"):
        RunningCellMaskGenerator(0.2)
    gen = RunningCellMaskGenerator()
    with pytest.raises(ValueError, match=r"even spatial grid sides.*\(3, 4\)"):
        gen.num_visible((2, 3, 4))
    with pytest.raises(ValueError, match=r"needs a video token grid `\(T, gh, gw\)`"):
        gen.num_visible((4, 4))


# ---------------------------------------------------------------------------- disjoint (DMJD)
@pytest.mark.one_backend  # property test, many shapes: one CI pass; fixed cases run on every backend
@settings(max_examples=10, deadline=None)
@given(
    gh=st.integers(1, 5),
    gw=st.integers(2, 5),
    ratio=st.sampled_from([0.5, 0.6, 0.75, 0.9]),
    pairs=st.integers(1, 3),
)
def test_disjoint_pairs_cover_every_token(gh, gw, ratio, pairs):
    n = gh * gw
    gen = DisjointMaskGenerator(ratio, seed=11)
    if expected_visible(n, ratio) < 1:
        with pytest.raises(ValueError, match="leaves no visible token"):
            gen.num_visible((gh, gw))
        return
    mask = draw(gen, 2 * pairs, (gh, gw)).reshape(2 * pairs, n)
    np.testing.assert_array_equal(mask.sum(1), n - expected_visible(n, ratio))
    np.testing.assert_array_equal(np.maximum(mask[:pairs], mask[pairs:]), 1)  # union = all tokens
    # the second mask hides everything the first one shows
    assert (mask[pairs:][mask[:pairs] == 0] == 1).all()


def test_disjoint_duplicate_and_errors():
    images = np.arange(12, dtype="float32").reshape(3, 2, 2, 1)
    doubled = to_numpy(duplicate_for_disjoint(images))
    np.testing.assert_array_equal(doubled, np.concatenate([images, images]))
    with pytest.raises(ValueError, match="needs an even batch.*got batch size 3"):
        DisjointMaskGenerator(0.75)(np.zeros((3, 1)), grid_shape=(4, 4))
    with pytest.raises(ValueError, match="`mask_ratio` must be >= 0.5 for disjoint masking, got 0.4"):
        DisjointMaskGenerator(0.4)


# ---------------------------------------------------------------------------- all of them
ALL = [
    (BlockMaskGenerator, dict(mask_ratio=0.5, min_num_patches=2, max_num_patches=6, max_aspect=2.0, seed=1), (4, 4)),
    (SimMIMMaskGenerator, dict(mask_ratio=0.5, mask_patch_size=8, model_patch_size=4, seed=1), (4, 4)),
    (GridMaskGenerator, dict(stride=2, random_per_cell=True, seed=1), (4, 4)),
    (TubeMaskGenerator, dict(mask_ratio=0.75, seed=1), (2, 4, 4)),
    (RunningCellMaskGenerator, dict(mask_ratio=0.5, seed=1), (2, 4, 4)),
    (DisjointMaskGenerator, dict(mask_ratio=0.75, seed=1), (4, 4)),
]


@pytest.mark.parametrize("cls, kwargs, grid", ALL, ids=[c.__name__ for c, _, _ in ALL])
def test_serialization_seed_and_float_scores(cls, kwargs, grid):
    gen = cls(**kwargs)
    config = gen.get_config()
    for key, value in kwargs.items():
        assert config[key] == value
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(gen))
    assert type(clone) is cls and clone.get_config() == config
    scores = gen.scores(4, grid)
    assert tuple(scores.shape) == (4, math.prod(grid)) and "float32" in str(scores.dtype)
    # same seed, same masks
    np.testing.assert_array_equal(draw(cls(**kwargs), 4, grid), draw(clone, 4, grid))
