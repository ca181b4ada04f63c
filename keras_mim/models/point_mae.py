"""Point-MAE: Masked Autoencoders for Point Cloud Self-supervised Learning (Pang et al., ECCV 2022).

Official code: Pang-Yatian/Point-MAE (`models/Point_MAE.py`: `Group`, `Encoder`, `MaskTransformer`,
`Point_MAE`). Differences from it: docs/points.md.
"""

import keras
from keras import ops

from keras_mim.layers.point_ops import chamfer_l2
from keras_mim.layers.token_ops import gather_tokens
from keras_mim.masking import get_mask_generator
from keras_mim.models.methods import MethodSpec, register_method
from keras_mim.models.point_encoder import PointEncoder
from keras_mim.models.point_mae_decoder import PointMAEDecoder
from keras_mim.models.pretraining_model import PretrainingModel
from keras_mim.utils import check_mask_ratio


@keras.saving.register_keras_serializable(package="keras_mim")
class PointMAE(PretrainingModel):
    """Masked autoencoding of point clouds: hide groups, rebuild their points.

    `call(points, noise=None)` groups each cloud (`encoder.group`: farthest point
    sampling + k-NN), hides `mask_ratio` of the groups (random, 0.6), encodes the
    visible groups only (the hidden groups' points never reach the encoder), and the
    decoder predicts every hidden group's points relative to its centre from the mask
    tokens placed at the hidden centres. The loss is the Chamfer-L2 distance between
    predicted and true points of each hidden group, averaged (`compute_loss`, float32).
    Returns a dict: `pred` `(B, M, K, 3)`, `target` (the hidden groups' true points,
    same shape), `mask` `(B, G)` (1 = hidden), `ids_restore` `(B, G)`.

    Args:
        encoder: a `PointEncoder`.
        decoder: a `PointMAEDecoder`, a dict of its arguments (`depth`, `num_heads`, ...)
            or None (Point-MAE's 4 blocks of 6 heads).
        mask_generator: a mask strategy on the group grid (`"random"`), or a `MaskGenerator`.
        mask_ratio: fraction of hidden groups (0.6).
        seed: optional int seed of the masks.
        **kwargs: standard model arguments.

    Examples:
        >>> import numpy as np
        >>> model = PointMAE.from_preset("pointmae_test", seed=0)
        >>> out = model(np.random.rand(2, 64, 3).astype("float32"))
        >>> tuple(out["pred"].shape), float(model.compute_loss(x=None, y_pred=out)) > 0
        ((2, 4, 8, 3), True)
    """

    input_verb = "pretrains on"

    def __init__(self, encoder, decoder=None, mask_generator="random", mask_ratio=0.6, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(encoder, PointEncoder):
            raise TypeError(f"`encoder` must be a PointEncoder, got {type(encoder).__name__}.")
        self.encoder = encoder
        if decoder is None or isinstance(decoder, dict):
            decoder = PointMAEDecoder(encoder.group_size, **{"name": "decoder", **(decoder or {})})
        elif not isinstance(decoder, PointMAEDecoder) or decoder.group_size != encoder.group_size:
            raise TypeError(f"`decoder` must be a PointMAEDecoder of group_size={encoder.group_size}, a dict of its "
                            f"arguments or None, got {decoder!r:.80}.")
        self.decoder = decoder
        self.mask_generator = get_mask_generator(mask_generator, mask_ratio=mask_ratio, seed=seed)
        self.mask_ratio = check_mask_ratio(self.mask_generator.mask_ratio, encoder.num_groups)
        self.num_visible = self.mask_generator.num_visible(encoder.grid_shape)
        if self.num_visible == encoder.num_groups:
            raise ValueError(f"`mask_ratio`={mask_ratio} hides none of the {encoder.num_groups} groups; Point-MAE "
                             "learns from the hidden ones.")
        self.seed = seed

    def build(self, points_shape=None):
        if not self.encoder.built:
            self.encoder.build()
        if not self.decoder.built:
            self.decoder.build((None, self.num_visible, self.encoder.embed_dim))
        self.built = True

    # ------------------------------------------------------------------ the method
    def forward_encoder(self, neighbourhoods, centres, noise=None, training=None):
        masking = self.random_masking(centres, noise=noise)  # ids_keep (B, V), ids_restore, mask (B, G)
        latent = self.encoder.encode_groups(neighbourhoods, centres, ids_keep=masking["ids_keep"], training=training)
        return latent, masking

    def call(self, points, noise=None, training=None):
        neighbourhoods, centres = self.encoder.group(points)  # (B, G, K, 3), (B, G, 3)
        return self.forward_groups(neighbourhoods, centres, noise=noise, training=training)

    def forward_groups(self, neighbourhoods, centres, noise=None, training=None):
        """`call` on clouds already grouped (`encoder.group`)."""
        latent, masking = self.forward_encoder(neighbourhoods, centres, noise=noise, training=training)
        ids_hidden = ops.argsort(masking["ids_restore"], axis=1)[:, self.num_visible :]  # (B, M)
        pred = self.decoder(latent, gather_tokens(centres, masking["ids_keep"]), gather_tokens(centres, ids_hidden),
                            training=training)  # (B, M, K, 3)
        target = ops.take_along_axis(neighbourhoods, ops.reshape(ids_hidden, (-1, ids_hidden.shape[1], 1, 1)), axis=1)
        return {"pred": pred, "target": target, "mask": masking["mask"], "ids_restore": masking["ids_restore"],
                "centres": centres}

    def forward_loss(self, pred, target):
        return ops.mean(chamfer_l2(pred, target))  # Chamfer-L2 per hidden group, averaged

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if y_pred is None:
            y_pred = self(x, training=training)
        return self.add_layer_losses(self.forward_loss(y_pred["pred"], y_pred["target"]))

    def reconstruct(self, points, noise=None):
        """For figures: `(visible, hidden, predicted)` points in the clouds' own coordinates,
        `(B, V * K, 3)`, `(B, M * K, 3)` and `(B, M * K, 3)` (numpy)."""
        neighbourhoods, centres = self.encoder.group(points)
        out = self.forward_groups(neighbourhoods, centres, noise=noise, training=False)
        ids = ops.argsort(out["ids_restore"], axis=1)
        k = self.encoder.group_size
        groups = neighbourhoods + ops.expand_dims(centres, 2)  # (B, G, K, 3)
        sorted_groups = ops.take_along_axis(groups, ops.reshape(ids, (-1, ids.shape[1], 1, 1)), axis=1)
        hidden_centres = gather_tokens(centres, ids[:, self.num_visible :])
        predicted = out["pred"] + ops.expand_dims(hidden_centres, 2)
        flat = lambda t: ops.convert_to_numpy(ops.reshape(t, (-1, t.shape[1] * k, 3)))  # noqa: E731
        return flat(sorted_groups[:, : self.num_visible]), flat(sorted_groups[:, self.num_visible :]), flat(predicted)

    def get_config(self):
        config = super().get_config()
        config.update(encoder=keras.saving.serialize_keras_object(self.encoder),
                      decoder=keras.saving.serialize_keras_object(self.decoder),
                      mask_generator=keras.saving.serialize_keras_object(self.mask_generator),
                      mask_ratio=self.mask_ratio, seed=self.seed)
        return config


def point_encoder(num_points, num_groups, group_size, embed_dim, depth, num_heads, drop_path_rate=0.1):
    """PointEncoder arguments of one architecture."""
    return dict(num_points=num_points, num_groups=num_groups, group_size=group_size, embed_dim=embed_dim,
                depth=depth, num_heads=num_heads, drop_path_rate=drop_path_rate)


register_method(MethodSpec(
    name="pointmae", model=PointMAE, family="points", data="points",
    description="Point-MAE: groups of points by FPS + k-NN, 0.6 hidden, Chamfer-L2 on the hidden groups' points.",
    paper="Pang et al., ECCV 2022", code="Pang-Yatian/Point-MAE", test_preset="pointmae_test",
    cli_preset="pointmae_tiny",
    presets={
        "pointmae_base": dict(
            description="Point-MAE: 1024 points, 64 groups of 32, 384 x 12 blocks x 6 heads, decoder 4 x 6 (official).",
            encoder_class=PointEncoder, encoder=point_encoder(1024, 64, 32, 384, 12, 6),
            decoder=dict(depth=4, num_heads=6)),
        "pointmae_tiny": dict(
            description="Point-MAE 128 x 4 x 4 on 512 points, 32 groups of 16, decoder 2 x 4: trains on a CPU.",
            encoder_class=PointEncoder, encoder=point_encoder(512, 32, 16, 128, 4, 4),
            decoder=dict(depth=2, num_heads=4)),
        "pointmae_test": dict(
            description="Point-MAE on 64 points, 8 groups of 8, 32 x 2 x 2, ratio 0.5: for tests.",
            encoder_class=PointEncoder, encoder=point_encoder(64, 8, 8, 32, 2, 2, drop_path_rate=0.0),
            decoder=dict(depth=1, num_heads=2, drop_path_rate=0.0), kwargs={"mask_ratio": 0.5}),
    },
))
