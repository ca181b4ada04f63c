"""Point-cloud operations in Keras ops with static shapes: farthest point sampling, k-NN
grouping into local patches, and the Chamfer distance (Point-MAE's tokenizer and loss)."""

from keras import ops


def square_distances(a, b):
    """`(B, N, 3), (B, M, 3) -> (B, N, M)` squared Euclidean distances, in float32."""
    a, b = ops.cast(a, "float32"), ops.cast(b, "float32")
    cross = ops.matmul(a, ops.swapaxes(b, 1, 2))  # (B, N, M)
    return ops.maximum(ops.sum(a * a, -1)[:, :, None] - 2.0 * cross + ops.sum(b * b, -1)[:, None, :], 0.0)


def farthest_point_sample(points, num_samples):
    """Indices `(B, num_samples)` int32 of greedy farthest point sampling, starting at point 0
    (as the CUDA `furthest_point_sample` of PointNet++ the official Point-MAE calls): each
    next point is the one farthest from all chosen so far (ties: the lowest index).

    Args:
        points: float `(B, N, 3)`.
        num_samples: static int G <= N.

    Examples:
        >>> import numpy as np
        >>> pts = np.array([[[0, 0, 0], [1, 0, 0], [5, 0, 0], [2, 0, 0]]], "float32")
        >>> ops.convert_to_numpy(farthest_point_sample(pts, 3)).tolist()
        [[0, 2, 3]]
    """
    n = points.shape[1]
    if not isinstance(num_samples, int) or not 0 < num_samples <= n:
        raise ValueError(f"`num_samples` must be an int in [1, {n}] (the points per cloud), got {num_samples!r}.")
    points = ops.cast(points, "float32")
    chosen = ops.zeros((ops.shape(points)[0], num_samples), "int32")
    nearest = ops.full(ops.shape(points)[:2], 1e10)  # (B, N): squared distance to the chosen set

    def step(i, state):
        chosen, nearest = state
        last = ops.take_along_axis(chosen, ops.full((ops.shape(chosen)[0], 1), i - 1, "int32"), axis=1)  # (B, 1)
        centre = ops.take_along_axis(points, ops.expand_dims(last, -1), axis=1)  # (B, 1, 3)
        nearest = ops.minimum(nearest, ops.sum(ops.square(points - centre), -1))
        farthest = ops.cast(ops.argmax(nearest, axis=1), "int32")  # (B,)
        chosen = chosen + ops.expand_dims(farthest, 1) * ops.cast(ops.arange(num_samples) == i, "int32")[None]
        return chosen, nearest

    chosen, _ = ops.fori_loop(1, num_samples, step, (chosen, nearest))
    return chosen


def knn_indices(points, centres, k):
    """Indices `(B, G, k)` int32 of each centre's k nearest points, nearest first (the centre
    itself, when it is one of the points, comes first).

    Args:
        points: float `(B, N, 3)`.
        centres: float `(B, G, 3)`.
        k: static int <= N.
    """
    n = points.shape[1]
    if not isinstance(k, int) or not 0 < k <= n:
        raise ValueError(f"`k` must be an int in [1, {n}] (the points per cloud), got {k!r}.")
    _, idx = ops.top_k(-square_distances(centres, points), k, sorted=True)
    return ops.cast(idx, "int32")


def group_points(points, num_groups, group_size):
    """Point-MAE's tokenizer: `(neighbourhoods (B, G, K, 3), centres (B, G, 3))`: G centres by
    farthest point sampling, each with its K nearest points, expressed relative to it.

    Examples:
        >>> import numpy as np
        >>> pts = np.random.default_rng(0).random((2, 64, 3)).astype("float32")
        >>> groups, centres = group_points(pts, num_groups=8, group_size=4)
        >>> tuple(groups.shape), tuple(centres.shape)
        ((2, 8, 4, 3), (2, 8, 3))
    """
    points = ops.cast(points, "float32")
    if len(points.shape) != 3 or points.shape[-1] != 3:
        raise ValueError(f"`points` must be (batch, num_points, 3), got shape {tuple(points.shape)}.")
    n = points.shape[1]
    if n is not None and (group_size > n or num_groups > n):
        raise ValueError(f"A cloud of {n} points cannot make {num_groups} groups of {group_size} points; "
                         f"give at least max(num_groups, group_size) points.")
    centre_ids = farthest_point_sample(points, num_groups)  # (B, G)
    centres = ops.take_along_axis(points, ops.expand_dims(centre_ids, -1), axis=1)  # (B, G, 3)
    idx = knn_indices(points, centres, group_size)  # (B, G, K)
    flat = ops.reshape(idx, (-1, num_groups * group_size, 1))
    neighbourhoods = ops.reshape(ops.take_along_axis(points, flat, axis=1), (-1, num_groups, group_size, 3))
    return neighbourhoods - ops.expand_dims(centres, 2), centres


def chamfer_l2(pred, target):
    """Chamfer-L2 per set: `(..., P, 3), (..., Q, 3) -> (...)`, the mean over `pred` of the squared
    distance to the nearest `target` point plus the mean over `target` of the squared distance
    to the nearest `pred` point (the official `ChamferDistanceL2`, averaged per set), float32.

    Examples:
        >>> import numpy as np
        >>> a = np.array([[[0, 0, 0], [1, 0, 0]]], "float32"); b = np.array([[[0, 0, 0], [0, 2, 0]]], "float32")
        >>> float(chamfer_l2(a, b)[0])  # (0 + 1) / 2 + (0 + 4) / 2
        2.5
    """
    inner = tuple(pred.shape[1:-2])  # leading axes after the batch, kept in the output
    p = ops.reshape(ops.cast(pred, "float32"), (-1, pred.shape[-2], 3))
    q = ops.reshape(ops.cast(target, "float32"), (-1, target.shape[-2], 3))
    d = square_distances(p, q)  # (S, P, Q)
    per_set = ops.mean(ops.min(d, axis=2), axis=1) + ops.mean(ops.min(d, axis=1), axis=1)
    return ops.reshape(per_set, (-1,) + inner) if len(pred.shape) > 2 else per_set[0]
