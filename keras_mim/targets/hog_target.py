"""MaskFeat's target: per-patch histograms of oriented gradients (HOG)."""

import math

import keras
import numpy as np
from keras import ops

from keras_mim.targets.target import Target
from keras_mim.utils import check_image_size, check_positive_int, to_2tuple

GRADIENTS = ("sobel", "central")


def _reflect_pad(x, axis):
    """Pad one pixel on both sides of `axis` by reflection (torch's `mode="reflect"`)."""
    n = x.shape[axis]
    first = ops.take(x, [1], axis=axis)
    last = ops.take(x, [n - 2], axis=axis)
    return ops.concatenate([first, x, last], axis=axis)


def _slice(x, axis, start, stop):
    index = [slice(None)] * 4
    index[axis] = slice(start, stop)
    return x[tuple(index)]


def sobel_gradients(x):
    """MaskFeat's gradients of `(B, H, W, C)` images, per channel, reflect padding.

    Cross-correlation with `[[1, 0, -1], [2, 0, -2], [1, 0, -1]]` (`gx`) and its
    transpose (`gy`), as SlowFast's `HOGLayerC`: `gx` is (left - right) smoothed over
    rows, `gy` is (top - bottom) smoothed over columns. Returns `(gx, gy)`.
    """
    p = _reflect_pad(_reflect_pad(x, 1), 2)  # (B, H+2, W+2, C)
    d_col = _slice(p, 2, None, -2) - _slice(p, 2, 2, None)  # (B, H+2, W, C): left - right
    gx = _slice(d_col, 1, None, -2) + 2.0 * _slice(d_col, 1, 1, -1) + _slice(d_col, 1, 2, None)
    d_row = _slice(p, 1, None, -2) - _slice(p, 1, 2, None)  # (B, H, W+2, C): top - bottom
    gy = _slice(d_row, 2, None, -2) + 2.0 * _slice(d_row, 2, 1, -1) + _slice(d_row, 2, 2, None)
    return gx, gy


def central_gradients(x):
    """scikit-image's gradients of `(B, H, W, C)` images: `[-1, 0, 1]` along rows and
    columns, zero on the first and last row (`g_row`) and column (`g_col`)."""

    def along(axis):
        n = x.shape[axis]
        if n < 3:
            return ops.zeros_like(x)
        inner = _slice(x, axis, 2, None) - _slice(x, axis, None, -2)
        zero = ops.zeros_like(_slice(x, axis, 0, 1))
        return ops.concatenate([zero, inner, zero], axis=axis)

    return along(1), along(2)  # (g_row, g_col)


