import os
import sys
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from keras_mim.data import ClipFolder, clip_dataset, load_clips


def coded_clips(n, t, h=4, w=4, c=1):
    """Clips whose every pixel stores (clip index, frame index) as (n * 100 + t) / 1e4."""
    code = (np.arange(n)[:, None] * 100 + np.arange(t)[None, :]) / 1e4
    return np.broadcast_to(code[:, :, None, None, None], (n, t, h, w, c)).astype("float32").copy()


def decode(clip):
    codes = np.round(np.asarray(clip)[:, 0, 0, 0] * 1e4).astype(int)
    return codes // 100, codes % 100  # clip index per frame, frame index per frame


def collect(dataset):
    return [np.asarray(x) for x in dataset.as_numpy_iterator()]


# ------------------------------------------------------------------------------------ arrays
def test_array_windows_in_order():
    x = coded_clips(3, 20)
    out = collect(clip_dataset(x, num_frames=4, frame_stride=3, clips_per_video=3))
    assert len(out) == 9 and all(o.shape == (4, 4, 4, 1) and o.dtype == np.float32 for o in out)
    span = 3 * 3 + 1
    expected_starts = np.round(np.linspace(0, 20 - span, 3)).astype(int)  # evenly spaced, first at 0
    for k, clip in enumerate(out):
        index, frames = decode(clip)
        assert (index == k // 3).all()
        np.testing.assert_array_equal(frames, expected_starts[k % 3] + 3 * np.arange(4))


def test_uint8_scaled_and_channels_kept():
    x = np.random.default_rng(0).integers(0, 256, (2, 6, 5, 7, 4)).astype("uint8")
    out = collect(clip_dataset(x, num_frames=6))
    np.testing.assert_allclose(out[1], x[1] / 255.0, rtol=1e-6)
    uint16 = (x.astype("uint16") * 257)
    np.testing.assert_allclose(collect(clip_dataset(uint16, num_frames=6))[0], x[0] / 255.0, rtol=1e-6)


def test_batched_shapes_are_static_and_drop_remainder():
    ds = clip_dataset(coded_clips(5, 8), num_frames=8, batch_size=2)
    assert tuple(ds.element_spec.shape) == (2, 8, 4, 4, 1)
    assert [b.shape for b in collect(ds)] == [(2, 8, 4, 4, 1)] * 2


def numpy_bilinear_upsample(image, out_h, out_w):
    """Reference bilinear resize with half-pixel centres (upsampling: no antialiasing)."""
    def matrix(n_in, n_out):
        centres = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        lo = np.floor(centres).astype(int)
        hi = np.minimum(lo + 1, n_in - 1)
        m = np.zeros((n_out, n_in))
        m[np.arange(n_out), lo] += 1 - (centres - lo)
        m[np.arange(n_out), hi] += centres - lo
        return m
    return np.einsum("Hh,hwc,Ww->HWc", matrix(image.shape[0], out_h), image, matrix(image.shape[1], out_w))


def test_resize_matches_numpy_bilinear():
    x = np.random.default_rng(1).random((1, 2, 4, 5, 3)).astype("float32")
    out = collect(clip_dataset(x, num_frames=2, image_size=(8, 15)))[0]
    assert out.shape == (2, 8, 15, 3)
    for t in range(2):
        np.testing.assert_allclose(out[t], numpy_bilinear_upsample(x[0, t], 8, 15), atol=1e-5)


def test_shuffle_is_seeded_and_changes_every_pass():
    x = coded_clips(6, 30)
    a = clip_dataset(x, num_frames=4, frame_stride=2, shuffle=True, seed=3, clips_per_video=2)
    b = clip_dataset(x, num_frames=4, frame_stride=2, shuffle=True, seed=3, clips_per_video=2)
    first_a, first_b = collect(a), collect(b)
    np.testing.assert_array_equal(np.stack(first_a), np.stack(first_b))
    second_a = collect(a)
    assert not np.array_equal(np.stack(first_a), np.stack(second_a))
    other = collect(clip_dataset(x, num_frames=4, frame_stride=2, shuffle=True, seed=4, clips_per_video=2))
    assert not np.array_equal(np.stack(first_a), np.stack(other))
    # Every clip of every source clip appears clips_per_video times, each a valid window.
    counts = np.zeros(6, int)
    for clip in first_a + second_a:
        index, frames = decode(clip)
        assert len(set(index)) == 1
        counts[index[0]] += 1
        np.testing.assert_array_equal(np.diff(frames), 2)
        assert 0 <= frames[0] and frames[-1] < 30
    np.testing.assert_array_equal(counts, 4)


def test_random_starts_cover_the_clip():
    x = coded_clips(1, 12)
    ds = clip_dataset(x, num_frames=3, shuffle=True, seed=0, clips_per_video=200)
    starts = [decode(c)[1][0] for c in collect(ds)]
    assert set(starts) == set(range(10))  # uniform over every valid start 0 .. 12 - 3


@pytest.mark.one_backend  # property test, many shapes: one CI pass; fixed cases run on every backend
@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 4), lengths=st.lists(st.integers(1, 25), min_size=4, max_size=4),
       num_frames=st.integers(1, 6), stride=st.integers(1, 4), per_video=st.integers(1, 3),
       shuffle=st.booleans(), seed=st.integers(0, 100))
