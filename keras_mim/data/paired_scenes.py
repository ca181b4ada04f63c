"""Generated scenes with true paired modalities: RGB, depth and a per-pixel class map (numpy
only), for MultiMAE demos and tests without a download.

Each scene is a floor (a plane that recedes towards the top of the image, so depth grows
upwards) with a few shapes standing in front of it (`moving_shapes.SHAPE_KINDS`: squares,
discs, triangles), each at its own depth, occluding by depth (a z-buffer):

- a square is a flat card facing the camera (constant depth),
- a disc is the visible half of a ball (depth smallest at its centre),
- a triangle is a card leaning back (depth grows towards its apex).

RGB: the floor is dim and slightly darker far away; a shape has a random bright colour,
shaded by its surface (a ball darkens towards its rim, a leaning card towards its top), so
depth and class leave traces in the colours, as in photographs. Depth is in scene units
(the floor from 4 to 8; a shape's nearest point between 1 and 3, all of it nearer than 3.8). The class map holds 0 for the floor and
1 + the kind index for the shapes (`CLASS_NAMES`).
"""

import numpy as np

from keras_mim.data.moving_shapes import SHAPE_KINDS, SHAPE_VALUES, shape_mask
from keras_mim.utils import check_positive_int, to_2tuple

#: Class index -> name of the class maps.
CLASS_NAMES = ("floor",) + SHAPE_KINDS
#: Depth of the floor at the bottom and at the top row; shapes stand in SHAPE_DEPTHS.
FLOOR_DEPTHS, SHAPE_DEPTHS = (4.0, 8.0), (1.0, 3.0)  # a shape adds at most 0.8 (a leaning card)
#: Shape half-size range, as a fraction of the shorter side.
SIZE_RANGE = (0.12, 0.3)


def paired_scenes(num_scenes, image_size=32, num_shapes=3, seed=0):
    """Scenes as a dict of float32 `rgb` `(n, H, W, 3)` in `[0, 1]`, float32 `depth`
    `(n, H, W, 1)` and int32 `semseg` `(n, H, W)` (classes `CLASS_NAMES`).

    The same arguments always give the same scenes; one `seed` draws every scene.

    Args:
        num_scenes: number of scenes, a positive int.
        image_size: int or `(H, W)`, each at least 8.
        num_shapes: shapes per scene, a positive int (they may overlap; the nearer wins).
        seed: non-negative int.

    Returns:
        dict `{"rgb", "depth", "semseg"}` of numpy arrays.

    Examples:
        >>> scenes = paired_scenes(4, image_size=16, seed=0)
        >>> {k: v.shape for k, v in scenes.items()}
        {'rgb': (4, 16, 16, 3), 'depth': (4, 16, 16, 1), 'semseg': (4, 16, 16)}
        >>> bool((scenes["depth"][..., 0][scenes["semseg"] > 0] < 4).all())  # shapes stand before the floor
        True
    """
    n = check_positive_int(num_scenes, "num_scenes")
    h, w = to_2tuple(image_size, "image_size")
    if min(h, w) < 8:
        raise ValueError(f"`image_size` must be at least 8 px per side, got {(h, w)}.")
    num_shapes = check_positive_int(num_shapes, "num_shapes")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"`seed` must be an int >= 0, got {seed!r}.")
    rng = np.random.default_rng(seed)
    ys = np.arange(h, dtype="float32")[None, :, None]
    xs = np.arange(w, dtype="float32")[None, None, :]
    up = 1.0 - ys / max(h - 1, 1)  # 0 at the bottom row, 1 at the top
    floor_depth = FLOOR_DEPTHS[0] + (FLOOR_DEPTHS[1] - FLOOR_DEPTHS[0]) * up  # (1, H, 1)
    depth = np.broadcast_to(floor_depth, (n, h, w)).astype("float32").copy()
    base = rng.uniform(0.1, 0.35, size=(n, 1, 1, 3)).astype("float32")
    rgb = np.broadcast_to(base * (1.0 - 0.4 * up[..., None]), (n, h, w, 3)).astype("float32").copy()
    semseg = np.zeros((n, h, w), "int32")
    side = min(h, w)
    for _ in range(num_shapes):
        kind = rng.integers(0, len(SHAPE_KINDS), size=n)
        r = np.maximum(2.0, rng.uniform(*SIZE_RANGE, size=n) * side).astype("float32")[:, None, None]
        cy = rng.uniform(r[:, 0, 0], h - 1 - r[:, 0, 0]).astype("float32")[:, None, None]
        cx = rng.uniform(r[:, 0, 0], w - 1 - r[:, 0, 0]).astype("float32")[:, None, None]
        near = rng.uniform(*SHAPE_DEPTHS, size=n).astype("float32")[:, None, None]
        colour = rng.uniform(*SHAPE_VALUES, size=(n, 1, 1, 3)).astype("float32")
        dy, dx = ys - cy, xs - cx
        surface = np.empty((n, h, w), "float32")
        shade = np.empty((n, h, w), "float32")
        inside = np.zeros((n, h, w), bool)
        for k, name in enumerate(SHAPE_KINDS):
            rows = np.flatnonzero(kind == k)
            if not rows.size:
                continue
            inside[rows] = shape_mask(name, dy[rows], dx[rows], r[rows])
            if name == "square":  # a flat card
                surface[rows], shade[rows] = near[rows], 1.0
            elif name == "disc":  # half a ball: the centre is nearest, the rim a radius farther
                z = np.sqrt(np.clip(1.0 - (dy[rows] ** 2 + dx[rows] ** 2) / r[rows] ** 2, 0.0, 1.0))
                surface[rows], shade[rows] = near[rows] + r[rows] / side * (1.0 - z), 0.45 + 0.55 * z
            else:  # a card leaning back: farther towards the apex (top)
                lean = (r[rows] - dy[rows]) / (2.0 * r[rows])  # 0 at the base, 1 at the apex
                surface[rows], shade[rows] = near[rows] + 0.8 * lean, 1.0 - 0.35 * lean
        drawn = inside & (surface < depth)
        depth = np.where(drawn, surface, depth)
        rgb = np.where(drawn[..., None], colour * shade[..., None], rgb)
        semseg = np.where(drawn, kind[:, None, None] + 1, semseg).astype("int32")
    return {"rgb": np.clip(rgb, 0.0, 1.0).astype("float32"), "depth": depth[..., None].astype("float32"),
            "semseg": semseg}
