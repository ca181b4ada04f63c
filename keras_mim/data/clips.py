"""Video clips (arrays, video files, frame folders) as a `tf.data.Dataset` of float32
`(T, H, W, C)` clips in `[0, 1]`: decoded in Python through a generator, resized in tf.data
(which Keras accepts on every backend). Nothing is downloaded."""

import os
import warnings

import numpy as np

from keras_mim.data.decoding import GRAY_MODES, error_reason, natural_key, pil_to_array, summarize_skipped
from keras_mim.utils import check_positive_int, to_2tuple

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".webm", ".mkv")
GIF_EXTENSIONS = (".gif",)
FRAME_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


class _Clips:
    """A list of clips, each a dict: `path`, `n` (frames), `size` `(H, W)`, `channels` and
    `read` (frame indices -> frames `(k, H, W, c)`, float32 in [0, 1], or uint8 in 0..255
    when `dtype` is "uint8": in-memory uint8 clips stay uint8 until tf.data scales them)."""

    def __init__(self, clips, skipped=(), dtype="float32"):
        self._clips, self.skipped, self.dtype = clips, list(skipped), dtype
        self.num_channels = 3 if any(c["channels"] == 3 for c in clips) else clips[0]["channels"]

    def __len__(self):
        return len(self._clips)

    def clip_path(self, index):
        """The video file or frame folder of clip `index` (`source[i]` for arrays)."""
        return self._clips[index]["path"]

    def num_frames(self, index):
        """Number of frames of clip `index`."""
        return self._clips[index]["n"]

    def frame_size(self, index):
        """Native `(H, W)` of the frames of clip `index`."""
        return self._clips[index]["size"]

    def read(self, index, frame_indices):
        """Frames `frame_indices` (ascending) of clip `index`, `(k, H, W, C)` (float32 in [0, 1] for files)."""
        frames = np.stack(self._clips[index]["read"](list(frame_indices)))
        if frames.shape[-1] != self.num_channels:  # grayscale clip among colour ones
            frames = np.repeat(frames, self.num_channels, axis=-1)
        return frames


class ClipFolder(_Clips):
    """The clips found under a folder: video files and frame folders, scanned once.

    The folder is walked recursively (hidden entries ignored, natural order). Every `.gif`
    (read with pillow) or `.mp4/.avi/.mov/.webm/.mkv` file (imageio's ffmpeg plugin:
    `pip install imageio-ffmpeg`) is one clip; every folder directly holding image files
    (`.png/.jpg/.jpeg/.bmp/.tif/.tiff`) is one clip of those frames in natural order
    (`f2` before `f10`). Scanning reads headers and frame counts only. Unreadable files are
    skipped and listed in `skipped` as `(path, reason)` (an unreadable image in a frame
    folder drops that frame only; a frame folder of mixed frame sizes is skipped).

    Channels: grayscale files give 1, colour ones 3 (alpha dropped; GIFs are RGB). If any
    clip is colour, `num_channels` is 3 and grayscale clips are repeated to RGB.

    Args:
        path: the folder to scan (a `str` or path-like).

    Attributes:
        path: the scanned folder, as a string.
        skipped: list of `(path, reason)` for every file or clip that could not be read.
        num_channels: 1 or 3, the channels of every clip `read` returns.

    Raises:
        ValueError: `path` is not a folder, or it holds no readable clip.
        ImportError: video files other than GIF are present and `imageio-ffmpeg` is missing.

    Examples:
        >>> import tempfile
        >>> from PIL import Image
        >>> tmp = tempfile.TemporaryDirectory()
        >>> frames = [Image.new("RGB", (16, 12), (40 * i, 0, 0)) for i in range(5)]
        >>> frames[0].save(os.path.join(tmp.name, "a.gif"), save_all=True, append_images=frames[1:])
        >>> clips = ClipFolder(tmp.name)
        >>> len(clips), clips.num_frames(0), clips.frame_size(0), clips.num_channels
        (1, 5, (12, 16), 3)
        >>> clips.read(0, [0, 4]).shape
        (2, 12, 16, 3)
        >>> tmp.cleanup()
    """

    def __init__(self, path):
        if not isinstance(path, (str, os.PathLike)) or not os.path.isdir(path):
            raise ValueError(f"`source` must be an existing folder, got {path!r}.")
        self.path = os.fspath(path)
        videos, frame_dirs = [], []
        for root, dirs, files in os.walk(self.path):
            dirs[:] = sorted((d for d in dirs if not d.startswith(".")), key=natural_key)
            files = sorted((f for f in files if not f.startswith(".")), key=natural_key)
            videos += [os.path.join(root, f) for f in files if f.lower().endswith(GIF_EXTENSIONS + VIDEO_EXTENSIONS)]
            images = [os.path.join(root, f) for f in files if f.lower().endswith(FRAME_EXTENSIONS)]
            if images:
                frame_dirs.append((root, images))
        if not videos and not frame_dirs:
            raise ValueError(f"No video file ({', '.join(GIF_EXTENSIONS + VIDEO_EXTENSIONS)}) or frame folder "
                             f"({', '.join(FRAME_EXTENSIONS)}) found under {self.path!r}.")
        needs_ffmpeg = [v for v in videos if v.lower().endswith(VIDEO_EXTENSIONS)]
        if needs_ffmpeg:
            _require_ffmpeg(needs_ffmpeg[0])
        clips, skipped = [], []
        for item in videos + frame_dirs:
            try:
                clips.append(_frame_folder(*item, skipped) if isinstance(item, tuple) else _video(item))
            except Exception as error:  # unreadable or corrupt: skip and list it
                skipped.append((item[0] if isinstance(item, tuple) else item, error_reason(error)))
        if not clips:
            raise ValueError(f"No readable clip under {self.path!r}; skipped: {summarize_skipped(skipped)}.")
        super().__init__(clips, skipped)

    def __repr__(self):
        return f"ClipFolder({self.path!r}, clips={len(self)}, skipped={len(self.skipped)})"


