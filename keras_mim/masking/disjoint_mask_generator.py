"""DMJD disjoint masking: each image twice per batch, the two masks together hide every token."""

import math

import keras
from keras import ops

from keras_mim.masking.mask_generator import MaskGenerator, check_grid_shape


def duplicate_for_disjoint(images):
    """Stack a batch twice, `(B, ...) -> (2B, ...)`, the layout `DisjointMaskGenerator` expects.

    Sample `i` and sample `i + B` are the same image, so the generator can give them
    complementary masks.

    Args:
        images: a tensor or array whose first axis is the batch.

    Returns:
        `concatenate([images, images], axis=0)`.

    Examples:
        >>> import numpy as np
        >>> tuple(duplicate_for_disjoint(np.zeros((3, 8, 8, 1), "float32")).shape)
        (6, 8, 8, 1)
    """
    images = ops.convert_to_tensor(images)
    return ops.concatenate([images, images], axis=0)


@keras.saving.register_keras_serializable(package="keras_mim")
class DisjointMaskGenerator(MaskGenerator):
    """Pairs of complementary masks, DMJD-style (disjoint masking).

    Batch layout: the batch holds each image twice, as `duplicate_for_disjoint`
    builds it: sample `i` and sample `i + B/2` are the same image (B must be even).
    The first half gets uniform random masks. The second half hides every token the
    first mask left visible, plus random extra tokens up to the same count, so the
    union of a pair's hidden sets is every token and both halves hide exactly
    `N - int(N * (1 - mask_ratio))` tokens. This needs `mask_ratio >= 0.5`.

    The pairing is by position within each batch, so duplicate each batch after it is
    drawn (e.g. in a `tf.data` pipeline after `.batch(b, drop_remainder=True)`). With
    in-memory arrays, lay them out as `[x1, x1, x2, x2, ...]` (each block of b images
    followed by itself) and call `fit(..., batch_size=2 * b, shuffle=False)`: shuffling
    or misaligned batches would separate the pairs. An odd static batch size raises; a
    dynamic one (a ragged last batch under `tf.data`) cannot be checked here.

    Args:
        mask_ratio: fraction of hidden tokens per sample, in [0.5, 1).
        seed: optional int for repeatable masks.
        **kwargs: standard layer arguments.

    Examples:
        >>> import numpy as np
        >>> gen = DisjointMaskGenerator(0.75, seed=0)
        >>> images = duplicate_for_disjoint(np.zeros((2, 16, 16, 3), "float32"))  # (4, ...)
        >>> m = gen(images, grid_shape=(4, 4))["mask"]
        >>> keras.ops.convert_to_numpy(keras.ops.sum(m, axis=1)).tolist()
        [12.0, 12.0, 12.0, 12.0]
        >>> float(keras.ops.min(keras.ops.maximum(m[:2], m[2:])))  # each pair hides every token
        1.0
    """

    def __init__(self, mask_ratio=0.75, seed=None, **kwargs):
        super().__init__(mask_ratio=mask_ratio, seed=seed, **kwargs)
        if self.mask_ratio < 0.5:
            raise ValueError(
                f"`mask_ratio` must be >= 0.5 for disjoint masking, got {mask_ratio!r}: the second "
                "mask hides every token the first one shows, so each mask must hide at least "
                "half of the tokens for the union of the pair to cover every token."
            )

    def num_visible(self, grid_shape):
        keep = super().num_visible(grid_shape)
        n = math.prod(check_grid_shape(grid_shape))
        if keep > n - keep:  # cannot happen for ratio >= 0.5; guards against rounding
            raise ValueError(
                f"`mask_ratio`={self.mask_ratio!r} keeps {keep} of {n} tokens, more than it hides; "
                "the second mask of a pair could not hide every token the first one shows."
            )
        return keep

    def scores(self, batch_size, grid_shape):
        if isinstance(batch_size, int) and batch_size % 2:
            raise ValueError(
                f"DisjointMaskGenerator needs an even batch (each image twice: sample i paired "
                f"with sample i + B/2, see `duplicate_for_disjoint`), got batch size {batch_size}."
            )
        n = math.prod(check_grid_shape(grid_shape))
        keep = self.num_visible(grid_shape)
        half = batch_size // 2
        noise = keras.random.uniform((2, half, n), seed=self.seed_generator)
        # Distinct ranks (0..n-1), so "visible in the first mask" is exactly rank < keep,
        # the same choice `select_tokens` makes from these scores.
        ranks = ops.cast(ops.argsort(ops.argsort(noise, axis=-1), axis=-1), "float32")
        first, second = ranks[0], ranks[1]
        visible_in_first = ops.less(first, float(keep))
        # Tokens the first mask shows score above everything else: hidden in the second.
        second = ops.where(visible_in_first, second + float(n), second)
        return ops.concatenate([first, second], axis=0)
