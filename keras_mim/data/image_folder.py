"""A folder of image files (X-rays, satellite tiles, lab photos), scanned once and read
as float32 `(H, W, C)` arrays in `[0, 1]`. Nothing is downloaded."""

import collections
import os
import warnings

import numpy as np

from keras_mim.data.conversions import convert_channels, resize_images
from keras_mim.data.decoding import GRAY_MODES, error_reason, natural_key, pil_to_array, summarize_skipped

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
_TIFF_EXTENSIONS = (".tif", ".tiff")


def _tifffile():
    try:
        import tifffile
    except ImportError:  # Pillow reads ordinary TIFFs; multi-channel ones need tifffile
        return None
    return tifffile


def _tiff_layout(page_series):
    """`(shape, channels, channels_first)` of a tifffile series."""
    shape, axes = tuple(page_series.shape), page_series.axes
    if len(shape) == 2:
        return shape, 1, False
    if len(shape) == 3 and axes[-1] == "S":  # interleaved samples (RGB, RGBA, ...)
        return shape[:2], shape[2], False
    if len(shape) == 3:  # planar: (C, H, W)
        return shape[1:], shape[0], True
    raise ValueError(f"unsupported TIFF layout, axes {axes!r} of shape {shape}")


def _scale_array(array):
    """An integer or float array as float32: uint8 / 255, other ints / their max, floats kept."""
    if np.issubdtype(array.dtype, np.integer):
        scale = np.float32(255 if array.dtype == np.uint8 else np.iinfo(array.dtype).max)
        return np.clip(array.astype("float32") / scale, 0.0, 1.0)
    if np.issubdtype(array.dtype, np.floating):
        return array.astype("float32")
    raise ValueError(f"unsupported pixel type {array.dtype}")


def _header(path):
    """`((H, W), channels)` from the file's header, or raise."""
    if path.lower().endswith(_TIFF_EXTENSIONS) and _tifffile() is not None:
        with _tifffile().TiffFile(path) as tif:
            size, channels, _ = _tiff_layout(tif.series[0])
        return size, min(channels, 3) if channels == 4 else channels  # RGBA: alpha dropped
    from PIL import Image

    with Image.open(path) as image:
        return (image.height, image.width), 1 if image.mode in GRAY_MODES else 3


def _decode(path):
    """The whole image as float32 `(H, W, C)` (C = 1, 3 or a TIFF's own count); raises if
    the file does not decode or holds non-finite values."""
    if path.lower().endswith(_TIFF_EXTENSIONS) and _tifffile() is not None:
        with _tifffile().TiffFile(path) as tif:
            _, channels, channels_first = _tiff_layout(tif.series[0])
            array = tif.series[0].asarray()
        array = np.moveaxis(array, 0, -1) if channels_first else array.reshape(array.shape[:2] + (-1,))
        array = _scale_array(array[..., :3] if channels == 4 else array)
    else:
        from PIL import Image

        with Image.open(path) as image:
            image.load()
            array = pil_to_array(image)
    if not np.isfinite(array).all():
        raise ValueError("non-finite pixel values (NaN or inf)")
    return array


