"""What the sparse convolutional methods share (FCMAE, SparK): a mask on the encoder's cell
grid, the sparse encoding of every stage, and the per-cell pixel loss on hidden cells."""

import keras

from keras_mim.layers.patching import patchify, unpatchify
from keras_mim.losses import masked_mean
from keras_mim.masking import get_mask_generator
from keras_mim.models.pretraining_model import PretrainingModel, check_encoder
from keras_mim.models.reconstruction import make_target, pixel_reconstruction
from keras_mim.utils import check_mask_ratio


class SparseConvPretraining(PretrainingModel):
    """Base of the pretraining models of sparse convolutional encoders.

    Sets `encoder` (a `ConvolutionalEncoder`), `patch_size` (its 32 px cell), the pixel
    `target` (per-cell normalised by default), `mask_generator` and `mask_ratio`. The step:
    `forward_encoder` decides the hidden cells and encodes every stage sparsely,
    `forward_decoder(features, mask)` (the subclass's) predicts `(B, N, 32 * 32 * C)`,
    `forward_loss` is the target's loss averaged over hidden cells. `call(images,
    noise=None)` returns `pred`, `mask` `(B, N)` (1 = hidden) and `ids_restore`.
    """

    def __init__(self, encoder, mask_generator="random", mask_ratio=0.6, norm_pix_loss=True, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.encoder = check_encoder(encoder, type(self).__name__)
        if not hasattr(encoder, "forward_stages"):
            raise TypeError(f"`encoder` must be a convolutional encoder such as ConvNeXtEncoder or SparseCNN, "
                            f"got {type(encoder).__name__}.")
        self.patch_size = encoder.patch_size  # (32, 32): one mask cell
        self.target = make_target(None, norm_pix_loss, None)
        self.mask_generator = get_mask_generator(mask_generator, mask_ratio=mask_ratio, seed=seed,
                                                 patch_size=encoder.patch_size[0])
        self.mask_ratio = check_mask_ratio(self.mask_generator.mask_ratio, encoder.num_patches)
        self.seed = seed

    def patchify(self, images):
        """`(B, H, W, C) -> (B, N, 32 * 32 * C)`, one row per mask cell."""
        return patchify(images, self.patch_size)

    def unpatchify(self, patches):
        return unpatchify(patches, self.patch_size, self.encoder.input_size + (self.encoder.num_channels,))

    def forward_encoder(self, images, noise=None, training=None):
        """`(stage maps finest first, masking)`: hidden cells zero in every stage."""
        self.encoder.check_images(images)
        masking = self.random_masking(images, noise=noise)  # mask (B, N), 1 = hidden
        return self.encoder.stages(images, masking["mask"], training=training), masking

    def forward_decoder(self, features, mask, training=None):
        raise NotImplementedError

    def forward_loss(self, images, pred, mask):
        target = self.target(images, patch_size=self.patch_size)  # (B, N, P) float32
        return masked_mean(self.target.loss_per_token(pred, target), mask)  # hidden cells only

    def call(self, images, noise=None, training=None):
        features, masking = self.forward_encoder(images, noise=noise, training=training)
        pred = self.forward_decoder(features, masking["mask"], training=training)
        return {"pred": pred, "mask": masking["mask"], "ids_restore": masking["ids_restore"]}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if y_pred is None:
            y_pred = self(x, training=training)
        return self.add_layer_losses(self.forward_loss(x, y_pred["pred"], y_pred["mask"]))

    def reconstruct(self, images, noise=None):
        """`(reconstruction, pixel_mask, mask)` as `MaskedAutoencoder.reconstruct`."""
        out = self(images, noise=noise, training=False)
        rec, pixel_mask = pixel_reconstruction(self.target, images, out["pred"], out["mask"], self.patch_size)
        return rec, pixel_mask, out["mask"]

    def get_config(self):
        config = super().get_config()
        config.update(
            encoder=keras.saving.serialize_keras_object(self.encoder),
            mask_generator=keras.saving.serialize_keras_object(self.mask_generator),
            mask_ratio=self.mask_ratio,
            norm_pix_loss=self.target.normalize,
            seed=self.seed,
        )
        return config
