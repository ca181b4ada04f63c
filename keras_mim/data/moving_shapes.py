"""Synthetic video clips of coloured shapes moving over a dim background (numpy only).

The clips are generated on the fly from a seed, so tests and the video demos need no
download. Each shape (square, disc or triangle) has a random colour and size and moves with
a random constant velocity, bouncing off the borders of the frame; it always stays wholly
inside the frame.
"""

import numpy as np

from keras_mim.utils import check_positive_int, to_2tuple

#: Shape half-size (radius, half side) range, as a fraction of the shorter image side.
SIZE_RANGE = (0.12, 0.25)

#: Speed range in pixels per frame, as a fraction of the shorter image side.
SPEED_RANGE = (0.02, 0.08)

#: Every channel of a shape's colour is drawn in this range ...
SHAPE_VALUES = (0.55, 1.0)

#: ... and every channel of the background (a constant plus a faint linear gradient) stays
#: in this range, so `clip.min(axis=-1) > 0.5` tells shape pixels from background pixels.
BACKGROUND_VALUES = (0.0, 0.4)

SHAPE_KINDS = ("square", "disc", "triangle")

# Clips rendered per chunk: bounds the temporary (chunk, T, H, W) masks.
_CHUNK = 256


def moving_shapes(num_clips, num_frames=16, image_size=32, num_channels=3, num_shapes=2, seed=0):
    """Generate clips of moving shapes as a float32 array `(num_clips, T, H, W, C)` in `[0, 1]`.

    Every clip has its own dim background (a random constant colour plus a faint linear
    gradient in a random direction, every channel in `BACKGROUND_VALUES`) and `num_shapes`
    shapes, each a square, disc or upward triangle (chosen at random) with:

    - a half-size (radius) drawn in `SIZE_RANGE` times the shorter side (at least 1 px),
    - a colour with every channel in `SHAPE_VALUES` (brighter than any background pixel),
    - a start position with the whole shape inside the frame,
    - a constant velocity of random direction and speed drawn in `SPEED_RANGE` times the
      shorter side (pixels per frame); a shape bounces off the borders (its centre is
      reflected in the interval that keeps the shape inside), so it never leaves the frame
      and never moves more than its speed between two frames.

    Later shapes are drawn over earlier ones. No anti-aliasing: shape pixels take the shape
    colour exactly. The same arguments always give the same clips.

    Args:
        num_clips: number of clips, a positive int.
        num_frames: frames per clip `T`, a positive int.
        image_size: int or `(H, W)` pair, each at least 4.
        num_channels: `C`, a positive int; 1 gives grayscale clips, 3 RGB, more gives
            multispectral-like clips (every channel drawn independently).
        num_shapes: shapes per clip, a positive int.
        seed: non-negative int fixing every random choice.

    Returns:
        A float32 numpy array `(num_clips, num_frames, H, W, num_channels)` in `[0, 1]`.

    Raises:
        ValueError: a bad argument (named in the message).

    Examples:
        >>> clips = moving_shapes(4, num_frames=8, image_size=32, seed=0)
        >>> clips.shape, str(clips.dtype)
        ((4, 8, 32, 32, 3), 'float32')
        >>> moving_shapes(2, image_size=(16, 24), num_channels=1).shape
        (2, 16, 16, 24, 1)
        >>> bool((moving_shapes(2, seed=3) == moving_shapes(2, seed=3)).all())
        True
    """
    check_positive_int(num_clips, "num_clips")
    check_positive_int(num_frames, "num_frames")
    check_positive_int(num_channels, "num_channels")
    check_positive_int(num_shapes, "num_shapes")
    height, width = to_2tuple(image_size, "image_size")
    if min(height, width) < 4:
        raise ValueError(f"`image_size` must be at least 4 pixels per side, got {(height, width)}.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"`seed` must be a non-negative int, got {seed!r}.")

    params = _draw_parameters(np.random.default_rng(int(seed)), num_clips, num_frames,
                              height, width, num_channels, num_shapes)
    out = np.empty((num_clips, num_frames, height, width, num_channels), dtype="float32")
    for start in range(0, num_clips, _CHUNK):
        part = slice(start, min(start + _CHUNK, num_clips))
        _render({k: v[part] for k, v in params.items()}, out[part])
    return out


def _draw_parameters(rng, n, num_frames, height, width, channels, shapes):
    """Every random quantity of `n` clips, as arrays with a leading clip axis."""
    side = min(height, width)
    radius = np.maximum(1.0, rng.uniform(*SIZE_RANGE, size=(n, shapes)) * side)
    radius = np.minimum(radius, (side - 1) / 2.0)  # room for the whole shape
    speed = rng.uniform(*SPEED_RANGE, size=(n, shapes)) * side
    angle = rng.uniform(0.0, 2.0 * np.pi, size=(n, shapes))
    # The centre moves in [radius, size - 1 - radius] (pixel centres at 0 .. size - 1).
    low = radius
    high_y, high_x = height - 1 - radius, width - 1 - radius
    start_y = rng.uniform(low, high_y)
    start_x = rng.uniform(low, high_x)
    t = np.arange(num_frames, dtype="float64")[None, None, :]
    centre_y = _bounce(start_y[..., None] + (speed * np.sin(angle))[..., None] * t, low[..., None], high_y[..., None])
    centre_x = _bounce(start_x[..., None] + (speed * np.cos(angle))[..., None] * t, low[..., None], high_x[..., None])

    base = rng.uniform(BACKGROUND_VALUES[0], BACKGROUND_VALUES[1] - 0.1, size=(n, channels))
    gradient_angle = rng.uniform(0.0, 2.0 * np.pi, size=n)
    return {
        "kind": rng.integers(0, len(SHAPE_KINDS), size=(n, shapes)),
        "radius": radius,
        "colour": rng.uniform(*SHAPE_VALUES, size=(n, shapes, channels)),
        "centre_y": centre_y,  # (n, shapes, T)
        "centre_x": centre_x,
        "background": base,
        "gradient": np.stack([np.sin(gradient_angle), np.cos(gradient_angle)], axis=-1),
    }


def _bounce(position, low, high):
    """Reflect unbounded positions into `[low, high]` (a triangle wave; 1-Lipschitz)."""
    span = high - low
    folded = np.mod(position - low, 2.0 * span)
    return low + span - np.abs(folded - span)


def _render(params, out):
    """Draw the clips described by `params` into `out` `(n, T, H, W, C)`, in place."""
    n, num_frames, height, width, _ = out.shape
    ys = np.arange(height, dtype="float32")
    xs = np.arange(width, dtype="float32")
    # Background: constant + a faint gradient (at most +-0.035) shared by all frames.
    ramp = (params["gradient"][:, 0, None, None] * (ys[None, :, None] / max(height - 1, 1) - 0.5)
            + params["gradient"][:, 1, None, None] * (xs[None, None, :] / max(width - 1, 1) - 0.5))
    out[:] = (params["background"][:, None, None, :] + 0.05 + 0.05 * ramp[..., None])[:, None]
    inside = np.empty((n, num_frames, height, width), dtype=bool)
    for s in range(params["kind"].shape[1]):  # later shapes are drawn over earlier ones
        dy = ys[None, None, :, None] - params["centre_y"][:, s, :, None, None].astype("float32")
        dx = xs[None, None, None, :] - params["centre_x"][:, s, :, None, None].astype("float32")
        r = params["radius"][:, s, None, None, None].astype("float32")
        for k, kind in enumerate(SHAPE_KINDS):
            rows = np.flatnonzero(params["kind"][:, s] == k)
            if rows.size:
                inside[rows] = shape_mask(kind, dy[rows], dx[rows], r[rows])
        colour = params["colour"][:, s, None, None, None, :].astype("float32")
        np.copyto(out, colour, where=inside[..., None])


def shape_mask(kind, dy, dx, r):
    """Boolean mask `(n, T, H, W)` of the pixels covered by a shape of half-size `r`."""
    if kind == "square":
        return (np.abs(dy) <= r) & (np.abs(dx) <= r)
    if kind == "disc":
        return dy * dy + dx * dx <= r * r
    # Upward triangle: apex at dy = -r, base of half-width r at dy = +r.
    return (dy >= -r) & (dy <= r) & (2.0 * np.abs(dx) <= dy + r)
