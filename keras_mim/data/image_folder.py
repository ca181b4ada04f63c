"""A folder of image files (X-rays, satellite tiles, lab photos), scanned once and read
as float32 `(H, W, C)` arrays in `[0, 1]`. Nothing is downloaded."""

import collections
import os
import warnings

import numpy as np

from keras_mim.data.checks import float_range_problem, truncation_reason
from keras_mim.data.conversions import convert_channels, resize_images
from keras_mim.data.decoding import (
    GRAY_MODES,
    error_reason,
    exif_orientation,
    make_upright,
    natural_key,
    pil_to_array,
    summarize_skipped,
    upright_size,
    write_skipped,
)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
_TIFF_EXTENSIONS = (".tif", ".tiff")
# Formats whose completeness `truncation_reason` checks from the file's end; files of other
# formats (BMP, GIF, TIFFs read by Pillow) are small or raw, and are decoded once when scanned.
_END_CHECKED = ("JPEG", "PNG", "WEBP")


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


def _check_float_pixels(array):
    """Raise ValueError with the range found and the fix if float pixels are not in [0, 1],
    or if some are NaN or inf."""
    if np.issubdtype(array.dtype, np.floating) and array.size:
        if not np.isfinite(array).all():
            raise ValueError("non-finite pixel values (NaN or inf)")
        problem = float_range_problem(float(array.min()), float(array.max()))
        if problem:
            raise ValueError(problem)


def _scan_tiff(path, tifffile):
    """`((H, W), channels)` of a TIFF from its tags; raises if its pixel data runs past the
    end of the file, or if its float pixels (read once) are not in [0, 1]."""
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        size, channels, _ = _tiff_layout(series)
        ends = [o + c for page in series.pages if page is not None
                for o, c in zip(page.dataoffsets, page.databytecounts) if c]
        if ends and max(ends) > tif.filehandle.size:
            raise ValueError(f"truncated TIFF: its pixel data runs to byte {max(ends)}, the file has "
                             f"{tif.filehandle.size}")
        if np.issubdtype(series.dtype, np.floating):
            _check_float_pixels(series.asarray())
    return size, min(channels, 3) if channels == 4 else channels  # RGBA: alpha dropped


def _scan(path):
    """`((H, W), channels, animated)` of one file: the size once turned upright by its EXIF
    orientation, from the header, after the checks that the file is complete (see
    `_END_CHECKED`) and that float pixels are in [0, 1]; raises with the reason otherwise."""
    if path.lower().endswith(_TIFF_EXTENSIONS) and _tifffile() is not None:
        return _scan_tiff(path, _tifffile()) + (False,)
    from PIL import Image

    with Image.open(path) as image:
        orientation = exif_orientation(image)
        size, channels = upright_size(image, orientation), 1 if image.mode in GRAY_MODES else 3
        animated = bool(getattr(image, "is_animated", False))
        reason = truncation_reason(path, image.format)
        if reason:
            raise ValueError(reason)
        if image.format not in _END_CHECKED or image.mode == "F":
            image.load()
            if image.mode == "F":
                _check_float_pixels(np.asarray(image))
    return size, channels, animated


def _decode(path):
    """The whole image as float32 `(H, W, C)` (C = 1, 3 or a TIFF's own count), turned
    upright by its EXIF orientation; raises if the file does not decode or holds
    non-finite values."""
    if path.lower().endswith(_TIFF_EXTENSIONS) and _tifffile() is not None:
        with _tifffile().TiffFile(path) as tif:
            _, channels, channels_first = _tiff_layout(tif.series[0])
            cmyk = channels == 4 and tif.pages[0].photometric == 5  # SEPARATED: CMYK inks
            array = tif.series[0].asarray()
        array = np.moveaxis(array, 0, -1) if channels_first else array.reshape(array.shape[:2] + (-1,))
        array = _scale_array(array)
        if channels == 4:  # RGBA: alpha dropped; CMYK: to RGB as Pillow, (1 - C) (1 - K)
            array = (1 - array[..., :3]) * (1 - array[..., 3:]) if cmyk else array[..., :3]
    else:
        from PIL import Image

        with Image.open(path) as image:
            orientation = exif_orientation(image)
            image.load()
            array = pil_to_array(make_upright(image, orientation))
    if not np.isfinite(array).all():
        raise ValueError("non-finite pixel values (NaN or inf)")
    return array