def gaussian_window(size):
    """MaskFeat's separable Gaussian weights `(h, w)`: std `side // 2` around the window
    centre, scaled to mean 1 (MaskFeat scales to sum 1; histograms are L2-normalised,
    so only the role of `eps` differs)."""

    def one_d(n):
        t = (np.arange(n, dtype="float64") - (n - 1) / 2.0) / max(n // 2, 1)
        return np.exp(-0.5 * t**2)

    kern = np.outer(one_d(size[0]), one_d(size[1]))
    return (kern / kern.mean()).astype("float32")


@keras.saving.register_keras_serializable(package="keras_mim")
class HOGTarget(Target):
    """Histograms of oriented gradients per patch, MaskFeat's target.

    Per channel, the image gradient at every pixel votes with its magnitude into one of
    `orientations` bins of its unsigned orientation (180 degrees split evenly, hard
    assignment), optionally weighted by a Gaussian window; votes are averaged over
    cells of `cell_size` pixels and each cell's histogram is L2-normalised,
    `h / sqrt(sum(h ** 2) + eps ** 2)`. HOG is computed on the whole image (gradients
    cross patch borders), then cut into patches.

    Token order is the row-major patch order of `patchify`. Inside a token the
    `(ph / cell) * (pw / cell) * orientations * C` values are ordered
    (channel, orientation bin, cell row, cell column), the last fastest, as MaskFeat
    (SlowFast `_get_hog_label_2d`): 108 values for a 16 px RGB patch with 8 px cells.

    Gradients:
        `"sobel"`: MaskFeat (SlowFast `HOGLayerC`): Sobel kernels, reflect padding,
        bin `floor(atan2(gx, gy) * orientations / pi) mod orientations`, i.e. the
        gradient angle measured from the image's vertical axis.
        `"central"`: scikit-image `hog`: `[-1, 0, 1]` differences, zero gradient on
        the image border, bin `i` holds angles `atan2(g_row, g_col)` (degrees, mod 180)
        in `[i, i + 1) * 180 / orientations`, measured from the horizontal axis. With
        `cells_per_block=(1, 1)` and `block_norm="L2"` it matches `skimage.feature.hog`
        on each channel.

    Differences from MaskFeat: cells average their votes instead of summing them and the
    norm is `sqrt(|h|^2 + eps^2)` instead of `max(|h|, 1e-12)` (scikit-image's form):
    after normalisation the two agree except on near-flat cells, which here shrink to
    zero instead of blowing noise up to unit length.

    Args:
        orientations: number of orientation bins over 180 degrees (MaskFeat: 9).
        cell_size: int or `(h, w)`, the cell in pixels (MaskFeat: 8); must divide the
            patch size.
        gradient: `"sobel"` (MaskFeat) or `"central"` (scikit-image), see above.
        gaussian_window: False (no weighting, SlowFast's MaskFeat), True (one Gaussian
            window per patch, std half its side: mmselfsup's MaskFeat with window 16 on
            16 px patches), or an int window side that divides the patch size.
        eps: added (squared) to the squared norm of each histogram (scikit-image: 1e-5).
        **kwargs: standard layer arguments.

    Examples:
        >>> import numpy as np
        >>> target = HOGTarget(cell_size=4)
        >>> t = target(np.random.rand(2, 16, 16, 3).astype("float32"), patch_size=8)
        >>> tuple(t.shape), target.output_dim(8, 3)
        ((2, 4, 108), 108)
    """

    def __init__(self, orientations=9, cell_size=8, gradient="sobel", gaussian_window=False,
                 eps=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.orientations = check_positive_int(orientations, "orientations")
        self.cell_size = to_2tuple(cell_size, "cell_size")
        if gradient not in GRADIENTS:
            raise ValueError(f"`gradient` must be one of {GRADIENTS}, got {gradient!r}.")
        self.gradient = gradient
        if not isinstance(gaussian_window, bool):
            check_positive_int(gaussian_window, "gaussian_window")
        self.gaussian_window = gaussian_window
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
            raise ValueError(f"`eps` must be a float > 0, got {eps!r}.")
        self.eps = float(eps)

    def window_size(self, patch_size):
        """The Gaussian window `(h, w)` for this patch size, or None without one."""
        if self.gaussian_window is False:
            return None
        if self.gaussian_window is True:
            return tuple(patch_size)
        return (self.gaussian_window, self.gaussian_window)

    def output_dim(self, patch_size, num_channels):
        ph, pw = to_2tuple(patch_size, "patch_size")
        ch, cw = self.cell_size
        if ph % ch or pw % cw:
            raise ValueError(
                f"The HOG target pools gradients over cells of {self.cell_size} px, which "
                f"must divide the patch size, got patch size {(ph, pw)}; use patches that "
                f"are a multiple of the cell (MaskFeat: 16 px patches, 8 px cells) or "
                f"`HOGTarget(cell_size=...)` dividing {(ph, pw)}."
            )
        window = self.window_size((ph, pw))
        if window is not None and (ph % window[0] or pw % window[1]):
            raise ValueError(
                f"`gaussian_window`={self.gaussian_window} must divide the patch size {(ph, pw)}."
            )
        return (ph // ch) * (pw // cw) * self.orientations * check_positive_int(num_channels, "num_channels")

    def histograms(self, images, weight=None):
        """Normalised cell histograms `(B, H / ch, W / cw, C, orientations)`, float32.

        Args:
            images: `(B, H, W, C)`, H and W multiples of the cell size.
            weight: optional per-pixel vote weights `(H, W)` (the Gaussian window).
        """
        x = ops.cast(images, "float32")
        _, h, w, c = x.shape
        ch, cw = self.cell_size
        check_image_size((h, w), (ch, cw), "image size (for HOG cells)")
        if self.gradient == "sobel":
            if h < 2 or w < 2:
                raise ValueError(f"Sobel gradients with reflect padding need at least 2 x 2 px, got {(h, w)}.")
            ga, gb = sobel_gradients(x)  # (gx, gy): angle from the vertical axis, as HOGLayerC
        else:
            ga, gb = central_gradients(x)  # (g_row, g_col): angle from the horizontal axis
        magnitude = ops.sqrt(ga * ga + gb * gb)  # (B, H, W, C)
        if weight is not None:
            magnitude = magnitude * ops.convert_to_tensor(weight[None, :, :, None], "float32")
        k = self.orientations
        angle = ops.arctan2(ga, gb)  # (-pi, pi]
        bins = ops.mod(ops.cast(ops.floor(angle * (k / math.pi)), "int32"), k)  # unsigned: mod 180 degrees
        votes = ops.one_hot(bins, k, dtype="float32") * magnitude[..., None]  # (B, H, W, C, K)
        cells = ops.reshape(votes, (-1, h // ch, ch, w // cw, cw, c, k))
        cells = ops.mean(cells, axis=(2, 4))  # (B, H/ch, W/cw, C, K)
        norm = ops.sqrt(ops.sum(ops.square(cells), axis=-1, keepdims=True) + self.eps**2)
        return cells / norm

    def call(self, images, patch_size):
        ph, pw = to_2tuple(patch_size, "patch_size")
        _, h, w, c = images.shape
        gh, gw = check_image_size((h, w), (ph, pw))
        self.output_dim((ph, pw), c)  # the cell (and window) must divide the patch
        window = self.window_size((ph, pw))
        weight = None if window is None else np.tile(gaussian_window(window), (h // window[0], w // window[1]))
        hist = self.histograms(images, weight)  # (B, H/ch, W/cw, C, K)
        cph, cpw = ph // self.cell_size[0], pw // self.cell_size[1]
        x = ops.reshape(hist, (-1, gh, cph, gw, cpw, c, self.orientations))
        x = ops.transpose(x, (0, 1, 3, 5, 6, 2, 4))  # (B, gh, gw, C, K, cell row, cell col)
        return ops.reshape(x, (-1, gh * gw, c * self.orientations * cph * cpw))

    def get_config(self):
        config = super().get_config()
        config.update(orientations=self.orientations, cell_size=self.cell_size, gradient=self.gradient,
                      gaussian_window=self.gaussian_window, eps=self.eps)
        return config
