"""I-JEPA's multi-block masking: several target blocks and one context block without them."""

import math

import keras
import numpy as np
from keras import ops

from keras_mim.masking.mask_generator import MaskGenerator, check_grid_shape
from keras_mim.masking.selection import select_tokens


def _check_range(value, name, low=0.0, high=None):
    """A `(min, max)` pair of floats with `low < min <= max [<= high]`."""
    ok = isinstance(value, (tuple, list)) and len(value) == 2 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    if not ok or not low < value[0] <= value[1] or (high is not None and value[1] > high):
        bound = f" and max <= {high}" if high is not None else ""
        raise ValueError(f"`{name}` must be a (min, max) pair with {low} < min <= max{bound}, got {value!r}.")
    return (float(value[0]), float(value[1]))


def block_sides(num_tokens, scale, aspect, grid):
    """Sides `(h, w)` of a block covering `scale` of `num_tokens` at `aspect` = h / w, as
    the official collator: area `int(N * scale)`, `h = round(sqrt(area * aspect))`,
    `w = round(sqrt(area / aspect))`, clipped to `[1, grid side]`. Works on numpy arrays
    and Keras tensors alike (float32)."""
    area = np.floor(np.float32(num_tokens) * scale) if isinstance(scale, np.ndarray) else ops.floor(num_tokens * scale)
    lib = np if isinstance(area, np.ndarray) else ops
    h = lib.round(lib.sqrt(area * aspect))
    w = lib.round(lib.sqrt(area / aspect))
    return lib.clip(h, 1.0, float(grid[0])), lib.clip(w, 1.0, float(grid[1]))