def _walk(root, extensions, recursive):
    """The image files under `root` in natural order, following symlinked folders, and the
    symlinked folders not followed because they lead back to a folder being scanned (a
    loop), as `(path, reason)`."""
    found, loops = [], []
    chains = {root: (os.path.realpath(root),)}  # each folder's real path and its parents'
    for folder, dirs, files in os.walk(root, followlinks=True):
        chain = chains.pop(folder)
        kept = []
        for name in sorted((d for d in dirs if not d.startswith(".")), key=natural_key) if recursive else []:
            path = os.path.join(folder, name)
            real = os.path.realpath(path)
            if real in chain:
                loops.append((path, f"symlink loop: leads back to {real!r}, which is being scanned; not followed"))
                continue
            chains[path] = chain + (real,)
            kept.append(name)
        dirs[:] = kept
        found += [os.path.join(folder, f) for f in sorted(files, key=natural_key)
                  if not f.startswith(".") and f.lower().endswith(extensions)]
    return found, loops


def check_folder(path):
    """`path` as a str after checking it names an existing folder (TypeError / FileNotFoundError /
    ValueError naming it otherwise)."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"`path` must be a str or path-like folder, got {type(path).__name__} {path!r:.80}.")
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"`path` {path!r} does not exist.")
    if not os.path.isdir(path):
        raise ValueError(f"`path` must be a folder, got the file {path!r}.")
    return path


def folder_classes(root, files):
    """`(class_names, labels)`: the first-level subfolders of `root` holding `files`, in natural
    order, and each file's class index (int32; -1 for a file directly in `root`)."""
    tops = [os.path.relpath(f, root).split(os.sep) for f in files]
    class_names = sorted({t[0] for t in tops if len(t) > 1}, key=natural_key)
    index = {name: i for i, name in enumerate(class_names)}
    return class_names, np.array([index[t[0]] if len(t) > 1 else -1 for t in tops], "int32")