def test_property_every_clip_is_a_valid_window(n, lengths, num_frames, stride, per_video, shuffle, seed):
    span = (num_frames - 1) * stride + 1
    full = coded_clips(n, 25)
    source = [full[i, :lengths[i]] for i in range(n)]
    usable = [i for i in range(n) if lengths[i] >= span]
    if not usable:
        with pytest.raises(ValueError, match="frames needed"):
            clip_dataset(source, num_frames=num_frames, frame_stride=stride)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = clip_dataset(source, num_frames=num_frames, frame_stride=stride, clips_per_video=per_video,
                          shuffle=shuffle, seed=seed)
    out = collect(ds)
    assert len(out) == len(usable) * per_video
    assert len(ds.skipped) == n - len(usable)
    for clip in out:
        index, frames = decode(clip)
        assert index[0] in usable and (index == index[0]).all()
        np.testing.assert_array_equal(np.diff(frames), stride)
        assert frames[-1] < lengths[index[0]]


def test_short_clips_skipped_counted_and_warned():
    full = coded_clips(3, 10)
    with pytest.warns(UserWarning, match="skipped 1"):
        ds = clip_dataset([full[0], full[1, :3], full[2]], num_frames=5)
    assert len(collect(ds)) == 2
    assert ds.skipped == [("source[1]", "3 frames < 5 needed (num_frames=5, frame_stride=1)")]


# ------------------------------------------------------------------------------------ files
def write_gif(path, colours, size=(12, 10)):
    frames = [Image.new("RGB", size, tuple(int(v) for v in colour)) for colour in colours]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=40, loop=0)


def write_frames(folder, values, mode="L", names="f{}.png", size=(6, 5)):
    os.makedirs(folder, exist_ok=True)
    for i, value in enumerate(values):
        fill = value if mode == "L" else (value, 255 - value, 7) + ((128,) if mode == "RGBA" else ())
        Image.new(mode, size, fill).save(os.path.join(folder, names.format(i + 1)))


GIF_COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255)]


def test_gif_folder(tmp_path):
    write_gif(tmp_path / "clip.gif", GIF_COLOURS)
    folder = ClipFolder(tmp_path)
    assert len(folder) == 1 and folder.num_frames(0) == 6 and folder.frame_size(0) == (10, 12)
    out = collect(clip_dataset(str(tmp_path), num_frames=3, frame_stride=2))
    assert len(out) == 1 and out[0].shape == (3, 10, 12, 3)
    np.testing.assert_allclose(out[0][:, 4, 5], np.array(GIF_COLOURS)[[0, 2, 4]] / 255.0, atol=1 / 255)


def test_frame_folders_natural_order_gray_and_rgba(tmp_path):
    write_frames(tmp_path / "gray", [10 * i for i in range(12)])  # f1 .. f12: needs natural sort
    write_frames(tmp_path / "nested" / "rgba", [20, 40, 60], mode="RGBA")
    folder = ClipFolder(tmp_path)
    assert [os.path.basename(folder.clip_path(i)) for i in range(len(folder))] == ["gray", "rgba"]
    assert folder.num_channels == 3  # a colour clip makes the folder RGB
    gray = folder.read(0, range(12))
    assert gray.shape == (12, 5, 6, 3)
    np.testing.assert_allclose(gray[:, 0, 0, 0], np.arange(12) * 10 / 255.0, atol=1e-6)
    np.testing.assert_array_equal(gray[..., 0], gray[..., 2])  # grayscale repeated to RGB
    rgba = folder.read(1, [0, 2])
    np.testing.assert_allclose(rgba[:, 0, 0], [[20 / 255, 235 / 255, 7 / 255], [60 / 255, 195 / 255, 7 / 255]],
                               atol=1e-6)
    # Grayscale only -> C = 1.
    only_gray = load_clips(str(tmp_path / "gray"), num_frames=12)
    assert only_gray.shape == (1, 12, 5, 6, 1)


def test_corrupt_files_are_skipped_and_listed(tmp_path):
    write_gif(tmp_path / "good.gif", GIF_COLOURS)
    (tmp_path / "bad.gif").write_bytes(b"not a gif at all")
    write_frames(tmp_path / "frames", [0, 50, 100, 150])
    (tmp_path / "frames" / "f5.png").write_bytes(b"\x89PNG garbage")
    (tmp_path / "notes.txt").write_text("ignored")
    folder = ClipFolder(tmp_path)
    assert len(folder) == 2
    assert sorted(os.path.basename(p) for p, _ in folder.skipped) == ["bad.gif", "f5.png"]
    assert folder.num_frames(1) == 4  # the bad frame is dropped, the clip kept
    with pytest.warns(UserWarning, match="skipped 2"):
        x, skipped = load_clips(folder, num_frames=4, image_size=8, return_skipped=True)
    assert x.shape == (2, 4, 8, 8, 3) and len(skipped) == 2


