"""Hiera's token orders (unroll / reroll, Ryali et al., ICML 2023), written as static index
tables for `keras.ops`.

Hiera keeps its tokens "unrolled": the token grid `(th, tw)` is split `levels` times by the
pooling stride `s`, so that (official `Unroll`) a token's index in the sequence is
`j * U + unit`: `unit` is its mask unit (`s ** levels` tokens a side, row-major over the unit
grid, `U` units) and `j` holds its position inside the unit as the digits
`(d_0y, d_0x, d_1y, d_1x, ...)`, most significant first, where `y = sum_l d_ly * s ** l`
(level 0 is the finest). Then a 2D max pool over `s x s` is a max over the leading `s * s`
blocks of the sequence, mask-unit attention a reshape to `(..., units)`, and dropping hidden
mask units a gather of whole columns. After `p` pools the remaining digits describe a unit of
`s ** (levels - p)` tokens a side, in the same layout.

The official code reorders with chains of reshapes and permutes over a folded batch axis;
here each order is one static permutation computed with numpy (`unroll_order`,
`unit_positions`) and applied with `ops.take`: the same orders, one gather each.
"""

import numpy as np
from keras import ops


def unit_positions(stride, levels):
    """Within-unit `(y, x)` of each index `j` of the unrolled layout (see the module doc).

    Args:
        stride: the pooling stride `s` (int).
        levels: how many strides the unit spans (`levels` = 0: a unit of one token).

    Returns:
        int arrays `(ys, xs)`, each of length `s ** (2 * levels)`.
    """
    n = stride ** (2 * levels)
    j = np.arange(n)
    ys, xs = np.zeros(n, int), np.zeros(n, int)
    for level in range(levels):  # level 0 is the most significant digit pair of j
        digit = (j // stride ** (2 * (levels - 1 - level))) % (stride * stride)
        ys += (digit // stride) * stride ** level
        xs += (digit % stride) * stride ** level
    return ys, xs


def unroll_order(token_shape, stride, levels):
    """The row-major token index at each place of the unrolled sequence.

    `tokens[:, unroll_order(...)]` turns row-major tokens `(B, th * tw, C)` into Hiera's
    unrolled order (official `Unroll`); `np.argsort` of it is the way back.

    Args:
        token_shape: `(th, tw)`, each a multiple of `stride ** levels`.
        stride: pooling stride `s`.
        levels: number of strides (stages - 1).

    Returns:
        int array of length `th * tw`.

    Examples:
        >>> unroll_order((4, 4), 2, 1).reshape(4, 4).tolist()  # 4 units of 2 x 2 tokens
        [[0, 2, 8, 10], [1, 3, 9, 11], [4, 6, 12, 14], [5, 7, 13, 15]]
    """
    th, tw = token_shape
    unit = stride ** levels
    ys, xs = unit_positions(stride, levels)  # (J,)
    uy, ux = np.divmod(np.arange((th // unit) * (tw // unit)), tw // unit)  # (U,)
    rows = uy[None, :] * unit + ys[:, None]  # (J, U)
    cols = ux[None, :] * unit + xs[:, None]
    return (rows * tw + cols).reshape(-1)


def unroll(tokens, token_shape, stride, levels):
    """Row-major tokens `(B, th * tw, C)` -> the unrolled order `(B, th * tw, C)`."""
    return ops.take(tokens, unroll_order(token_shape, stride, levels), axis=1)


def keep_units(tokens, ids_keep, num_units):
    """Keep the tokens of the visible mask units (official: boolean indexing by the tiled mask).

    Args:
        tokens: unrolled tokens `(B, J * U, C)`.
        ids_keep: int `(B, K)`, the visible units.
        num_units: `U`.

    Returns:
        `(B, J * K, C)`: unit `ids_keep[:, k]` in column `k` of the unrolled layout.
    """
    j = tokens.shape[1] // num_units
    offsets = ops.reshape(ops.arange(j, dtype="int32") * num_units, (1, j, 1))
    ids = ops.expand_dims(ops.cast(ids_keep, "int32"), 1) + offsets  # (B, J, K)
    ids = ops.reshape(ids, (-1, j * ids_keep.shape[1], 1))
    return ops.take_along_axis(tokens, ids, axis=1)


def reroll(tokens, num_units, stride, levels):
    """Unrolled tokens of `num_units` units `(B, J * K, C)` -> `(B, K, u, u, C)`, each unit's
    tokens in spatial order (`u = stride ** levels` tokens a side; official `Reroll` with a mask).

    Examples:
        >>> import numpy as np
        >>> x = np.arange(16.0).reshape(1, 16, 1)[:, unroll_order((4, 4), 2, 1)]
        >>> ops.convert_to_numpy(reroll(x, 4, 2, 1))[0, :, :, :, 0].tolist()[0]
        [[0.0, 1.0], [4.0, 5.0]]
    """
    n, c = tokens.shape[1], tokens.shape[2]
    j = n // num_units
    ys, xs = unit_positions(stride, levels)
    u = stride ** levels
    x = ops.transpose(ops.reshape(tokens, (-1, j, num_units, c)), (0, 2, 1, 3))  # (B, K, J, C)
    x = ops.take(x, np.argsort(ys * u + xs), axis=2)  # spatial row-major inside each unit
    return ops.reshape(x, (-1, num_units, u, u, c))


def undo_windowing(units, unit_grid):
    """`(B, U, u, u, C)` units (row-major over `unit_grid` `(uh, uw)`) -> the map
    `(B, uh * u, uw * u, C)` (official `undo_windowing`)."""
    uh, uw = unit_grid
    u, c = units.shape[2], units.shape[-1]
    x = ops.reshape(units, (-1, uh, uw, u, u, c))
    x = ops.transpose(x, (0, 1, 3, 2, 4, 5))  # (B, uh, u, uw, u, C)
    return ops.reshape(x, (-1, uh * u, uw * u, c))


def pool_first(x, stride):
    """Max over the leading `stride` blocks of an unrolled sequence `(B, N, C)` ->
    `(B, N / stride, C)`: a `s x s` max pool when `stride = s * s` (official `do_pool`)."""
    if stride == 1:
        return x
    n, c = x.shape[1], x.shape[2]
    return ops.max(ops.reshape(x, (-1, stride, n // stride, c)), axis=1)
