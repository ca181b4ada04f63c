"""HPM: Hard Patches Mining for Masked Image Modeling (Wang et al., CVPR 2023).

Official code: Haochen-Wang409/HPM (`models_mae_learn_loss.py`, `engine_pretrain.py`,
`main_pretrain.py`). MAE plus a loss predictor: a second decoder branch predicts each
patch's reconstruction loss. An EMA copy of the model (the teacher) sees the whole image
and ranks its patches by predicted loss; the hardest `alpha * N_hidden` are always
hidden, the rest of the hidden set is random, and `alpha` rises as
`alpha_max * (epoch + 1) / epochs`. The student's predictor learns the order of its own
(detached) per-patch losses on the hidden patches with a pairwise binary cross-entropy,
added with weight 1 to the MAE loss.
"""

import inspect
import numbers

import keras
from keras import ops

from keras_mim.ema import check_same_variables, ema_update, frozen_copy
from keras_mim.losses import masked_mean
from keras_mim.masking.easy_to_hard_mask_generator import EasyToHardMaskGenerator, check_alpha
from keras_mim.models.mae_decoder import MAEDecoder, make_decoder
from keras_mim.models.masked_autoencoder import MaskedAutoencoder
from keras_mim.models.methods import MethodSpec, register_method
from keras_mim.models.presets import MAE_DECODER, TEST_DECODER, TEST_VIT, VIT_BASE_16
from keras_mim.utils import check_positive_int

RANKING_EPS = 1e-6  # inside the logs of the official ranking loss
EMA_MOMENTUM = (0.999, 0.9999)  # official EMA decay: first and final value
EMA_RAMP_EPOCHS = 100  # official: the decay rises linearly over the first 100 epochs


def pairwise_ranking_loss(loss_pred, loss_target, mask, eps=RANKING_EPS):
    """HPM's relative loss-prediction objective (official `forward_learning_loss`, relative=True).

    For every ordered pair `(i, j)` of hidden patches of a sample with different target
    losses, a binary cross-entropy on the logit `pred_j - pred_i` with label
    `target_j > target_i`, written as the official code does
    (`-log(sigmoid(z) + eps)`, `-log(1 - sigmoid(z) + eps)`); summed over the batch and
    divided by the number of such pairs (at least 1). The targets are detached.

    Args:
        loss_pred: `(B, N)` predicted per-patch losses.
        loss_target: `(B, N)` actual per-patch reconstruction losses (no gradient flows
            into them).
        mask: `(B, N)`, 1 = hidden; only hidden patches form pairs.
        eps: epsilon inside the logs.

    Examples:
        >>> import numpy as np
        >>> pred, target = np.array([[0.0, 0.0, 5.0]]), np.array([[1.0, 2.0, 3.0]])
        >>> round(float(pairwise_ranking_loss(pred, target, np.array([[1.0, 1.0, 0.0]]))), 4)
        0.6931
    """
    pred = ops.cast(loss_pred, "float32")
    target = ops.stop_gradient(ops.cast(loss_target, "float32"))
    mask = ops.cast(mask, "float32")
    pairs = ops.expand_dims(mask, 1) * ops.expand_dims(mask, 2)  # (B, N, N): both hidden
    gap = ops.expand_dims(target, 1) - ops.expand_dims(target, 2)  # [b, i, j] = t_j - t_i
    positive = ops.cast(gap > 0, "float32") * pairs
    negative = ops.cast(gap < 0, "float32") * pairs
    prob = ops.sigmoid(ops.expand_dims(pred, 1) - ops.expand_dims(pred, 2))  # sigmoid(p_j - p_i)
    loss = -positive * ops.log(prob + eps) - negative * ops.log(1.0 - prob + eps)
    return ops.sum(loss) / ops.maximum(ops.sum(positive + negative), 1.0)