def _require_ffmpeg(example):
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError as error:
        raise ImportError(
            f"Reading {os.path.splitext(example)[1]} videos (e.g. {example!r}) needs imageio's ffmpeg "
            "plugin: `pip install imageio-ffmpeg` (or `pip install keras-mim[video]`). GIF files and "
            "frame folders need no extra package."
        ) from error


def _frame_folder(folder, files, skipped):
    """A frame-folder clip; unreadable frames are dropped and added to `skipped`."""
    from PIL import Image

    good, sizes, channels = [], set(), 1
    for file in files:
        try:
            with Image.open(file) as image:
                sizes.add((image.height, image.width))
                channels = max(channels, 1 if image.mode in GRAY_MODES else 3)
            good.append(file)
        except Exception as error:
            skipped.append((file, error_reason(error)))
    if len(sizes) > 1:
        raise ValueError(f"frames of different sizes {sorted(sizes)}")
    if not good:
        raise ValueError("no readable frame")

    def read(indices):
        frames = []
        for i in indices:
            with Image.open(good[i]) as image:
                frames.append(pil_to_array(image))
        return frames

    return {"path": folder, "n": len(good), "size": sizes.pop(), "channels": channels, "read": read}


def _video(path):
    """A video-file clip: GIF through pillow, other formats through imageio's ffmpeg plugin."""
    if path.lower().endswith(GIF_EXTENSIONS):
        from PIL import Image

        with Image.open(path) as image:
            n, size = int(getattr(image, "n_frames", 1)), (image.height, image.width)

        def read(indices):
            frames = []
            with Image.open(path) as image:
                for i in indices:
                    image.seek(i)
                    frames.append(pil_to_array(image.convert("RGB")))
            return frames
    else:
        import imageio.v2 as imageio

        with imageio.get_reader(path, "ffmpeg") as reader:
            (width, height), n = reader.get_meta_data()["size"], reader.count_frames()
            size = (int(height), int(width))

        def read(indices):
            frames = {}
            with imageio.get_reader(path, "ffmpeg") as reader:
                for index, frame in enumerate(reader):
                    if index in indices:
                        frames[index] = np.asarray(frame, dtype="float32")[..., :3] / 255.0
                    if index >= indices[-1]:
                        break
            return [frames[i] for i in indices]

    if n < 1:
        raise ValueError("no frame")
    return {"path": path, "n": n, "size": size, "channels": 3, "read": read}


def _array_clip(index, array, keep_uint8):
    scale = None if keep_uint8 else np.float32({np.dtype("uint8"): 255, np.dtype("uint16"): 65535}.get(array.dtype, 1))

    def read(indices):
        frames = array[np.asarray(indices)]
        return frames if scale is None else frames.astype("float32") / scale

    return {"path": f"source[{index}]", "n": array.shape[0], "size": tuple(array.shape[1:3]),
            "channels": array.shape[-1], "read": read}


