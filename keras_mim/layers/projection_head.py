"""DINO / iBOT's projection head: an MLP, an L2-normalised bottleneck and K prototypes."""

import math

import keras
from keras import ops

# torch's `F.normalize` default: x / max(||x||, eps).
NORM_EPS = 1e-12


def l2_normalize(x, axis=-1):
    """`x / max(||x||_2, 1e-12)` along `axis`, in float32 (torch's `F.normalize`)."""
    x = ops.cast(x, "float32")
    return x / ops.maximum(ops.sqrt(ops.sum(x * x, axis=axis, keepdims=True)), NORM_EPS)


def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive int, got {value!r}.")
    return value


@keras.saving.register_keras_serializable(package="keras_mim")
class ProjectionHead(keras.layers.Layer):
    """The projection head of DINO and iBOT (`DINOHead` / `iBOTHead` of bytedance/ibot).

    Tokens `(..., input_dim)` -> an MLP of `num_layers` Dense layers (exact GELU between
    them; `hidden_dim` wide, the last one `bottleneck_dim` wide) -> L2 normalisation ->
    a weight-normalised Dense layer without bias to `out_dim` prototype scores:
    `x @ (g * v / ||v||)`, each prototype (column of `v`) normalised over its
    `bottleneck_dim` inputs (torch's `weight_norm`). `g` starts at 1; with
    `norm_last_layer` it is frozen there, so every score is a cosine similarity between
    the normalised bottleneck and a prototype. The same head serves the [CLS] token and
    the patch tokens (iBOT's `shared_head`). MLP kernels start as a truncated normal of
    std 0.02 with zero biases (the official `_init_weights`), `v` as torch's default
    Linear init, uniform in `+-1 / sqrt(bottleneck_dim)`. The normalisations run in
    float32; the scores are returned in the layer's compute dtype.

    Args:
        input_dim: width of the tokens (the encoder's `output_dim`).
        out_dim: number of prototypes K (iBOT ViT-B: 8192).
        hidden_dim: width of the hidden MLP layers (official 2048).
        bottleneck_dim: width of the normalised bottleneck (official 256).
        num_layers: Dense layers of the MLP, >= 1 (official 3; 1: a single Dense to
            the bottleneck).
        norm_last_layer: freeze `g` at 1 (official: True for ViT-B, False for ViT-S).
        **kwargs: standard layer arguments.

    Examples:
        >>> import numpy as np
        >>> head = ProjectionHead(32, out_dim=64, hidden_dim=48, bottleneck_dim=16)
        >>> scores = head(np.random.rand(2, 5, 32).astype("float32"))
        >>> tuple(scores.shape), bool(np.abs(keras.ops.convert_to_numpy(scores)).max() <= 1.0 + 1e-5)
        ((2, 5, 64), True)
    """

    def __init__(self, input_dim, out_dim=8192, hidden_dim=2048, bottleneck_dim=256, num_layers=3,
                 norm_last_layer=True, **kwargs):
        super().__init__(**kwargs)
        self.input_dim = _positive_int(input_dim, "input_dim")
        self.out_dim = _positive_int(out_dim, "out_dim")
        self.hidden_dim = _positive_int(hidden_dim, "hidden_dim")
        self.bottleneck_dim = _positive_int(bottleneck_dim, "bottleneck_dim")
        self.num_layers = _positive_int(num_layers, "num_layers")
        if not isinstance(norm_last_layer, bool):
            raise TypeError(f"`norm_last_layer` must be a bool, got {norm_last_layer!r}.")
        self.norm_last_layer = norm_last_layer
        init = {"kernel_initializer": keras.initializers.TruncatedNormal(stddev=0.02),
                "bias_initializer": "zeros", "dtype": self.dtype_policy}
        widths = [self.hidden_dim] * (self.num_layers - 1) + [self.bottleneck_dim]
        self.mlp = [keras.layers.Dense(w, name=f"mlp_{i}", **init) for i, w in enumerate(widths)]

    def build(self, input_shape=None):
        if input_shape is not None and input_shape[-1] != self.input_dim:
            raise ValueError(f"ProjectionHead was made for tokens of width {self.input_dim}, "
                             f"got input shape {tuple(input_shape)}.")
        width = self.input_dim
        for layer in self.mlp:
            layer.build((None, width))
            width = layer.units
        bound = 1.0 / math.sqrt(self.bottleneck_dim)
        self.prototypes = self.add_weight(  # v: (bottleneck, K)
            shape=(self.bottleneck_dim, self.out_dim), name="prototypes",
            initializer=keras.initializers.RandomUniform(-bound, bound))
        self.prototype_scale = self.add_weight(  # g: (K,), 1 and frozen with norm_last_layer
            shape=(self.out_dim,), name="prototype_scale", initializer="ones",
            trainable=not self.norm_last_layer)
        self.built = True

    def call(self, x):
        for i, layer in enumerate(self.mlp):
            x = layer(x)
            if i < len(self.mlp) - 1:
                x = keras.activations.gelu(x, approximate=False)
        x = l2_normalize(x)  # (..., bottleneck) float32
        weight = l2_normalize(self.prototypes, axis=0) * ops.cast(self.prototype_scale, "float32")  # (bottleneck, K)
        return ops.cast(ops.matmul(x, weight), self.compute_dtype)  # (..., K)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.out_dim,)

    def get_config(self):
        config = super().get_config()
        config.update(input_dim=self.input_dim, out_dim=self.out_dim, hidden_dim=self.hidden_dim,
                      bottleneck_dim=self.bottleneck_dim, num_layers=self.num_layers,
                      norm_last_layer=self.norm_last_layer)
        return config