@keras.saving.register_keras_serializable(package="keras_mim")
class HPM(MaskedAutoencoder):
    """HPM pretraining: MAE whose masks hide the patches an EMA teacher predicts hardest.

    `call(images, noise=None)` returns a dict: `pred` `(B, N, P)`, `mask` `(B, N)`
    (1 = hidden), `ids_restore` `(B, N)`, `loss_pred` `(B, N)` (the student's predicted
    per-patch loss) and, unless `noise` fixes the mask, `difficulty` `(B, N)` (the
    teacher's). Masks: the teacher (EMA copies of the encoder and the loss predictor,
    as the official `ModelEma`) encodes all N patches and predicts their losses; the
    `floor(alpha * N_hidden)` highest are hidden, the other hidden patches random
    (`EasyToHardMaskGenerator`). The loss (float32) is the MAE loss on hidden patches
    plus `pairwise_ranking_loss(loss_pred, detached per-patch losses, mask)`.

    Schedules (official, per epoch): `alpha = alpha_max * (epoch + 1) / epochs`, and
    the EMA momentum rising from 0.999 to 0.9999 over the first 100 epochs. They live in
    the non-trainable variables `alpha` and `ema_momentum`, set by the `HPMSchedule`
    callback at each epoch start; `fit` adds `HPMSchedule(epochs)` itself unless you
    pass one (pass your own when a run spans several `fit` calls). Outside `fit`,
    `alpha` keeps its value (0 at first: random masks); set it with `set_alpha`. The
    teacher follows the student inside `compute_loss` with the weights before that
    step's update (the official updates after it: a one-step lag). Besides `loss`, `fit`
    and `evaluate` log `reconstruction_loss`, `ranking_loss` and `alpha` (as the
    training steps saw it).

    Args:
        encoder: a `ViTEncoder`.
        decoder: the pixel decoder: a `MAEDecoder`, a dict of its arguments, or None
            (MAE's 512 x 8 x 16).
        loss_predictor: the loss-predicting branch: a `MAEDecoder` with `output_dim=1`,
            a dict of its arguments, or None (the decoder's architecture, as the
            official, which gives it as many blocks as the pixel decoder).
        alpha_max: final fraction of hidden patches chosen by difficulty, in [0, 1]
            (official: 0.5).
        mask_generator: None, or an `EasyToHardMaskGenerator` (e.g. to share a seed).
        mask_ratio: fraction of hidden patches (HPM: 0.75); at least 2 must be hidden.
        norm_pix_loss: as `MaskedAutoencoder`.
        norm_pix_eps: as `MaskedAutoencoder`.
        target: as `MaskedAutoencoder`.
        seed: as `MaskedAutoencoder`.
        **kwargs: standard model arguments (name, dtype).

    Examples:
        >>> import numpy as np
        >>> model = HPM.from_preset("hpm_vit_test", seed=0)
        >>> out = model(np.random.rand(2, 16, 16, 3).astype("float32"))
        >>> sorted(out), tuple(out["loss_pred"].shape)
        (['difficulty', 'ids_restore', 'loss_pred', 'mask', 'pred'], (2, 16))
    """

    def __init__(
        self,
        encoder,
        decoder=None,
        loss_predictor=None,
        alpha_max=0.5,
        mask_generator=None,
        mask_ratio=0.75,
        norm_pix_loss=None,
        norm_pix_eps=None,
        target=None,
        seed=None,
        **kwargs,
    ):
        alpha_max = check_alpha(alpha_max, "alpha_max")
        if mask_generator is None:
            mask_generator = EasyToHardMaskGenerator(mask_ratio, alpha=alpha_max, seed=seed)
        elif not isinstance(mask_generator, EasyToHardMaskGenerator):
            raise TypeError(
                f"HPM masks by predicted difficulty: `mask_generator` must be None or an "
                f"EasyToHardMaskGenerator, got {mask_generator!r}."
            )
        if loss_predictor is not None and not isinstance(loss_predictor, (dict, MAEDecoder)):
            raise TypeError(
                f"`loss_predictor` must be a MAEDecoder, a dict of its arguments or None, got "
                f"{type(loss_predictor).__name__}."
            )
        super().__init__(
            encoder, decoder=decoder, mask_generator=mask_generator, mask_ratio=mask_ratio,
            norm_pix_loss=norm_pix_loss, norm_pix_eps=norm_pix_eps, target=target, seed=seed, **kwargs,
        )
        hidden = encoder.num_patches - self.num_visible
        if hidden < 2:
            raise ValueError(
                f"HPM ranks hidden patches against each other; `mask_ratio`={self.mask_ratio!r} hides "
                f"{hidden} of {encoder.num_patches} patches, expected at least 2."
            )
        self.alpha_max = alpha_max
        if loss_predictor is None:  # the pixel decoder's architecture, as the official
            keys = ("decoder_dim", "depth", "num_heads", "mlp_ratio", "norm_epsilon")
            loss_predictor = {k: getattr(self.decoder, k) for k in keys}
        if isinstance(loss_predictor, dict):
            loss_predictor = {"name": "loss_predictor", **loss_predictor}
        self.loss_predictor = make_decoder(loss_predictor, encoder, 1)
        # The teacher: EMA copies of the parts that predict losses (built with them, in `build`).
        self.teacher_encoder = frozen_copy(self.encoder, name="teacher_encoder")
        self.teacher_loss_predictor = MAEDecoder.from_config(
            {**self.loss_predictor.get_config(), "name": "teacher_loss_predictor"}
        )
        self.teacher_loss_predictor.trainable = False
        self.trackers = {k: keras.metrics.Mean(name=k) for k in ("reconstruction_loss", "ranking_loss", "alpha")}

    def build(self, images_shape=None):
        if self.built:
            return
        super().build()  # encoder and pixel decoder
        enc = self.encoder
        if not self.loss_predictor.built:
            self.loss_predictor.build((None, self.num_visible + enc.num_prefix_tokens, enc.output_dim))
        if not self.teacher_loss_predictor.built:  # starts as a copy of the loss predictor
            self.teacher_loss_predictor.build((None, enc.num_patches + enc.num_prefix_tokens, enc.output_dim))
            self.teacher_loss_predictor.set_weights(self.loss_predictor.get_weights())
        check_same_variables(self.teacher_encoder, self.encoder)
        check_same_variables(self.teacher_loss_predictor, self.loss_predictor)
        self.alpha = self.add_weight(shape=(), initializer="zeros", trainable=False, dtype="float32", name="alpha")
        self.ema_momentum = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(EMA_MOMENTUM[0]), trainable=False,
            dtype="float32", name="ema_momentum",
        )
        self.built = True

    def set_alpha(self, alpha):
        """Set the fraction of hidden patches chosen by difficulty (in [0, 1])."""
        self.alpha.assign(check_alpha(alpha))

    # ------------------------------------------------------------------ the method
    def predict_difficulty(self, images):
        """The teacher's predicted loss of every patch, `(B, N)`, without gradient."""
        n = self.encoder.num_patches
        latent = self.teacher_encoder(images, training=False)  # (B, 1 + N, D): nothing hidden
        identity = ops.broadcast_to(ops.arange(n, dtype="int32")[None], (ops.shape(images)[0], n))
        loss_pred = self.teacher_loss_predictor(latent, identity, training=False)  # (B, N, 1)
        return ops.stop_gradient(ops.cast(loss_pred[..., 0], "float32"))

    def easy_to_hard_masking(self, images, noise=None):
        """Masks from the teacher's difficulty at the current `alpha` (or from `noise`)."""
        if noise is not None:
            return self.random_masking(images, noise=noise), None
        difficulty = self.predict_difficulty(images)  # (B, N)
        masking = self.mask_generator(
            images, grid_shape=self.encoder.grid_shape, difficulty=difficulty, alpha=self.alpha
        )
        return masking, difficulty

    def forward_encoder(self, images, noise=None, training=None):
        self.encoder.check_images(images)
        masking, difficulty = self.easy_to_hard_masking(images, noise=noise)
        latent = self.encoder(images, ids_keep=masking["ids_keep"], training=training)  # (B, 1+K, D)
        return latent, masking, difficulty

    def forward_loss_predictor(self, latent, ids_restore, training=None):
        loss_pred = self.loss_predictor(latent, ids_restore, training=training)  # (B, N, 1)
        return ops.cast(loss_pred[..., 0], "float32")

    def reconstruction_losses(self, images, pred):
        """Per-patch loss against the target (`Target.loss_per_token`: MSE unless the
        target says otherwise), `(B, N)` float32."""
        return self.target.loss_per_token(pred, self.target(images, patch_size=self.patch_size))

    def forward_loss(self, images, pred, mask):
        return masked_mean(self.reconstruction_losses(images, pred), mask)

    def forward_ranking_loss(self, loss_pred, per_patch_loss, mask):
        return pairwise_ranking_loss(loss_pred, per_patch_loss, mask)

    def update_teacher(self):
        momentum = self.ema_momentum
        ema_update(self.teacher_encoder, self.encoder, momentum)
        ema_update(self.teacher_loss_predictor, self.loss_predictor, momentum)

    def call(self, images, noise=None, training=None):
        latent, masking, difficulty = self.forward_encoder(images, noise=noise, training=training)
        out = {
            "pred": self.forward_decoder(latent, masking, training=training)["pred"],
            "mask": masking["mask"],
            "ids_restore": masking["ids_restore"],
            "loss_pred": self.forward_loss_predictor(latent, masking["ids_restore"], training=training),
        }
        if difficulty is not None:
            out["difficulty"] = difficulty
        return out

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if y_pred is None:
            y_pred = self(x, training=training)
        per_patch = self.reconstruction_losses(x, y_pred["pred"])  # (B, N)
        reconstruction = masked_mean(per_patch, y_pred["mask"])
        ranking = self.forward_ranking_loss(y_pred["loss_pred"], per_patch, y_pred["mask"])
        if training:
            self.update_teacher()
        for key, value in (("reconstruction_loss", reconstruction), ("ranking_loss", ranking),
                           ("alpha", self.alpha)):
            self.trackers[key].update_state(value)
        loss = reconstruction + ranking  # official: `loss += loss_learn`
        return self.add_layer_losses(loss)

    def training_callbacks(self, epochs, steps_per_epoch=None):
        """The callbacks this method's schedules need over a run of `epochs` epochs."""
        return [HPMSchedule(epochs)]

    def fit(self, *args, **kwargs):
        """`keras.Model.fit`, with `HPMSchedule(epochs)` added unless a callback is one."""
        bound = inspect.signature(keras.Model.fit).bind(self, *args, **kwargs)
        callbacks = bound.arguments.get("callbacks")
        given = list(getattr(callbacks, "callbacks", callbacks) or [])
        epochs = bound.arguments.get("epochs", 1)
        automatic = isinstance(epochs, numbers.Integral) and not isinstance(epochs, bool) and epochs > 0
        if automatic and not any(isinstance(c, HPMSchedule) for c in given):
            schedule = HPMSchedule(int(epochs))
            if isinstance(callbacks, keras.callbacks.CallbackList):
                callbacks.append(schedule)
            else:
                bound.arguments["callbacks"] = given + [schedule]
        return super().fit(*bound.args[1:], **bound.kwargs)

    def get_config(self):
        config = super().get_config()
        config.update(loss_predictor=keras.saving.serialize_keras_object(self.loss_predictor),
                      alpha_max=self.alpha_max)
        return config


