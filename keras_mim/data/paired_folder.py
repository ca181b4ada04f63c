"""A folder of paired files, one file per modality of each item (`scene_0001_rgb.png`,
`scene_0001_depth.tif`, `scene_0001_semseg.png`), read as the dict of arrays that `MultiMAE`
trains on. Nothing is downloaded."""

import os
import warnings

import numpy as np

from keras_mim.data.decoding import error_reason, natural_key, summarize_skipped, write_skipped
from keras_mim.data.image_folder import IMAGE_EXTENSIONS, _decode, _walk, check_folder
from keras_mim.utils import modality_specs, to_2tuple


def _read_classes(path):
    """A class map: the integer values of a one-channel image (PNG palette / gray / 16-bit,
    integer TIFF), `(H, W)` int32."""
    if path.lower().endswith((".tif", ".tiff")):
        import tifffile

        array = tifffile.imread(path)
    else:
        from PIL import Image

        with Image.open(path) as image:
            if image.mode not in ("P", "L", "I", "I;16", "I;16B", "I;16L"):
                raise ValueError(f"a class map must be a one-channel image of class ids, got mode {image.mode}")
            array = np.asarray(image)
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"a class map must be a 2D integer image, got shape {array.shape} and dtype {array.dtype}")
    return array.astype("int32")


class PairedFolder:
    """The items of a folder whose files hold the modalities of each item, paired by name.

    A file `<item>_<modality>.<ext>` (any image extension, any sub-folder) is the
    `<modality>` of `<item>` (`scene_0001_rgb.png`, `scene_0001_depth.tif`); files whose
    name ends in no modality are ignored. An item keeps only if every modality has a file
    that reads: items missing a partner, and files that do not read, are skipped and listed
    in `skipped` as `(path, reason)` (with one warning), as `ImageFolder` skips files.

    Image modalities read as float32 `(H, W, C)`: 8-bit values / 255, 16-bit / 65535
    (MultiMAE's depth PNGs), float TIFFs as they are (depth in metres); one channel is
    repeated to 3 or 3 averaged to 1 where the spec asks. Class maps read as their integer
    values (palette, gray or 16-bit PNG, integer TIFF); values outside `[0, K)` are refused.
    Resizing (`image_size`): images bilinear with antialiasing, class maps nearest.

    Args:
        path: the folder.
        modalities: dict name -> channel count or `{"classes": K}`, as `MultiModalEncoder`.
        recursive: also scan sub-folders.

    Examples:
        >>> import tempfile
        >>> from PIL import Image
        >>> tmp = tempfile.TemporaryDirectory()
        >>> for i in range(2):
        ...     Image.new("RGB", (8, 8)).save(os.path.join(tmp.name, f"s{i}_rgb.png"))
        ...     Image.new("L", (8, 8), 1).save(os.path.join(tmp.name, f"s{i}_semseg.png"))
        >>> Image.new("RGB", (8, 8)).save(os.path.join(tmp.name, "s2_rgb.png"))  # no partner
        >>> with warnings.catch_warnings(record=True):  # one warning: s2 skipped
        ...     folder = PairedFolder(tmp.name, {"rgb": 3, "semseg": {"classes": 4}})
        >>> len(folder), {k: v.shape for k, v in folder.arrays().items()}, len(folder.skipped)
        (2, {'rgb': (2, 8, 8, 3), 'semseg': (2, 8, 8)}, 1)
        >>> tmp.cleanup()
    """

    def __init__(self, path, modalities, recursive=True):
        self.path = check_folder(path)
        self.modalities = modality_specs(modalities)
        found, self.skipped = _walk(self.path, IMAGE_EXTENSIONS, recursive)
        groups = {}
        for file in found:
            stem = os.path.splitext(os.path.basename(file))[0]
            item, _, modality = stem.rpartition("_")
            if item and modality in self.modalities:
                key = os.path.join(os.path.dirname(file), item)
                groups.setdefault(key, {})[modality] = file
        self.items, self.data = [], []
        for key in sorted(groups, key=natural_key):
            files = groups[key]
            missing = [m for m in self.modalities if m not in files]
            if missing:
                self.skipped += [(f, f"no {' or '.join(missing)} partner ({os.path.basename(key)}_{missing[0]}.*)")
                                 for f in files.values()]
                continue
            arrays = {}
            for m in self.modalities:
                try:
                    arrays[m] = self._read(m, files[m])
                except Exception as error:  # a file that does not decode, or the wrong kind of image
                    self.skipped.append((files[m], str(error) if isinstance(error, ValueError) else error_reason(error)))
                    break
            if len(arrays) == len(self.modalities):
                self.items.append(key)
                self.data.append(arrays)
        if not self.items:
            raise ValueError(f"No complete item under `path` {self.path!r}: every item needs files "
                             f"{', '.join(f'<item>_{m}.<ext>' for m in self.modalities)}; skipped "
                             f"{len(self.skipped)} file(s): {summarize_skipped(self.skipped)}.")
        if self.skipped:
            warnings.warn(self.report(), stacklevel=2)

    def report(self, listed_in="`.skipped`"):
        """One line on what the scan skipped, or "" when nothing was."""
        if not self.skipped:
            return ""
        return (f"paired folder {self.path!r}: skipped {len(self.skipped)} file(s) "
                f"({summarize_skipped(self.skipped, limit=2)}); all listed in {listed_in}.")

    def _read(self, modality, file):
        spec = self.modalities[modality]
        if "classes" in spec:
            array = _read_classes(file)
            if array.min() < 0 or array.max() >= spec["classes"]:
                raise ValueError(f"class ids in [{array.min()}, {array.max()}], not in [0, {spec['classes']})")
            return array
        array = _decode(file)
        channels = spec["channels"]
        if array.shape[-1] != channels:
            if array.shape[-1] == 1:
                array = np.repeat(array, channels, axis=-1)
            elif channels == 1 and array.shape[-1] == 3:
                array = array.mean(-1, keepdims=True)
            else:
                raise ValueError(f"{array.shape[-1]} channels, the {modality} modality takes {channels}")
        return array.astype("float32")

    def __len__(self):
        return len(self.items)

    def __repr__(self):
        return f"PairedFolder({self.path!r}, items={len(self)}, skipped={len(self.skipped)})"

    def arrays(self, image_size=None, indices=None):
        """The items (all, or `indices`) as a dict modality -> stacked array, resized to
        `image_size` (int or `(H, W)`; needed when the items differ in size)."""
        from skimage.transform import resize

        chosen = range(len(self)) if indices is None else indices
        size = None if image_size is None else to_2tuple(image_size, "image_size")
        out = {}
        for m, spec in self.modalities.items():
            arrays = [self.data[int(i)][m] for i in chosen]
            if size is not None:
                classes = "classes" in spec
                arrays = [a if a.shape[:2] == size else resize(a, size, order=0 if classes else 1, preserve_range=True,
                                                               anti_aliasing=not classes).astype(a.dtype)
                          for a in arrays]
            shapes = {a.shape for a in arrays}
            if len(shapes) > 1:
                raise ValueError(f"The {m} files differ in size {sorted(shapes)}; pass `image_size`.")
            out[m] = np.stack(arrays)
        return out

    def write_skipped(self, path):
        """Write the skipped files, one `path<TAB>reason` a line, to a new text file `path`
        (an existing file is never overwritten: FileExistsError). Returns the count."""
        return write_skipped(path, self.skipped)