class ImageFolder:
    """The image files found under a folder, scanned once (headers and file ends, not pixels).

    Files with the extensions `.png .jpg .jpeg .bmp .gif .tif .tiff .webp` (any case) are
    taken, recursively (symlinked folders are followed; one that leads back to a folder being
    scanned, a loop, is skipped and listed), in natural order (`img2` before `img10`); hidden
    files and folders and other extensions are ignored. Names may hold spaces and non-ASCII
    characters.

    What is skipped, and listed in `skipped` as `(path, reason)` with one warning in all:
    files whose header does not read (e.g. a text file named `x.png`); files whose body is
    cut short (a JPEG without its end-of-image marker, a PNG without its IEND chunk, a WebP
    shorter than its header says, a TIFF whose pixel data runs past its end: found from the
    file's end, without decoding; BMP and GIF files are decoded once); float images whose
    pixels are not in `[0, 1]` (see below). Files that still fail to decode later are
    skipped then (`image_dataset` adds them here, with a warning each).

    Pixels (the policy of `keras_mim.data.image_dataset`): 8-bit images are divided by 255,
    16-bit PNG/TIFF by 65535 (Pillow reads a 16-bit colour PNG at 8 bits, its high byte: within
    1/255 of that; save it as a 16-bit TIFF to keep every bit), float TIFFs are kept as
    stored and must be in `[0, 1]` (read once when scanned; one outside `[-0.5, 1.5]`, or
    with NaN or inf, is skipped with the range found: rescale it, or save it as 16-bit).
    JPEG and WebP files are turned upright by their EXIF orientation, so `sizes` are the
    upright sizes. CMYK images (JPEG, TIFF) are converted to RGB as Pillow does.
    Animated files (GIF, WebP, APNG) give their first frame; they are listed in `animated`
    and the warning says so. Grayscale files give 1 channel, colour ones 3 (alpha dropped,
    palettes expanded), TIFFs their own count (multispectral tiles keep every band; read
    with `tifffile` when installed).

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
        path: the folder scanned.
        files: the image paths taken (list).
        sizes: each file's `(H, W)`.
        channels: each file's channel count.
        num_channels: the folder's channel count (see above).
        class_names: the first-level subfolder names, sorted.
        labels: each file's class index (int array; -1 directly in `path`).
        skipped: `(path, reason)` of each file skipped.
        animated: the animated files, read as their first frame.
        skipped_log: None, or a text file each file skipped while decoding is appended to.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: `path` is not a folder, holds no image file, or no readable one (the
            error summarises the skipped files).

    Examples:
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

    skipped_log = None

    def __init__(self, path, extensions=None, recursive=True):
        self.path = check_folder(path)
        if extensions is None:
            extensions = IMAGE_EXTENSIONS
        if isinstance(extensions, str) or not all(isinstance(e, str) and e for e in extensions):
            raise ValueError(f"`extensions` must be a list of extensions such as ['.png'], got {extensions!r}.")
        self.extensions = tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)
        if not isinstance(recursive, bool):
            raise TypeError(f"`recursive` must be a bool, got {recursive!r}.")
        found, self.skipped = _walk(self.path, self.extensions, recursive)
        if not found:
            raise ValueError(f"No image file ({', '.join(self.extensions)}) found under `path` {self.path!r}.")
        self.files, self.sizes, self.channels, self.animated = [], [], [], []
        for file in found:
            try:
                size, channels, animated = _scan(file)
            except Exception as error:  # unreadable, incomplete or out of range: skip and list it
                self.skipped.append((file, error_reason(error)))
                continue
            self.files.append(file)
            self.sizes.append(size)
            self.channels.append(channels)
            if animated:
                self.animated.append(file)
        if not self.files:
            raise ValueError(f"No readable image under `path` {self.path!r}; skipped {len(self.skipped)} "
                             f"file(s): {summarize_skipped(self.skipped)}.")
        counts = set(self.channels)
        self.num_channels = 3 if counts == {1, 3} else max(counts, key=self.channels.count)
        self.class_names, self.labels = folder_classes(self.path, self.files)
        if self.report():
            warnings.warn(self.report(), stacklevel=2)

    def __len__(self):
        return len(self.files)

    def __repr__(self):
        return f"ImageFolder({self.path!r}, images={len(self)}, skipped={len(self.skipped)})"

    def report(self, listed_in="`.skipped`"):
        """One line on what the scan skipped and which files give only their first frame,
        or "" when there is nothing to say; `listed_in` says where the full list is."""
        parts = []
        if self.skipped:
            parts.append(f"skipped {len(self.skipped)} file(s) or folder(s) that are not complete, readable "
                         f"images ({summarize_skipped(self.skipped, limit=2)}); all listed in {listed_in}")
        if self.animated:
            parts.append(f"{len(self.animated)} animated file(s) (e.g. {self.animated[0]!r}) give their first "
                         "frame only")
        return f"image folder {self.path!r}: " + "; ".join(parts) + "." if parts else ""

    def load(self, index):
        """Image `index` as float32 `(H, W, C)` with the file's own channels (`channels[index]`),
        scaled and turned upright as the class docstring says; raises ValueError naming the
        file if it does not decode."""
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
        """Add file `index` to `skipped` (once) after a decode failure, with a warning; append
        it to the file `skipped_log` too when one is set (a run folder's skipped_files.txt)."""
        path = self.files[index]
        if all(p != path for p, _ in self.skipped):
            self.skipped.append((path, error_reason(error)))
            where = "`skipped`"
            if self.skipped_log is not None:
                with open(self.skipped_log, "a", encoding="utf-8") as handle:
                    handle.write(f"{path}\t{error_reason(error)}\n")
                where = self.skipped_log
            warnings.warn(f"Skipping unreadable image {path!r}: {error_reason(error)} (added to {where})",
                          stacklevel=2)

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
        return write_skipped(path, self.skipped)

    def channel_counts(self):
        """How many files have each channel count, e.g. `{1: 10, 3: 90}`."""
        return dict(sorted(collections.Counter(self.channels).items()))