register_method(MethodSpec(
    name="hpm", model=HPM, family="pixels", pixels=True,
    description="HPM: MAE plus a loss predictor that hides the hardest patches.",
    paper="Wang et al., CVPR 2023", code="Haochen-Wang409/HPM",
    presets={
        "hpm_vit_base_patch16": dict(
            description="HPM ViT-B/16: MAE plus a loss predictor; easy-to-hard masks (alpha up to 0.5).",
            encoder=VIT_BASE_16, decoder=MAE_DECODER),
        "hpm_vit_test": dict(description="HPM on the test ViT.", encoder=TEST_VIT, decoder=TEST_DECODER),
    },
))


class HPMSchedule(keras.callbacks.Callback):
    """Sets an `HPM` model's schedules at the start of every epoch, as the official code.

    `alpha = alpha_max * min(epoch + 1, epochs) / epochs` (the model's `alpha_max`), and
    the EMA momentum `start + (end - start) * min(epoch / ramp_epochs, 1)`.

    Args:
        epochs: total epochs of the pretraining run (positive int).
        momentum: `(start, end)` EMA momentum (official: 0.999, 0.9999), each in [0, 1].
        ramp_epochs: epochs over which the momentum rises (official: 100; positive int).

    Examples:
        >>> schedule = HPMSchedule(epochs=4)
        >>> [round(schedule.alpha(e, alpha_max=0.5), 3) for e in range(4)]
        [0.125, 0.25, 0.375, 0.5]
    """

    def __init__(self, epochs, momentum=EMA_MOMENTUM, ramp_epochs=EMA_RAMP_EPOCHS):
        super().__init__()
        self.epochs = check_positive_int(epochs, "epochs")
        if (
            not isinstance(momentum, (tuple, list))
            or len(momentum) != 2
            or any(isinstance(m, bool) or not isinstance(m, (int, float)) or not 0 <= m <= 1 for m in momentum)
        ):
            raise ValueError(f"`momentum` must be a pair (start, end) of floats in [0, 1], got {momentum!r}.")
        self.momentum = tuple(float(m) for m in momentum)
        self.ramp_epochs = check_positive_int(ramp_epochs, "ramp_epochs")

    def alpha(self, epoch, alpha_max):
        return alpha_max * min(epoch + 1, self.epochs) / self.epochs

    def ema_momentum(self, epoch):
        start, end = self.momentum
        return start + (end - start) * min(epoch / self.ramp_epochs, 1.0)

    def on_train_begin(self, logs=None):
        if not isinstance(self.model, HPM):
            raise TypeError(f"HPMSchedule drives an HPM model, got {type(self.model).__name__}.")

    def on_epoch_begin(self, epoch, logs=None):
        # On JAX, fit re-reads the variables after `on_epoch_begin`, so the jitted step sees these.
        self.model.alpha.assign(self.alpha(epoch, self.model.alpha_max))
        self.model.ema_momentum.assign(self.ema_momentum(epoch))

    def get_config(self):
        return {"epochs": self.epochs, "momentum": self.momentum, "ramp_epochs": self.ramp_epochs}
