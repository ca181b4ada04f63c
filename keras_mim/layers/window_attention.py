"""Shifted-window self-attention with scaled cosine similarity and a continuous position
bias (Swin Transformer V2, the "cr" variant Audio-MAE's decoder uses)."""

import math

import keras
import numpy as np
from keras import ops

from keras_mim.layers.attention import MultiHeadSelfAttention


def window_layout(grid_shape, window_size, shift_size):
    """`(window, shift)` as Swin applies them: a window no larger than the grid, no shift
    along an axis the window covers whole. Raises unless the windows tile the grid."""
    grid = tuple(int(g) for g in grid_shape)
    if len(grid) != 2 or len(tuple(window_size)) != 2 or len(tuple(shift_size)) != 2:
        raise ValueError(f"`grid_shape`, `window_size` and `shift_size` must be pairs, got {grid_shape!r}, "
                         f"{window_size!r}, {shift_size!r}.")
    window = tuple(min(int(w), g) for w, g in zip(window_size, grid))
    shift = tuple(0 if g <= w else int(s) for g, w, s in zip(grid, window, shift_size))
    if any(w < 1 for w in window) or any(g % w for g, w in zip(grid, window)):
        raise ValueError(f"`window_size`={tuple(window_size)} must tile the token grid {grid} (each side a "
                         f"divisor of the grid's).")
    if any(not 0 <= s < w for s, w in zip(shift, window)):
        raise ValueError(f"`shift_size`={tuple(shift_size)} must be in [0, window) on each axis (window {window}).")
    return window, shift


