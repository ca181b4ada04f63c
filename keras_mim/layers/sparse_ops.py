"""Sparse convolution by masking (SparK, ConvNeXt V2 FCMAE), written with `keras.ops`.

Both papers encode only the visible part of an image with a convolutional network by
treating hidden regions as empty: the official code uses sparse convolutions
(MinkowskiEngine in ConvNeXt V2) or zeroes hidden positions after every layer (SparK).
keras_mim does the latter everywhere: it needs no sparse-tensor library, keeps static
shapes for XLA, and is exact: a convolution reads hidden positions only as zeros, and
every output at a hidden position is set back to zero before the next layer reads it,
so nothing computed from hidden pixels reaches a visible position. Normalisation
statistics that span positions (batch norm, GRN) are taken over visible positions only.

The mask of a sparse encoder lives on its coarsest cell grid (32 px cells for the
four-stage ConvNeXt and ResNet); `cells_to_pixels` spreads it to any finer stage.
"""

from keras import ops


def cell_mask_to_active(mask, grid_shape):
    """A mask `(B, N)` (1 = hidden) over `grid_shape` `(gh, gw)` -> visible map
    `(B, gh, gw, 1)` float32 (1 = visible)."""
    gh, gw = grid_shape
    return 1.0 - ops.reshape(ops.cast(mask, "float32"), (-1, gh, gw, 1))


def cells_to_pixels(active, size):
    """Nearest upsampling of a visible map `(B, gh, gw, 1)` to `size` `(H, W)`, which must be
    whole multiples of the grid (a stage of a sparse encoder)."""
    gh, gw = active.shape[1], active.shape[2]
    h, w = size
    if h % gh or w % gw:
        raise ValueError(f"A stage of size {size} is not a whole multiple of the mask grid {(gh, gw)}.")
    if h != gh:
        active = ops.repeat(active, h // gh, axis=1)
    if w != gw:
        active = ops.repeat(active, w // gw, axis=2)
    return active


def resize_active(active, size):
    """A visible map `(B, h, w, 1)` at another resolution `size` `(H, W)` by nearest
    neighbour: repeated when `size` is a whole multiple of `(h, w)`, sampled every k-th
    position when `(h, w)` is a whole multiple of `size` (a finer map brought down to a
    stage: its cells are whole blocks, so every sample is exact)."""
    active = ops.convert_to_tensor(active)
    h, w = active.shape[1], active.shape[2]
    if (h, w) == tuple(size):
        return active
    if h % size[0] == 0 and w % size[1] == 0:
        kh, kw = h // size[0], w // size[1]
        active = ops.reshape(active, (-1, size[0], kh, size[1], kw, active.shape[-1]))
        return active[:, :, 0, :, 0, :]
    return cells_to_pixels(active, size)


def active_like(active, x):
    """The visible map `active` (any whole-multiple resolution) at the spatial size of
    `x` `(B, H, W, C)`, in `x`'s dtype; None stays None (dense mode)."""
    if active is None:
        return None
    return ops.cast(resize_active(active, tuple(x.shape[1:3])), x.dtype)


def apply_active(x, active):
    """`x` zeroed at hidden positions; `active` is the visible map at `x`'s size (or None)."""
    return x if active is None else ops.multiply(x, active)


def masked_moments(x, active, axes):
    """Mean and (biased) variance of `x` over `axes`, counting only visible positions.

    Args:
        x: a feature map `(B, H, W, C)`.
        active: `(B, H, W, 1)`, 1 = visible, or None (every position counts).
        axes: the axes to reduce (batch norm: `(0, 1, 2)`; GRN-like: `(1, 2)`).

    Returns:
        `(mean, variance)` in float32, with the reduced axes kept as size 1.
    """
    x = ops.cast(x, "float32")
    if active is None:
        mean = ops.mean(x, axis=axes, keepdims=True)
        return mean, ops.mean(ops.square(x - mean), axis=axes, keepdims=True)
    active = ops.cast(active, "float32")
    count = ops.maximum(ops.sum(active * ops.ones_like(x[..., :1]), axis=axes, keepdims=True), 1.0)
    mean = ops.sum(x * active, axis=axes, keepdims=True) / count
    var = ops.sum(ops.square(x - mean) * active, axis=axes, keepdims=True) / count
    return mean, var
