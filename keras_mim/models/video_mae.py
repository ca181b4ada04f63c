"""VideoMAE (Tong et al., NeurIPS 2022) and the dual masking of VideoMAE V2 (Wang et al., CVPR 2023).

Official code: MCG-NJU/VideoMAE (`modeling_pretrain.py`), OpenGVLab/VideoMAEv2.
"""

import keras

from keras_mim.models.masked_autoencoder import MaskedAutoencoder
from keras_mim.models.methods import MethodSpec, register_method
from keras_mim.models.presets import TEST_DECODER, TEST_VIT, VIT_BASE_16, VIT_SMALL_16, decoder, video_vit, vit


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
    encoder AND kept by the decoder mask (`PartialDecoding`;
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

    Examples:
        >>> import numpy as np
        >>> model = VideoMAE.from_preset("videomaev2_vit_test", seed=0)
        >>> out = model(np.random.rand(2, 8, 16, 16, 3).astype("float32"))
        >>> tuple(out["pred"].shape), int(keras.ops.sum(out["decode_mask"][0]))
        ((2, 64, 96), 24)
    """

    encoder_defaults = {"cls_token": False}  # VideoMAE's encoder has no cls token
    pixel_target_options = {"per_channel": True, "unbiased": True, "eps_on_std": True}

    def __init__(self, encoder, decoder=None, mask_generator="tube", mask_ratio=0.9, decoder_mask_generator=None,
                 decoder_mask_ratio=0.5, norm_pix_loss=None, norm_pix_eps=None, target=None, seed=None, **kwargs):
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


# 16 x 224 x 224 clips, 2 x 16 x 16 tubelets (8 x 14 x 14 = 1568 tokens), no cls token, VideoMAE's
# flat 1D sin-cos tables; decoders as the official ViT-S / ViT-B.
VIDEO_DECODER = decoder(384, 4, 6, pos_embed="sincos_1d")
NANO_VIDEO_VIT = dict(video_vit(vit(32, 4, 64, 4, 4), 8), pos_embed="sincos")
DUAL_MASKING = {"decoder_mask_generator": "running_cell", "decoder_mask_ratio": 0.5}

register_method(MethodSpec(
    name="videomae", model=VideoMAE, family="video", data="clips", pixels=True,
    description="VideoMAE: MAE on clips, tubelet tokens, tube masks at 0.9.",
    paper="Tong et al., NeurIPS 2022", code="MCG-NJU/VideoMAE", cli_preset="videomae_vit_nano_patch4_32",
    presets={
        "videomae_vit_small_patch16": dict(
            description="VideoMAE ViT-S/16 on 16 x 224 px clips, tube masks at 0.9, decoder 192 x 4 x 3.",
            encoder=video_vit(VIT_SMALL_16, 16), decoder=dict(VIDEO_DECODER, decoder_dim=192, num_heads=3)),
        "videomae_vit_base_patch16": dict(
            description="VideoMAE ViT-B/16 on 16 x 224 px clips, tube masks at 0.9, decoder 384 x 4 x 6.",
            encoder=video_vit(VIT_BASE_16, 16), decoder=VIDEO_DECODER),
        "videomae_vit_nano_patch4_32": dict(
            description="VideoMAE 64 x 4 x 4 on 8 x 32 px clips, 2 x 4 x 4 tubelets (4 x 8 x 8 tokens), "
                        "3D sin-cos, decoder 64 x 2 x 4: trains on a CPU.",
            encoder=NANO_VIDEO_VIT, decoder=decoder(64, 2, 4)),
        "videomae_vit_test": dict(
            description="VideoMAE on 4 x 16 px clips, patch 4, tubelet 2 (2 x 4 x 4 tokens), tube 0.75: for tests.",
            encoder=video_vit(TEST_VIT, 4), decoder=TEST_DECODER, kwargs={"mask_ratio": 0.75}),
    },
))

register_method(MethodSpec(
    name="videomaev2", model=VideoMAE, family="video", data="clips", pixels=True, kwargs=DUAL_MASKING,
    description="VideoMAE V2: dual masking, the decoder reconstructs a running-cell subset.",
    paper="Wang et al., CVPR 2023", code="OpenGVLab/VideoMAEv2", cli_preset="videomaev2_vit_nano_patch4_32",
    presets={
        "videomaev2_vit_base_patch16": dict(
            description="VideoMAE V2 ViT-B/16: dual masking (tube 0.9 + running-cell decoder mask 0.5).",
            encoder=video_vit(VIT_BASE_16, 16), decoder=VIDEO_DECODER, kwargs=DUAL_MASKING),
        "videomaev2_vit_nano_patch4_32": dict(
            description="VideoMAE V2 (dual masking) on the nano video ViT: 8 x 32 px clips.",
            encoder=NANO_VIDEO_VIT, decoder=decoder(64, 2, 4), kwargs=DUAL_MASKING),
        "videomaev2_vit_test": dict(
            description="VideoMAE V2 on 8 x 16 px clips (4 x 4 x 4 tokens), tube 0.75 + running cells 0.5: for tests.",
            encoder=video_vit(TEST_VIT, 8), decoder=TEST_DECODER, kwargs={**DUAL_MASKING, "mask_ratio": 0.75}),
    },
))