@keras.saving.register_keras_serializable(package="keras_mim")
class MultiBlockMaskGenerator(MaskGenerator):
    """I-JEPA's multi-block masks: M target blocks and a context block without them.

    Every token of a target block is removed from the context, and the counts are
    static (C context tokens, T per target block), unlike the official collator's.

    Per sample, each of the `num_targets` target blocks draws a scale uniform in
    `target_scale` and an aspect ratio (height / width) uniform in `target_aspect`, a
    rectangle of area `int(N * scale)` with sides `round(sqrt(area * aspect))` x
    `round(sqrt(area / aspect))` clipped to the grid, at a uniform position. The context
    block draws a scale in `context_scale` at aspect 1 the same way. Visible tokens
    (`ids_keep`, `mask` = 0) are context tokens; `target_ids` `(B, M, T)` lists each
    target block's tokens, row-major. Target and context sets are disjoint.

    Static counts (the official collator truncates every mask to the batch minimum, so
    its counts change from batch to batch; XLA needs them fixed):

    - each target block keeps its first `T` tokens in row-major order, where `T` is the
      smallest area any block can have under `target_scale` / `target_aspect` on this
      grid (`num_target_tokens`): a block drawn larger loses part of its last row(s), as
      the official truncation cuts the end of a mask;
    - the context keeps `C` tokens of its block minus the target tokens, `C` =
      (smallest context block) - M x T by default (`num_visible`): the largest count
      every sample can give. A context holding more drops tokens at random (the official
      truncation drops its last rows).

    Other differences from facebookresearch/ijepa `src/masks/multiblock.py`: block
    sizes are drawn per sample and per block (the official draws one target size and one
    context size per batch, and one random number for both scale and aspect); positions
    are uniform over every place the block fits (the official `randint(0, H - h)` never
    reaches the last row and column) and a block may span the whole grid (the official
    shrinks it below the grid side). No retries: the counts above always hold.

    With `noise` (fixed masks), the `C` lowest-scoring tokens are the context and the
    `M x T` highest-scoring ones the targets, block `m` taking ranks `m T .. (m+1) T - 1`
    from the top.

    Args:
        num_targets: target blocks M (I-JEPA: 4).
        target_scale: `(min, max)` share of the grid per target block (I-JEPA: 0.15-0.2).
        target_aspect: `(min, max)` height / width of target blocks (I-JEPA: 0.75-1.5).
        context_scale: `(min, max)` share of the grid of the context block (I-JEPA: 0.85-1.0).
        num_context: None (the largest count every sample can give, see above) or a
            smaller positive int.
        seed: optional int for repeatable masks.
        **kwargs: standard layer arguments. A `mask_ratio` key (as `get_config` writes
            it) is ignored: the hidden share follows from the block settings and the grid.

    Examples:
        >>> import numpy as np
        >>> gen = MultiBlockMaskGenerator(seed=0)
        >>> out = gen(np.zeros((2, 1), "float32"), grid_shape=(14, 14))  # ViT-B/16 at 224 px
        >>> gen.num_target_tokens((14, 14)), gen.num_visible((14, 14)), tuple(out["target_ids"].shape)
        (24, 73, (2, 4, 24))
        >>> mask = keras.ops.convert_to_numpy(out["mask"])  # 1 = not in the context
        >>> ids = keras.ops.convert_to_numpy(out["target_ids"]).reshape(2, -1)
        >>> bool(mask[0, ids[0]].min() == 1.0)  # no target token is in the context
        True
    """

    grid_rank = 2

    def __init__(self, num_targets=4, target_scale=(0.15, 0.2), target_aspect=(0.75, 1.5),
                 context_scale=(0.85, 1.0), num_context=None, seed=None, **kwargs):
        kwargs.pop("mask_ratio", None)  # derived from the blocks and the grid
        super().__init__(mask_ratio=0.0, seed=seed, **kwargs)
        if isinstance(num_targets, bool) or not isinstance(num_targets, int) or num_targets < 1:
            raise ValueError(f"`num_targets` must be a positive int, got {num_targets!r}.")
        self.num_targets = num_targets
        self.target_scale = _check_range(target_scale, "target_scale", high=1.0)
        self.target_aspect = _check_range(target_aspect, "target_aspect")
        self.context_scale = _check_range(context_scale, "context_scale", high=1.0)
        if num_context is not None and (isinstance(num_context, bool) or not isinstance(num_context, int)
                                        or num_context < 1):
            raise ValueError(f"`num_context` must be None or a positive int, got {num_context!r}.")
        self.num_context = num_context

    # ------------------------------------------------------------------ static counts
    def _grid(self, grid_shape):
        grid = check_grid_shape(grid_shape)
        if len(grid) != 2:
            raise ValueError(f"MultiBlockMaskGenerator needs a 2D grid `(gh, gw)`, got grid_shape={grid}.")
        return grid

    def num_target_tokens(self, grid_shape):
        """T: tokens kept per target block, the smallest block area the ranges allow."""
        grid = self._grid(grid_shape)
        n = math.prod(grid)
        scale = np.linspace(*self.target_scale, 65, dtype="float32")[:, None]
        aspect = np.linspace(*self.target_aspect, 257, dtype="float32")[None, :]
        h, w = block_sides(n, scale, aspect, grid)
        return int((h * w).min())

    def min_context_block(self, grid_shape):
        """Tokens of the smallest context block the range allows (before removing targets)."""
        grid = self._grid(grid_shape)
        scale = np.linspace(*self.context_scale, 65, dtype="float32")
        h, w = block_sides(math.prod(grid), scale, np.float32(1.0), grid)
        return int((h * w).min())

    def num_visible(self, grid_shape):
        """C: context tokens per sample (raises if the blocks cannot fit the grid)."""
        grid = self._grid(grid_shape)
        t = self.num_target_tokens(grid)
        available = self.min_context_block(grid) - self.num_targets * t
        if available < 1:
            raise ValueError(
                f"The blocks cannot fit the {grid} grid: {self.num_targets} target blocks of {t} tokens "
                f"(`target_scale`={self.target_scale}) can cover the whole smallest context block of "
                f"{self.min_context_block(grid)} tokens (`context_scale`={self.context_scale}), leaving no "
                "context; use fewer or smaller target blocks, or a larger grid."
            )
        if self.num_context is None:
            return available
        if self.num_context > available:
            raise ValueError(
                f"`num_context`={self.num_context} exceeds the {available} context tokens every sample "
                f"can give on the {grid} grid ({self.min_context_block(grid)} in the smallest context "
                f"block minus {self.num_targets} x {t} target tokens)."
            )
        return self.num_context

    # ------------------------------------------------------------------ drawing
    def sample_blocks(self, batch_size, grid_shape):
        """Float `(B, M + 1, N)` coverage: the M target rectangles, then the context one."""
        gh, gw = self._grid(grid_shape)
        n, m = gh * gw, self.num_targets
        u = keras.random.uniform((batch_size, m + 1, 4), seed=self.seed_generator)
        def per_block(target, context):  # (M + 1, 1): the M targets' value, then the context's
            return ops.convert_to_tensor(np.array([target] * m + [context], "float32")[:, None])

        lo = per_block(self.target_scale[0], self.context_scale[0])
        hi = per_block(self.target_scale[1], self.context_scale[1])
        a_lo, a_hi = per_block(self.target_aspect[0], 1.0), per_block(self.target_aspect[1], 1.0)
        scale = lo + u[..., :1] * (hi - lo)  # (B, M + 1, 1)
        aspect = a_lo + u[..., 1:2] * (a_hi - a_lo)
        h, w = block_sides(n, scale, aspect, (gh, gw))
        top = ops.minimum(ops.floor(u[..., 2:3] * (gh - h + 1.0)), gh - h)
        left = ops.minimum(ops.floor(u[..., 3:4] * (gw - w + 1.0)), gw - w)
        rows = ops.convert_to_tensor(np.repeat(np.arange(gh, dtype="float32"), gw)[None, None])  # (1, 1, N)
        cols = ops.convert_to_tensor(np.tile(np.arange(gw, dtype="float32"), gh)[None, None])
        inside = (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w)
        return ops.cast(inside, "float32")

    def call(self, inputs, grid_shape, noise=None):
        """Draw masks: dict of `ids_keep` `(B, C)` (the context), `ids_restore` `(B, N)`,
        `mask` `(B, N)` (1 = not in the context), `target_ids` int32 `(B, M, T)` and
        `target_mask` `(B, N)` (1 = in a target block)."""
        grid = self._grid(grid_shape)
        n, m = math.prod(grid), self.num_targets
        t, c = self.num_target_tokens(grid), self.num_visible(grid)
        index = ops.convert_to_tensor(np.arange(n, dtype="float32"))
        if noise is not None:
            if len(noise.shape) != 2 or noise.shape[-1] != n:
                raise ValueError(f"`noise` must have shape (batch, {n}), got {tuple(noise.shape)}.")
            order = ops.cast(ops.argsort(-ops.cast(noise, "float32"), axis=1), "int32")  # highest first
            target_ids = ops.sort(ops.reshape(order[:, : m * t], (-1, m, t)), axis=-1)
            masking = select_tokens(ops.cast(noise, "float32"), c)
        else:
            blocks = self.sample_blocks(ops.shape(inputs)[0], grid)  # (B, M + 1, N)
            targets, context = blocks[:, :m], blocks[:, m]
            # each target block: its first T tokens in row-major order
            kept = targets * ops.cast(ops.cumsum(targets, axis=-1) <= t, "float32")  # (B, M, N)
            target_ids = ops.cast(ops.argsort(index + n * (1.0 - kept), axis=-1)[..., :t], "int32")
            in_target = ops.max(kept, axis=1)  # (B, N)
            # context: its block minus the targets, at random; never a target token
            jitter = keras.random.uniform(ops.shape(context), seed=self.seed_generator)
            scores = jitter + (1.0 - context) + 2.0 * in_target
            masking = select_tokens(scores, c)
        one_hot = ops.one_hot(ops.reshape(target_ids, (-1, m * t)), n)  # (B, M T, N)
        return {**masking, "target_ids": target_ids, "target_mask": ops.max(one_hot, axis=1)}

    def get_config(self):
        config = super().get_config()
        config.update(num_targets=self.num_targets, target_scale=self.target_scale,
                      target_aspect=self.target_aspect, context_scale=self.context_scale,
                      num_context=self.num_context)
        return config