class ImageFolder:
    """The image files found under a folder, scanned once (headers only).

    Files with the extensions `.png .jpg .jpeg .bmp .gif .tif .tiff .webp` (any case) are
    taken, recursively, in natural order (`img2` before `img10`); hidden files and folders
    and other extensions are ignored. Files whose header does not read are skipped and
    listed in `skipped` as `(path, reason)`; so are files that fail to decode later
    (`image_dataset` skips them while iterating, and adds them here).

    Pixels: 8-bit images are divided by 255, 16-bit PNG/TIFF by 65535, float TIFFs kept
    as stored; GIFs give their first frame. Grayscale files give 1 channel, colour ones 3
    (alpha dropped, palettes expanded), TIFFs their own count (multispectral tiles keep
    every band; read with `tifffile` when installed).

    Channels of the folder (`num_channels`): the count shared by every file; a mix of
    grayscale and colour files gives 3 (grayscale repeated to RGB, nothing is lost). A mix
    involving other counts raises in `image_dataset` unless `num_channels` is given.

    Labels: the first-level subfolder of each file; `class_names` are those subfolder
    names, sorted, and `labels` the index of each file's class (-1 for files directly in
    `path`).

    Args:
        path: the folder to scan (a `str` or path-like).
        extensions: the file extensions to take (e.g. `(".png",)`, any case); None for all
            of `IMAGE_EXTENSIONS`.
        recursive: scan subfolders too.

    Attributes:
        path, files (list of paths), sizes (list of `(H, W)`), channels (list of ints),
        num_channels, class_names, labels (int array), skipped (list of `(path, reason)`).

    Raises:
        FileNotFoundError: `path` does not exist. ValueError: `path` is not a folder, holds
        no image file, or no readable one (the error summarises the skipped files).

    Example:
    >>> import tempfile
    >>> from PIL import Image
    >>> tmp = tempfile.TemporaryDirectory()
    >>> os.makedirs(os.path.join(tmp.name, "cats"))
    >>> Image.new("RGB", (12, 8), (255, 0, 0)).save(os.path.join(tmp.name, "cats", "a.png"))
    >>> Image.new("L", (6, 6), 128).save(os.path.join(tmp.name, "cats", "b.jpg"))
    >>> folder = ImageFolder(tmp.name)
    >>> len(folder), folder.sizes, folder.num_channels, folder.class_names
    (2, [(8, 12), (6, 6)], 3, ['cats'])
    >>> folder.read([0]).shape, folder.read(1, image_size=4).shape
    ((1, 8, 12, 3), (4, 4, 3))
    >>> tmp.cleanup()
    """

    def __init__(self, path, extensions=None, recursive=True):
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"`path` must be a str or path-like folder, got {type(path).__name__} {path!r:.80}.")
        self.path = os.fspath(path)
        if not os.path.exists(self.path):
            raise FileNotFoundError(f"`path` {self.path!r} does not exist.")
        if not os.path.isdir(self.path):
            raise ValueError(f"`path` must be a folder, got the file {self.path!r}.")
        if extensions is None:
            extensions = IMAGE_EXTENSIONS
        if isinstance(extensions, str) or not all(isinstance(e, str) and e for e in extensions):
            raise ValueError(f"`extensions` must be a list of extensions such as ['.png'], got {extensions!r}.")
        self.extensions = tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)
        if not isinstance(recursive, bool):
            raise TypeError(f"`recursive` must be a bool, got {recursive!r}.")
        found = []
        for root, dirs, files in os.walk(self.path):
            dirs[:] = sorted((d for d in dirs if not d.startswith(".")), key=natural_key) if recursive else []
            found += [os.path.join(root, f) for f in sorted(files, key=natural_key)
                      if not f.startswith(".") and f.lower().endswith(self.extensions)]
        if not found:
            raise ValueError(f"No image file ({', '.join(self.extensions)}) found under `path` {self.path!r}.")
        self.files, self.sizes, self.channels, self.skipped = [], [], [], []
        for file in found:
            try:
                size, channels = _header(file)
            except Exception as error:  # unreadable or corrupt: skip and list it
                self.skipped.append((file, error_reason(error)))
                continue
            self.files.append(file)
            self.sizes.append(size)
            self.channels.append(channels)
        if not self.files:
            raise ValueError(f"No readable image under `path` {self.path!r}; skipped {len(self.skipped)} "
                             f"file(s): {summarize_skipped(self.skipped)}.")
        counts = set(self.channels)
        self.num_channels = 3 if counts == {1, 3} else max(counts, key=self.channels.count)
        tops = [os.path.relpath(f, self.path).split(os.sep) for f in self.files]
        self.class_names = sorted({t[0] for t in tops if len(t) > 1}, key=natural_key)
        index = {name: i for i, name in enumerate(self.class_names)}
        self.labels = np.array([index[t[0]] if len(t) > 1 else -1 for t in tops], "int32")

    def __len__(self):
        return len(self.files)

    def __repr__(self):
        return f"ImageFolder({self.path!r}, images={len(self)}, skipped={len(self.skipped)})"

    def load(self, index):
        """Image `index` as float32 `(H, W, C)` with the file's own channels (`channels[index]`);
        raises ValueError naming the file if it does not decode."""
        try:
            return _decode(self.files[index])
        except Exception as error:
            raise ValueError(f"Cannot read {self.files[index]!r}: {error_reason(error)}") from error

    def subset(self, indices):
        """A view of images `indices` (e.g. a held-out split) without scanning again: same
        `path`, `num_channels`, `class_names` and the same `skipped` list (decode failures
        in either are recorded once, for both).

        Args:
            indices: a sequence of ints into `files`.

        Example: `heldout, train = folder.subset(range(8)), folder.subset(range(8, len(folder)))`.
        """
        indices = [int(i) for i in indices]
        if not indices or any(not 0 <= i < len(self) for i in indices):
            raise ValueError(f"`indices` must be a non-empty list of ints in [0, {len(self)}), got {indices!r:.80}.")
        view = object.__new__(ImageFolder)
        view.__dict__.update(self.__dict__)
        view.files = [self.files[i] for i in indices]
        view.sizes = [self.sizes[i] for i in indices]
        view.channels = [self.channels[i] for i in indices]
        view.labels = self.labels[indices]
        return view

    def mark_skipped(self, index, error):
        """Add file `index` to `skipped` (once) after a decode failure, with a warning."""
        path = self.files[index]
        if all(p != path for p, _ in self.skipped):
            self.skipped.append((path, error_reason(error)))
            warnings.warn(f"Skipping unreadable image {path!r}: {error_reason(error)}", stacklevel=2)

    def read(self, indices, image_size=None, num_channels=None):
        """Images `indices` as one float32 array (for figures and held-out checks).

        Args:
            indices: an int (gives `(H, W, C)`) or a sequence of ints (gives `(k, H, W, C)`).
            image_size: int or `(H, W)` to resize to (bilinear, antialiased); needed when
                the images differ in size.
            num_channels: 1 or 3 to convert to; None for `self.num_channels`.
        """
        single = isinstance(indices, (int, np.integer))
        images = [convert_channels(self.load(i), num_channels or self.num_channels).numpy()
                  for i in ([indices] if single else list(indices))]
        if image_size is not None:
            images = [resize_images(image, image_size, "resize").numpy() for image in images]
        elif len({im.shape for im in images}) > 1:
            raise ValueError(f"Images {indices!r} differ in size {sorted({im.shape for im in images})}; "
                             "pass `image_size`.")
        return images[0] if single else np.stack(images)

    def write_skipped(self, path):
        """Write the skipped files, one `path<TAB>reason` a line, to a new text file `path`
        (an existing file is never overwritten: FileExistsError). Returns the count."""
        with open(path, "x", encoding="utf-8") as handle:
            handle.writelines(f"{p}\t{r}\n" for p, r in self.skipped)
        return len(self.skipped)

    def channel_counts(self):
        """How many files have each channel count, e.g. `{1: 10, 3: 90}`."""
        return dict(sorted(collections.Counter(self.channels).items()))