def _as_clips(source):
    """`source` (array, list of arrays, folder path or ClipFolder) as a `_Clips`."""
    if isinstance(source, ClipFolder):
        return source
    if isinstance(source, (str, os.PathLike)):
        return ClipFolder(source)
    if isinstance(source, np.ndarray):
        if source.ndim != 5:
            raise ValueError(f"`source` array must be 5-D (N, T, H, W, C), got shape {source.shape}.")
        arrays = list(source)
    elif isinstance(source, (list, tuple)) and source:
        arrays = [np.asarray(a) for a in source]
    else:
        raise TypeError("`source` must be an array (N, T, H, W, C), a non-empty list of (T, H, W, C) arrays, a "
                        f"folder path or a ClipFolder, got {type(source).__name__} {source!r:.80}.")
    if not arrays:
        raise ValueError("`source` holds no clip (N = 0).")
    for i, array in enumerate(arrays):
        if array.ndim != 4:
            raise ValueError(f"`source[{i}]` must be a 4-D clip (T, H, W, C), got shape {array.shape}.")
        if array.shape[-1] != arrays[0].shape[-1]:
            raise ValueError(f"`source[{i}]` has {array.shape[-1]} channels but `source[0]` has {arrays[0].shape[-1]}.")
        if not (array.dtype in (np.uint8, np.uint16) or np.issubdtype(array.dtype, np.floating)):
            raise TypeError(f"`source[{i}]` must be uint8, uint16 or float, got dtype {array.dtype}.")
    keep_uint8 = all(a.dtype == np.uint8 for a in arrays)
    return _Clips([_array_clip(i, a, keep_uint8) for i, a in enumerate(arrays)],
                  dtype="uint8" if keep_uint8 else "float32")


def _check_seed(seed):
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"`seed` must be a non-negative int, got {seed!r}.")
    return int(seed)


def clip_dataset(source, num_frames=16, frame_stride=1, image_size=None, batch_size=None,
                 shuffle=False, seed=0, clips_per_video=1):
    """A `tf.data.Dataset` of float32 clips `(num_frames, H, W, C)` in `[0, 1]`.

    Each clip yields `clips_per_video` windows of `num_frames` frames taken every
    `frame_stride` frames; a window spans `(num_frames - 1) * frame_stride + 1` frames and
    shorter clips are skipped. Without `shuffle` the windows are evenly spaced over the clip
    (one window starts at frame 0) and come in source order; with `shuffle` their starts are
    uniform random and their order is shuffled, anew at every pass over the dataset,
    repeatably for a given `seed`.

    uint8 values are divided by 255, uint16 by 65535, floats kept (expected in [0, 1]).
    Frames are resized (bilinear, antialiased) to `image_size` if given. Skipped clips
    (unreadable, too short, or failing to decode while iterating) are listed in
    `dataset.skipped` as `(path, reason)` (arrays are named `source[i]`), an attribute of
    the returned dataset object only; a warning gives their count.

    Args:
        source: a float/uint8/uint16 array `(N, T, H, W, C)`; a list of `(T_i, H_i, W_i, C)`
            arrays; a folder path (see `ClipFolder` for its layout); or a `ClipFolder`.
        num_frames: frames per clip `T`, a positive int.
        frame_stride: step between sampled frames, a positive int.
        image_size: int or `(H, W)` to resize the frames to; None keeps the native size.
        batch_size: if given, clips are batched with `drop_remainder=True` so every shape
            is static (XLA); None yields single clips.
        shuffle: shuffle the order and draw random window starts.
        seed: non-negative int for the shuffling and window starts.
        clips_per_video: windows drawn from each clip per pass, a positive int.

    Returns:
        A prefetched `tf.data.Dataset` of float32 clips `(T, H, W, C)` (or `(B, T, H, W, C)`),
        with a `skipped` attribute.

    Raises:
        ValueError: a bad argument, no clip long enough, or frame sizes that differ while
            `image_size` is None and batching is asked for.
        TypeError: `source` of an unsupported type.

    Examples:
        >>> clips = np.random.default_rng(0).random((3, 10, 8, 8, 1), dtype="float32")
        >>> ds = clip_dataset(clips, num_frames=4, frame_stride=2, image_size=16, batch_size=2)
        >>> [tuple(batch.shape) for batch in ds]
        [(2, 4, 16, 16, 1)]
        >>> ds = clip_dataset(clips, num_frames=4, clips_per_video=2)
        >>> len(list(ds)), ds.skipped
        (6, [])
    """
    import tensorflow as tf

    for value, name in ((num_frames, "num_frames"), (frame_stride, "frame_stride"),
                        (clips_per_video, "clips_per_video")):
        check_positive_int(value, name)
    if batch_size is not None:
        check_positive_int(batch_size, "batch_size")
    size = None if image_size is None else to_2tuple(image_size, "image_size")
    if not isinstance(shuffle, bool):
        raise TypeError(f"`shuffle` must be a bool, got {shuffle!r}.")
    rng = np.random.default_rng(_check_seed(seed))
    clips = _as_clips(source)

    span = (num_frames - 1) * frame_stride + 1
    skipped = list(clips.skipped)
    usable = []
    for i in range(len(clips)):
        if clips.num_frames(i) >= span:
            usable.append(i)
        else:
            skipped.append((clips.clip_path(i), f"{clips.num_frames(i)} frames < {span} needed "
                                                f"(num_frames={num_frames}, frame_stride={frame_stride})"))
    where = f"under {clips.path!r}" if isinstance(clips, ClipFolder) else "in `source`"
    if not usable:
        raise ValueError(f"No clip {where} has the {span} frames needed; skipped: {summarize_skipped(skipped)}.")
    if skipped:
        warnings.warn(f"clip_dataset skipped {len(skipped)} clip(s) or file(s) {where}: {summarize_skipped(skipped)}; "
                      "see `dataset.skipped`.", stacklevel=2)
    sizes = {clips.frame_size(i) for i in usable}
    if size is None and len(sizes) > 1 and batch_size is not None:
        raise ValueError(f"Clips {where} have different frame sizes {sorted(sizes)[:4]}; pass `image_size` "
                         "to resize them before batching.")
    native = sizes.pop() if len(sizes) == 1 else (None, None)

    def windows():
        items = []
        for i in usable:
            last = clips.num_frames(i) - span
            starts = (rng.integers(0, last + 1, clips_per_video) if shuffle
                      else np.linspace(0, last, clips_per_video).round().astype(int))
            items += [(i, int(s)) for s in starts]
        for k in (rng.permutation(len(items)) if shuffle else range(len(items))):
            i, start = items[k]
            try:
                frames = clips.read(i, range(start, start + span, frame_stride))
                if None not in native and frames.shape[1:3] != native:
                    raise ValueError(f"decoded frames of size {frames.shape[1:3]}, expected {native}")
            except Exception as error:  # corrupt data found while decoding: skip the clip
                skipped.append((clips.clip_path(i), error_reason(error)))
                warnings.warn(f"clip_dataset skipped {clips.clip_path(i)!r}: {error_reason(error)}", stacklevel=2)
                continue
            yield frames

    spec = tf.TensorSpec((num_frames, *native, clips.num_channels), tf.as_dtype(clips.dtype))
    dataset = tf.data.Dataset.from_generator(windows, output_signature=spec)

    def prepare(clip):
        if clip.dtype == tf.uint8:
            clip = tf.cast(clip, tf.float32) / 255.0
        if size is not None:
            clip = tf.clip_by_value(tf.image.resize(clip, size, method="bilinear", antialias=True), 0.0, 1.0)
            clip = tf.ensure_shape(clip, (num_frames, *size, clips.num_channels))
        return clip

    if size is not None or clips.dtype == "uint8":
        dataset = dataset.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    if batch_size is not None:
        dataset = dataset.batch(batch_size, drop_remainder=True)
    dataset = dataset.prefetch(tf.data.AUTOTUNE)
    dataset.skipped = skipped
    return dataset


