"""VideoMAE (Tong et al., 2022) and the dual masking of VideoMAE V2 (Wang et al., 2023)."""

import keras

from keras_mim.models.masked_autoencoder import MaskedAutoencoder
from keras_mim.targets import PixelTarget


@keras.saving.register_keras_serializable(package="keras_mim")
class VideoMAE(MaskedAutoencoder):
    """MAE on clips: tubelet tokens, tube masking, per-channel normalised tubelet targets.

    The encoder is a video `ViTEncoder` (`num_frames` set): a clip `(B, T, H, W, C)`
    becomes `(T/t) x (H/p) x (W/p)` tubelet tokens. Tube masking (default ratio 0.9)
    hides the same spatial positions in every time slice, the encoder sees the rest,
    the MAE decoder predicts every tubelet, and the loss is the MSE on hidden tubelets
    against their pixels normalised per tubelet and per channel
    (`(x - mean) / (std + 1e-6)`, unbiased std, as the official VideoMAE).

    VideoMAE V2's dual masking (`decoder_mask_generator="running_cell"`, ratio 0.5):
    the decoder runs only on the visible tokens plus the hidden tokens that the
    running-cell decoder mask keeps, and the loss is taken on tokens hidden from the
    encoder AND kept by the decoder mask (MaskedAutoencoder's partial reconstruction;
    `call(clips, noise=None, decoder_noise=None)` then also returns `decode_mask`).

    Args:
        encoder: a video `ViTEncoder` (`num_frames`, `tubelet_size`).
        decoder: as `MaskedAutoencoder` (VideoMAE ViT-B: 384 x 4 blocks x 6 heads).
        mask_generator: encoder mask, a `MaskGenerator` or name (default `"tube"`).
        mask_ratio: encoder mask ratio (VideoMAE: 0.9).
        decoder_mask_generator: None (plain VideoMAE), or the decoder mask of dual
            masking, a `MaskGenerator` or name (VideoMAE V2: `"running_cell"`).
        decoder_mask_ratio: fraction of tokens the decoder mask hides (V2: 0.5).
        norm_pix_loss: normalise targets per tubelet and channel (default True).
        norm_pix_eps: epsilon added to the std (default 1e-6).
        target: None (pixels, per `norm_pix_loss`) or a `keras_mim.targets.Target`.
        seed: optional int seed of the mask generators built from names.
        **kwargs: standard model arguments (name, dtype).

    Example:
    >>> import numpy as np
    >>> model = VideoMAE.from_preset("videomaev2_vit_test", seed=0)
    >>> out = model(np.random.rand(2, 8, 16, 16, 3).astype("float32"))
    >>> tuple(out["pred"].shape), int(keras.ops.sum(out["decode_mask"][0]))
    ((2, 64, 96), 24)
    """

    encoder_defaults = {"cls_token": False}  # VideoMAE's encoder has no cls token

    def __init__(
        self,
        encoder,
        decoder=None,
        mask_generator="tube",
        mask_ratio=0.9,
        decoder_mask_generator=None,
        decoder_mask_ratio=0.5,
        norm_pix_loss=None,
        norm_pix_eps=None,
        target=None,
        seed=None,
        **kwargs,
    ):
        if getattr(encoder, "num_frames", None) is None:
            raise ValueError(
                "VideoMAE pretrains on clips: `encoder` must be a video encoder, e.g. "
                "`ViTEncoder(num_frames=16, tubelet_size=2, ...)`, got one for images; use "
                "MaskedAutoencoder for images."
            )
        super().__init__(
            encoder, decoder=decoder, mask_generator=mask_generator, mask_ratio=mask_ratio,
            norm_pix_loss=norm_pix_loss, norm_pix_eps=norm_pix_eps, target=target,
            decoder_mask_generator=decoder_mask_generator, decoder_mask_ratio=decoder_mask_ratio,
            seed=seed, **kwargs,
        )

    @staticmethod
    def make_target(target, norm_pix_loss=None, norm_pix_eps=None):
        """VideoMAE's target: tubelet pixels normalised per channel, `(x - mean) / (std + eps)`."""
        if target is None:
            return PixelTarget(
                normalize=True if norm_pix_loss is None else bool(norm_pix_loss),
                per_channel=True, unbiased=True, eps_on_std=True,
                eps=1e-6 if norm_pix_eps is None else norm_pix_eps,
            )
        return MaskedAutoencoder.make_target(target, norm_pix_loss, norm_pix_eps)
