"""Offline point clouds for demos and tests: points sampled on the surfaces of generated
parametric shapes, with classes. Nothing is downloaded.

No installed package ships a set of meshes with classes: trimesh's wheel holds none, open3d
and vedo download theirs, and pyvista's wheel bundles four surface meshes (airplane, ant,
nut, sphere; it needs VTK to read them), too few objects for a probe. So the shapes are
generated: surfaces sampled uniformly by area, then a random anisotropic scale, rotation and
noise, normalised as Point-MAE's `pc_norm` (centred, inside the unit sphere).
"""

import numpy as np

SHAPE_CLASSES = ("sphere", "cube", "cylinder", "cone", "torus", "pyramid")


def _surface(name, n, rng):
    """`(n, 3)` points uniform on the surface of a unit-sized `name`."""
    u, v = rng.random(n), rng.random(n)
    if name == "sphere":
        x = rng.standard_normal((n, 3))
        return x / np.linalg.norm(x, axis=1, keepdims=True)
    if name == "cube":
        x = rng.uniform(-1, 1, (n, 3))
        axis, side = rng.integers(0, 3, n), rng.choice([-1.0, 1.0], n)
        x[np.arange(n), axis] = side
        return x
    if name == "cylinder":  # side 4 pi (r 1, h 2), caps 2 pi: a third of the points on the caps
        theta, cap = 2 * np.pi * u, rng.random(n) < 1 / 3
        r = np.where(cap, np.sqrt(v), 1.0)
        z = np.where(cap, rng.choice([-1.0, 1.0], n), 2 * v - 1)
        return np.stack([r * np.cos(theta), r * np.sin(theta), z], 1)
    if name == "cone":  # lateral surface (r 1, h 2) and base, by area
        theta = 2 * np.pi * u
        lateral, base = np.pi * np.sqrt(5.0), np.pi
        on_base = rng.random(n) < base / (lateral + base)
        r = np.sqrt(v)  # uniform on the disc, and on the cone's unrolled sector
        z = np.where(on_base, -1.0, 1.0 - 2 * r)
        return np.stack([r * np.cos(theta), r * np.sin(theta), z], 1)
    if name == "torus":  # R 1, r 0.35; rejection on the tube angle for uniform area
        big, small = 1.0, 0.35
        phi = 2 * np.pi * u
        psi = np.empty(n)
        filled = 0
        while filled < n:
            cand = 2 * np.pi * rng.random(2 * n)
            keep = cand[rng.random(2 * n) < (big + small * np.cos(cand)) / (big + small)]
            take = keep[: n - filled]
            psi[filled : filled + len(take)] = take
            filled += len(take)
        ring = big + small * np.cos(psi)
        return np.stack([ring * np.cos(phi), ring * np.sin(phi), small * np.sin(psi)], 1)
    if name == "pyramid":  # square base and four triangular faces, by area
        apex, corners = np.array([0.0, 0.0, 1.0]), np.array([[-1, -1, -1], [1, -1, -1], [1, 1, -1], [-1, 1, -1.0]])
        side_area = 0.5 * 2 * np.sqrt(1 + 4)  # base 2, slant height sqrt(5)
        face = rng.choice(5, n, p=np.array([4.0] + [side_area] * 4) / (4 + 4 * side_area))
        a, b = np.sqrt(u), v  # uniform in a triangle: (1 - sqrt(u)) A + sqrt(u) (1 - v) B + sqrt(u) v C
        out = np.empty((n, 3))
        base = face == 0
        out[base] = np.stack([rng.uniform(-1, 1, base.sum()), rng.uniform(-1, 1, base.sum()),
                              -np.ones(base.sum())], 1)
        for f in range(4):
            sel = face == f + 1
            p, q = corners[f], corners[(f + 1) % 4]
            out[sel] = ((1 - a[sel])[:, None] * apex + (a[sel] * (1 - b[sel]))[:, None] * p
                        + (a[sel] * b[sel])[:, None] * q)
        return out
    raise ValueError(f"Unknown shape {name!r}; expected one of {SHAPE_CLASSES}.")


def _rotation(rng):
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def shape_clouds(num_clouds, num_points=1024, noise=0.01, seed=0):
    """`(points (n, num_points, 3) float32, labels (n,) int32, class_names)`: clouds sampled on
    the surfaces of `SHAPE_CLASSES` (labels cycle through them), each scaled by a random
    factor in [0.6, 1.4] per axis, randomly rotated, jittered by Gaussian `noise`, then centred
    and scaled into the unit sphere.

    Examples:
        >>> points, labels, names = shape_clouds(12, num_points=256)
        >>> points.shape, labels[:6].tolist(), names[4]
        ((12, 256, 3), [0, 1, 2, 3, 4, 5], 'torus')
        >>> bool(np.abs(np.linalg.norm(points, axis=-1).max(axis=1) - 1).max() < 1e-5)
        True
    """
    rng = np.random.default_rng(seed)
    labels = np.arange(num_clouds, dtype="int32") % len(SHAPE_CLASSES)
    clouds = np.empty((num_clouds, num_points, 3), "float32")
    for i, label in enumerate(labels):
        x = _surface(SHAPE_CLASSES[label], num_points, rng) * rng.uniform(0.6, 1.4, 3)
        x = x @ _rotation(rng).T + noise * rng.standard_normal((num_points, 3))
        x -= x.mean(0)
        clouds[i] = x / np.linalg.norm(x, axis=1).max()
    return clouds, labels, SHAPE_CLASSES
