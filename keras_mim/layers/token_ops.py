"""Token gathering and restoring with static shapes (no boolean indexing)."""

from keras import ops


def gather_tokens(tokens, ids):
    """Pick tokens by index per sample.

    Args:
        tokens: `(B, N, D)`.
        ids: int `(B, K)` indices into N.

    Returns:
        `(B, K, D)`, `out[b, k] = tokens[b, ids[b, k]]`.

    Examples:
        >>> import numpy as np
        >>> tuple(gather_tokens(np.arange(6.0).reshape(1, 3, 2), np.array([[2, 0]])).shape)
        (1, 2, 2)
    """
    ids = ops.expand_dims(ops.cast(ids, "int32"), -1)
    return ops.take_along_axis(tokens, ids, axis=1)


def restore_tokens(visible, ids_restore, mask_token):
    """Put visible tokens back in place and fill hidden places with `mask_token`.

    Args:
        visible: `(B, K, D)` tokens in shuffled (kept-first) order.
        ids_restore: int `(B, N)`, the inverse of the shuffle that kept `visible`.
        mask_token: `(1, 1, D)` or `(D,)` token for every hidden position.

    Returns:
        `(B, N, D)` in the original token order.

    Examples:
        >>> import numpy as np
        >>> out = restore_tokens(np.ones((1, 1, 2)), np.array([[1, 0]]), np.zeros((2,)))
        >>> ops.convert_to_numpy(out).tolist()
        [[[0.0, 0.0], [1.0, 1.0]]]
    """
    b, k, d = ops.shape(visible)[0], visible.shape[1], visible.shape[2]
    n = ids_restore.shape[1]
    fill = ops.broadcast_to(ops.reshape(ops.cast(mask_token, visible.dtype), (1, 1, d)), (b, n - k, d))
    shuffled = ops.concatenate([visible, fill], axis=1)  # (B, N, D), kept first
    return gather_tokens(shuffled, ids_restore)


def hidden_mask(ids_keep, num_tokens):
    """The mask `(B, N)` float32 (1 = hidden) of the tokens that `ids_keep` `(B, K)` does not keep.

    Examples:
        >>> import numpy as np
        >>> ops.convert_to_numpy(hidden_mask(np.array([[2, 0]]), 4)).tolist()
        [[0.0, 1.0, 0.0, 1.0]]
    """
    return 1.0 - ops.sum(ops.one_hot(ops.cast(ids_keep, "int32"), num_tokens, dtype="float32"), axis=1)


POOLINGS = ("avg", "cls")


def default_pooling(encoder):
    """The cls token when `encoder` has one (MAE's probe default), else the patch average."""
    return "cls" if getattr(encoder, "num_prefix_tokens", 0) else "avg"


def check_pooling(encoder, pooling, what="this model"):
    """Return `pooling` if `encoder` has something to pool that way, else raise.

    `"cls"` needs a cls token (`encoder.num_prefix_tokens >= 1`), `"avg"` needs patch
    tokens in the output; anything else is an error naming the choices.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"`pooling` must be one of {POOLINGS}, got {pooling!r}.")
    prefix = getattr(encoder, "num_prefix_tokens", 0)
    if pooling == "cls" and prefix < 1:
        raise ValueError(
            f"`pooling`='cls' needs an encoder with a cls token, but this encoder has none "
            f"(num_prefix_tokens={prefix}); use pooling='avg' for {what}, or an encoder built "
            "with `cls_token=True`."
        )
    if pooling == "avg" and not getattr(encoder, "num_patches", 0):
        raise ValueError("`pooling`='avg' needs an encoder whose output holds patch tokens.")
    return pooling


def pool_tokens(tokens, pooling, num_prefix_tokens):
    """One vector per sample from encoder tokens `(B, prefix + N, D) -> (B, D)`.

    Args:
        tokens: encoder output, prefix (cls) tokens first.
        pooling: `"cls"` (the first token) or `"avg"` (mean of the patch tokens).
        num_prefix_tokens: how many prefix tokens lead `tokens`.

    Examples:
        >>> import numpy as np
        >>> x = np.arange(6.0).reshape(1, 3, 2)
        >>> [float(v) for v in pool_tokens(x, "avg", 1)[0]]
        [3.0, 4.0]
    """
    if pooling == "cls":
        return tokens[:, 0]
    return ops.mean(tokens[:, num_prefix_tokens:], axis=1)