def load_clips(source, num_frames=16, frame_stride=1, image_size=None, clips_per_video=1,
               return_skipped=False):
    """Load clips into one float32 numpy array `(N, T, H, W, C)` (for small data).

    The clips are those `clip_dataset(source, ...)` yields without shuffling (evenly spaced
    windows, source order).

    Args:
        source: as in `clip_dataset` (array, list of arrays, folder path or `ClipFolder`).
        num_frames: frames per clip, a positive int.
        frame_stride: step between sampled frames, a positive int.
        image_size: int or `(H, W)`; needed when the clips' frame sizes differ.
        clips_per_video: windows per clip, a positive int.
        return_skipped: also return the `(path, reason)` list of skipped clips.

    Returns:
        The float32 array, or `(array, skipped)` if `return_skipped`.

    Raises:
        ValueError: as `clip_dataset`, and when the frame sizes differ without `image_size`.

    Examples:
        >>> clips = [np.zeros((12, 8, 8, 3), "uint8"), np.full((9, 8, 8, 3), 255, "uint8")]
        >>> x = load_clips(clips, num_frames=8, image_size=4)
        >>> x.shape, float(x[1].min())
        ((2, 8, 4, 4, 3), 1.0)
    """
    dataset = clip_dataset(source, num_frames=num_frames, frame_stride=frame_stride, image_size=image_size,
                           batch_size=None, clips_per_video=clips_per_video)
    shape = dataset.element_spec.shape
    if None in shape:
        raise ValueError(f"The clips' frame sizes differ (element shape {shape}); pass `image_size`.")
    clips = list(dataset.as_numpy_iterator())
    if not clips:
        raise ValueError(f"No clip could be decoded; skipped: {summarize_skipped(dataset.skipped)}.")
    array = np.stack(clips)
    return (array, dataset.skipped) if return_skipped else array