def test_truncated_file_skipped_while_iterating(tmp_path):
    write_frames(tmp_path / "a", [0, 50, 100])
    write_frames(tmp_path / "b", [0, 50, 100])
    data = (tmp_path / "b" / "f2.png").read_bytes()
    (tmp_path / "b" / "f2.png").write_bytes(data[: len(data) // 2 + 10])  # header fine, data cut
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = clip_dataset(str(tmp_path), num_frames=3)
        assert ds.skipped == []
        assert len(collect(ds)) == 1
    assert len(ds.skipped) == 1 and ds.skipped[0][0].endswith("b")


def test_mp4_roundtrip(tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    import imageio.v2 as imageio

    frames = np.zeros((10, 32, 48, 3), "uint8")
    frames[:, :, :, 0] = (np.arange(10) * 25)[:, None, None]
    frames[:, :, :, 1] = 128
    imageio.mimwrite(tmp_path / "clip.mp4", frames, fps=10, quality=10, macro_block_size=16)
    folder = ClipFolder(tmp_path)
    assert folder.num_frames(0) == 10 and folder.frame_size(0) == (32, 48)
    out = load_clips(folder, num_frames=5, frame_stride=2)
    assert out.shape == (1, 5, 32, 48, 3)
    np.testing.assert_allclose(out[0, :, 16, 24], frames[::2, 16, 24] / 255.0, atol=0.04)


def test_missing_ffmpeg_plugin_is_a_clear_import_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # makes `import imageio_ffmpeg` fail
    write_gif(tmp_path / "a.gif", GIF_COLOURS)
    assert len(ClipFolder(tmp_path)) == 1  # GIFs need no plugin
    (tmp_path / "b.mp4").write_bytes(b"whatever")
    with pytest.raises(ImportError, match="pip install imageio-ffmpeg"):
        ClipFolder(tmp_path)


def test_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="existing folder"):
        clip_dataset(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match=f"found under '{tmp_path}'"):
        clip_dataset(str(tmp_path))
    (tmp_path / "bad.gif").write_bytes(b"junk")
    with pytest.raises(ValueError, match="No readable clip under .*bad.gif"):
        ClipFolder(tmp_path)
    write_gif(tmp_path / "short.gif", GIF_COLOURS[:2])
    with pytest.raises(ValueError, match="has the 16 frames needed"):
        clip_dataset(tmp_path)


def test_different_frame_sizes(tmp_path):
    write_gif(tmp_path / "a.gif", GIF_COLOURS, size=(12, 10))
    write_gif(tmp_path / "b.gif", GIF_COLOURS, size=(8, 8))
    with pytest.raises(ValueError, match="different frame sizes"):
        clip_dataset(tmp_path, num_frames=4, batch_size=2)
    with pytest.raises(ValueError, match="pass `image_size`"):
        load_clips(tmp_path, num_frames=4)
    assert load_clips(tmp_path, num_frames=4, image_size=(6, 9)).shape == (2, 4, 6, 9, 3)
    unbatched = clip_dataset(tmp_path, num_frames=4)
    assert [c.shape[1:3] for c in collect(unbatched)] == [(10, 12), (8, 8)]


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"num_frames": 0}, ValueError, "num_frames"),
        ({"frame_stride": 0}, ValueError, "frame_stride"),
        ({"clips_per_video": 1.5}, ValueError, "clips_per_video"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"image_size": (4,)}, ValueError, "image_size"),
        ({"seed": -1}, ValueError, "seed"),
        ({"shuffle": "yes"}, TypeError, "shuffle"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        clip_dataset(coded_clips(2, 16), **kwargs)


@pytest.mark.parametrize(
    "source, error, match",
    [
        (np.zeros((2, 4, 4, 1)), ValueError, r"5-D \(N, T, H, W, C\), got shape \(2, 4, 4, 1\)"),
        ([np.zeros((4, 4, 4, 1)), np.zeros((4, 4, 1))], ValueError, r"`source\[1\]` must be a 4-D"),
        ([np.zeros((4, 4, 4, 1)), np.zeros((4, 4, 4, 3))], ValueError, "channels"),
        (np.zeros((1, 4, 4, 4, 1), "int64"), TypeError, "dtype int64"),
        ([], TypeError, "non-empty list"),
        (42, TypeError, "got int"),
        (np.zeros((0, 4, 4, 4, 1)), ValueError, "no clip"),
    ],
)
def test_bad_sources(source, error, match):
    with pytest.raises(error, match=match):
        clip_dataset(source, num_frames=2)
