"""The shared selection step: per-token scores -> which tokens stay visible.

Every mask generator only produces scores (lower = kept); this one function turns them
into index tensors, so all strategies share one static-shape, jit-friendly path.
"""

from keras import ops

from keras_mim.utils import visible_count


def num_visible(num_tokens, mask_ratio):
    """Static visible-token count `int(N * (1 - r))`, as the official MAE (see
    `keras_mim.utils.visible_count` for the float round-off it guards against)."""
    return visible_count(num_tokens, mask_ratio)


def select_tokens(scores, num_keep):
    """Keep the `num_keep` lowest-scoring tokens of each sample.

    Args:
        scores: float `(B, N)`; lower = kept. Ties break by token index.
        num_keep: Python int, the static number of visible tokens.

    Returns:
        dict with
          `ids_keep`: int32 `(B, num_keep)`, indices of visible tokens (lowest score first),
          `ids_restore`: int32 `(B, N)`, inverse permutation of the shuffle,
          `mask`: float32 `(B, N)`, 1 = hidden, 0 = visible, in original token order.

    Examples:
        >>> import numpy as np
        >>> out = select_tokens(np.array([[0.9, 0.1, 0.5, 0.3]]), 2)
        >>> ops.convert_to_numpy(out["mask"]).tolist()
        [[1.0, 0.0, 1.0, 0.0]]
    """
    n = scores.shape[1]
    if not isinstance(num_keep, int) or not 0 < num_keep <= n:
        raise ValueError(f"`num_keep` must be an int in [1, {n}], got {num_keep!r}.")
    ids_shuffle = ops.cast(ops.argsort(ops.cast(scores, "float32"), axis=1), "int32")
    ids_restore = ops.cast(ops.argsort(ids_shuffle, axis=1), "int32")
    ids_keep = ids_shuffle[:, :num_keep]
    # Position k of the shuffled order is hidden iff k >= num_keep; unshuffle that.
    mask = ops.cast(ids_restore >= num_keep, "float32")
    return {"ids_keep": ids_keep, "ids_restore": ids_restore, "mask": mask}