def window_token_ids(grid_shape, window_size, shift_size=(0, 0)):
    """`(num_windows, window_area)` int array: the grid index (row-major) of the token in
    each slot of each window after the cyclic shift, in the layer's window order."""
    (t, f), ((wt, wf), (st, sf)) = grid_shape, window_layout(grid_shape, window_size, shift_size)
    ids = np.roll(np.arange(t * f).reshape(t, f), (-st, -sf), axis=(0, 1))
    return ids.reshape(t // wt, wt, f // wf, wf).transpose(0, 2, 1, 3).reshape(-1, wt * wf)


def shift_mask(grid_shape, window_size, shift_size):
    """`(num_windows, area, area)` float array: -100 between tokens that the cyclic shift
    brought into one window from opposite edges of the grid (Swin's mask), else 0."""
    (t, f), (window, shift) = grid_shape, window_layout(grid_shape, window_size, shift_size)
    region = np.zeros((t, f))
    for axis, (size, w, s) in enumerate(zip((t, f), window, shift)):
        if s:  # three strips along this axis: untouched, the last window's rest, the wrapped part
            labels = np.zeros(size)
            labels[size - w : size - s], labels[size - s :] = 1, 2
            region = region * 3 + (labels[:, None] if axis == 0 else labels[None, :])
    slots = region.reshape(-1)[window_token_ids(grid_shape, window, (0, 0))]  # regions in rolled layout
    return np.where(slots[:, :, None] != slots[:, None, :], -100.0, 0.0).astype("float32")


def log_relative_coordinates(window_size):
    """`(area * area, 2)`: `sign(d) * log(1 + |d|)` of every pair's (row, column) offset."""
    wt, wf = window_size
    coords = np.stack(np.meshgrid(np.arange(wt), np.arange(wf), indexing="ij")).reshape(2, -1)
    rel = (coords[:, :, None] - coords[:, None, :]).transpose(1, 2, 0).reshape(-1, 2).astype("float32")
    return np.sign(rel) * np.log1p(np.abs(rel))


@keras.saving.register_keras_serializable(package="keras_mim")
class WindowAttention(MultiHeadSelfAttention):
    """Self-attention inside local windows of a 2D token grid, optionally shifted.

    The tokens `(B, N, D)` of a `(T, F)` grid are cyclically shifted by `-shift_size`,
    cut into `window_size` windows, and attend only inside their window (in a shifted
    window, tokens brought together from opposite grid edges are kept apart by Swin's
    -100 mask); the result is shifted back. Attention is Swin V2's scaled cosine
    similarity, `cos(q, k) / max(tau, 0.01)` with a learned `tau` per head (initial 1),
    plus a position bias that a small MLP (2 -> `meta_hidden_dim` -> heads, ReLU, dropout
    `meta_dropout`) computes from the log-spaced offset of each pair of window slots, as
    timm's `swin_transformer_v2_cr` that Audio-MAE's decoder is built of. A window as
    large as the grid along an axis is clipped to it, with no shift there.

    Written here (not `keras.layers.MultiHeadAttention` with a mask): window attention
    costs `N * area` instead of `N**2`, and the bias and the cosine logits are not options
    of Keras' layer.

    Args:
        num_heads: attention heads; must divide the token width.
        grid_shape: `(T, F)` token grid of the input sequence.
        window_size: `(wt, wf)` window in tokens (Audio-MAE: (4, 4)).
        shift_size: `(st, sf)` cyclic shift (Audio-MAE: (2, 0) in every second block).
        qkv_bias: bias on the fused qkv projection.
        meta_hidden_dim: hidden width of the position-bias MLP (timm: 384).
        meta_dropout: dropout inside the position-bias MLP (timm: 0.1).
        dropout: dropout after the output projection.
        **kwargs: standard layer arguments.

    Examples:
        >>> import numpy as np
        >>> attn = WindowAttention(2, grid_shape=(8, 4), window_size=(4, 4), shift_size=(2, 0))
        >>> tuple(attn(np.zeros((1, 32, 16), "float32")).shape)
        (1, 32, 16)
        >>> tuple(attn.attention_probs(np.zeros((1, 32, 16), "float32")).shape)  # (B, windows, H, area, area)
        (1, 2, 2, 16, 16)
    """

    def __init__(self, num_heads, grid_shape, window_size=(4, 4), shift_size=(0, 0), qkv_bias=True,
                 meta_hidden_dim=384, meta_dropout=0.1, dropout=0.0, **kwargs):
        super().__init__(num_heads, qkv_bias=qkv_bias, dropout=dropout, **kwargs)
        self.grid_shape = tuple(int(g) for g in grid_shape)
        self.window_size, self.shift_size = window_layout(self.grid_shape, window_size, shift_size)
        self.meta_hidden_dim = int(meta_hidden_dim)
        self.meta_dropout = float(meta_dropout)
        self.area = math.prod(self.window_size)
        self.num_windows = math.prod(self.grid_shape) // self.area
        self._rel_coords = log_relative_coordinates(self.window_size)  # constants, rebuilt from the config
        self._shift_mask = shift_mask(self.grid_shape, self.window_size, self.shift_size) if any(self.shift_size) else None

    def build(self, input_shape):
        n = math.prod(self.grid_shape)
        if input_shape[1] is not None and input_shape[1] != n:
            raise ValueError(f"WindowAttention on grid {self.grid_shape} takes {n} tokens, got input shape "
                             f"{tuple(input_shape)}.")
        super().build(input_shape)
        p = self.dtype_policy
        self.meta_fc1 = keras.layers.Dense(self.meta_hidden_dim, activation="relu", dtype=p, name="meta_fc1")
        self.meta_fc1.build((None, 2))
        self.meta_fc2 = keras.layers.Dense(self.num_heads, dtype=p, name="meta_fc2")
        self.meta_fc2.build((None, self.meta_hidden_dim))
        self.meta_drop = keras.layers.Dropout(self.meta_dropout, dtype=p)
        self.tau = self.add_weight(shape=(self.num_heads,), initializer="ones", name="tau")

    def position_bias(self, training=None):
        """`(H, area, area)` bias from the slots' log-spaced offsets."""
        x = self.meta_drop(self.meta_fc1(ops.convert_to_tensor(self._rel_coords)), training=training)
        x = self.meta_drop(self.meta_fc2(x), training=training)  # (area * area, H)
        return ops.reshape(ops.transpose(x), (self.num_heads, self.area, self.area))

    def partition(self, x):
        """`(B, N, C) -> (B, windows, area, C)` after the cyclic shift."""
        (t, f), (wt, wf), (st, sf) = self.grid_shape, self.window_size, self.shift_size
        c = x.shape[-1]
        x = ops.reshape(x, (-1, t, f, c))
        if st or sf:
            x = ops.roll(x, shift=(-st, -sf), axis=(1, 2))
        x = ops.transpose(ops.reshape(x, (-1, t // wt, wt, f // wf, wf, c)), (0, 1, 3, 2, 4, 5))
        return ops.reshape(x, (-1, self.num_windows, self.area, c))

    def merge(self, windows):
        """Inverse of `partition`: `(B, windows, area, C) -> (B, N, C)`."""
        (t, f), (wt, wf), (st, sf) = self.grid_shape, self.window_size, self.shift_size
        c = windows.shape[-1]
        x = ops.transpose(ops.reshape(windows, (-1, t // wt, f // wf, wt, wf, c)), (0, 1, 3, 2, 4, 5))
        x = ops.reshape(x, (-1, t, f, c))
        if st or sf:
            x = ops.roll(x, shift=(st, sf), axis=(1, 2))
        return ops.reshape(x, (-1, t * f, c))

    def _probs_and_values(self, x, training=None):
        h = self.num_heads
        windows = self.partition(x)  # (B, W, A, D)
        qkv = ops.reshape(self.qkv(windows), (-1, self.num_windows, self.area, 3, h, self.head_dim))
        qkv = ops.transpose(ops.cast(qkv, "float32"), (3, 0, 1, 4, 2, 5))  # (3, B, W, H, A, hd)
        q, k, v = qkv[0], qkv[1], qkv[2]
        norms = ops.matmul(ops.norm(q, axis=-1, keepdims=True), ops.swapaxes(ops.norm(k, axis=-1, keepdims=True), -1, -2))
        logits = ops.matmul(q, ops.swapaxes(k, -1, -2)) / ops.maximum(norms, 1e-6)  # cosine, (B, W, H, A, A)
        logits = logits / ops.reshape(ops.maximum(ops.cast(self.tau, "float32"), 0.01), (1, 1, h, 1, 1))
        logits = logits + ops.cast(self.position_bias(training), "float32")[None, None]
        if self._shift_mask is not None:
            logits = logits + ops.convert_to_tensor(self._shift_mask)[None, :, None]
        return ops.softmax(logits, axis=-1), v

    def attention_probs(self, x):
        """Attention probabilities `(B, windows, H, area, area)` in float32, per window (the
        grid index of each slot: `window_token_ids(grid_shape, window_size, shift_size)`)."""
        if not self.built:
            self.build(tuple(x.shape))
        return self._probs_and_values(x, training=False)[0]

    def call(self, x, training=None):
        probs, v = self._probs_and_values(x, training=training)
        out = ops.transpose(ops.matmul(probs, v), (0, 1, 3, 2, 4))  # (B, W, A, H, hd)
        out = ops.reshape(ops.cast(out, x.dtype), (-1, self.num_windows, self.area, x.shape[-1]))
        out = self.merge(self.proj(out))
        return self.proj_drop(out, training=training) if self.dropout else out

    def get_config(self):
        config = super().get_config()
        config.update(grid_shape=self.grid_shape, window_size=self.window_size, shift_size=self.shift_size,
                      meta_hidden_dim=self.meta_hidden_dim, meta_dropout=self.meta_dropout)
        return config
