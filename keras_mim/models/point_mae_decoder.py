"""Point-MAE's decoder: visible tokens + mask tokens at the hidden centres -> each hidden group's points."""

import keras
import numpy as np
from keras import ops

from keras_mim.layers.layer_norm import LayerNorm
from keras_mim.layers.transformer_block import TransformerBlock
from keras_mim.utils import check_positive_int


@keras.saving.register_keras_serializable(package="keras_mim")
class PointMAEDecoder(keras.layers.Layer):
    """Visible latents `(B, V, D)` and the centres of the visible and hidden groups ->
    the hidden groups' points `(B, M, group_size, 3)`, relative to their centres.

    As the official `TransformerDecoder` + `increase_dim`: the mask tokens (one learned
    token) follow the visible latents, each token gets the decoder's own position MLP of
    its centre added before every block, and after the blocks and a LayerNorm only the
    last M (the hidden groups) go through a linear head to `3 * group_size` values.
    The decoder is as wide as the encoder (no projection), as the official model.

    Args:
        group_size: points per group (the head predicts `3 * group_size` values a token).
        depth: blocks (Point-MAE: 4).
        num_heads: heads (6).
        mlp_ratio: MLP width / token width.
        drop_path_rate: stochastic depth of the last block (0.1, rising linearly).
        norm_epsilon: LayerNorm epsilon (1e-5).
        **kwargs: standard layer arguments.

    Examples:
        >>> import numpy as np
        >>> decoder = PointMAEDecoder(group_size=4, depth=1, num_heads=2)
        >>> out = decoder(np.zeros((2, 3, 16), "float32"), np.zeros((2, 3, 3), "float32"), np.zeros((2, 5, 3), "float32"))
        >>> tuple(out.shape)
        (2, 5, 4, 3)
    """

    def __init__(self, group_size, depth=4, num_heads=6, mlp_ratio=4.0, drop_path_rate=0.1, norm_epsilon=1e-5,
                 **kwargs):
        super().__init__(**kwargs)
        self.group_size = check_positive_int(group_size, "group_size")
        self.depth = check_positive_int(depth, "depth")
        self.num_heads = check_positive_int(num_heads, "num_heads")
        self.mlp_ratio, self.drop_path_rate, self.norm_epsilon = float(mlp_ratio), float(drop_path_rate), float(norm_epsilon)
        p = self.dtype_policy
        self.pos_fc1 = keras.layers.Dense(128, dtype=p, name="pos_fc1")
        self.pos_fc2 = None  # width of the tokens: made in build
        rates = np.linspace(0.0, self.drop_path_rate, depth)
        self.blocks = [TransformerBlock(num_heads, mlp_ratio, qkv_bias=False, drop_path=float(rates[i]),
                                        norm_epsilon=norm_epsilon, dtype=p, name=f"decoder_block_{i}")
                       for i in range(depth)]
        self.norm = LayerNorm(epsilon=norm_epsilon, dtype=p, name="decoder_norm")
        self.head = keras.layers.Dense(3 * group_size, dtype=p, name="decoder_pred")

    def build(self, latent_shape, visible_centres_shape=None, hidden_centres_shape=None):
        dim = latent_shape[-1]
        if dim % self.num_heads:
            raise ValueError(f"`num_heads`={self.num_heads} must divide the token width {dim}.")
        self.pos_fc1.build((None, None, 3))
        self.pos_fc2 = keras.layers.Dense(dim, dtype=self.dtype_policy, name="pos_fc2")
        self.pos_fc2.build((None, None, 128))
        self.mask_token = self.add_weight(shape=(1, 1, dim), initializer=keras.initializers.TruncatedNormal(stddev=0.02),
                                          name="mask_token")
        shape = (None, None, dim)
        for block in self.blocks:
            block.build(shape)
        self.norm.build(shape)
        self.head.build(shape)

    def call(self, latent, visible_centres, hidden_centres, training=None):
        m = hidden_centres.shape[1]
        centres = ops.concatenate([visible_centres, hidden_centres], axis=1)  # (B, V + M, 3)
        pos = self.pos_fc2(keras.activations.gelu(self.pos_fc1(centres), approximate=False))
        mask_tokens = ops.broadcast_to(ops.cast(self.mask_token, latent.dtype),
                                       (ops.shape(latent)[0], m, latent.shape[-1]))
        x = ops.concatenate([latent, mask_tokens], axis=1)  # (B, V + M, D)
        for block in self.blocks:
            x = block(x + pos, training=training)
        x = self.head(self.norm(x[:, -m:]))  # (B, M, 3K)
        return ops.reshape(x, (-1, m, self.group_size, 3))

    def get_config(self):
        config = super().get_config()
        config.update(group_size=self.group_size, depth=self.depth, num_heads=self.num_heads, mlp_ratio=self.mlp_ratio,
                      drop_path_rate=self.drop_path_rate, norm_epsilon=self.norm_epsilon)
        return config
