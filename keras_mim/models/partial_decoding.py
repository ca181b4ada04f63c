"""Partial reconstruction (VideoMAE V2's dual masking): the decoder runs on the visible
tokens plus a static subset of the hidden ones, and the loss scores only that subset."""

import keras
from keras import ops

from keras_mim.layers.token_ops import restore_tokens
from keras_mim.masking import get_mask_generator
from keras_mim.masking.selection import select_tokens


@keras.saving.register_keras_serializable(package="keras_mim")
class PartialDecoding(keras.layers.Layer):
    """Choose which hidden tokens an MAE decoder reconstructs, and decode only those.

    VideoMAE V2 (Wang et al., CVPR 2023; official code OpenGVLab/VideoMAEv2) masks twice:
    the encoder mask hides most tokens, and a second, "decoder" mask (running cells,
    ratio 0.5) chooses which of them the decoder reconstructs; the loss is taken on
    tokens hidden from the encoder AND kept by the decoder mask. Here the decoder blocks
    run on the K visible tokens plus a static number M of hidden ones,
    `M = (N - K) * (N - D) // N` with D the tokens the decoder mask hides; the kept hidden
    tokens come first (exactly the official set whenever its size does not depend on
    the sample, e.g. running cells on a time grid that is a multiple of 4 under tube
    masking), ties broken at random. The official code instead concatenates the
    per-sample sets, which needs equal counts; a static M keeps shapes static on every
    backend.

    Any MAE-family model can use it: `MaskedAutoencoder(..., decoder_mask_generator=...)`
    holds one and calls `decode` in place of its decoder.

    Args:
        mask_generator: the decoder mask, a `keras_mim.masking.MaskGenerator` or a name
            (VideoMAE V2: `"running_cell"`). Lower scores = decoded.
        mask_ratio: fraction of tokens the decoder mask hides when `mask_generator` is a
            name (V2: 0.5).
        seed: optional int seed of that generator (which also breaks ties).
        patch_size: the encoder's patch size (for generators that work in pixels).
        **kwargs: standard layer arguments.

    Examples:
        >>> import numpy as np
        >>> partial = PartialDecoding("running_cell", 0.5, seed=0)
        >>> partial.num_decoded(grid_shape=(4, 4, 4), num_visible=16)  # 48 hidden, half decoded
        24
        >>> mask = np.ones((2, 64), "float32"); mask[:, :16] = 0.0
        >>> tuple(partial(mask, grid_shape=(4, 4, 4), num_visible=16)["ids_keep"].shape)
        (2, 40)
    """

    def __init__(self, mask_generator="running_cell", mask_ratio=0.5, seed=None, patch_size=None, **kwargs):
        super().__init__(**kwargs)
        self.mask_generator = get_mask_generator(mask_generator, mask_ratio=mask_ratio, seed=seed,
                                                 patch_size=patch_size)
        self.mask_ratio = mask_ratio
        self.seed = seed
        self.patch_size = patch_size

    def num_decoded(self, grid_shape, num_visible):
        """The static number M of hidden tokens decoded, of a grid with `num_visible`
        tokens visible to the encoder; raises if none would be."""
        n = 1
        for g in grid_shape:
            n *= g
        hidden = n - num_visible
        m = hidden * self.mask_generator.num_visible(grid_shape) // n
        if m < 1:
            raise ValueError(
                f"`decoder_mask_ratio`={self.mask_generator.mask_ratio!r} leaves none of the {hidden} "
                "hidden tokens to reconstruct; use a lower decoder mask ratio."
            )
        return m

    def call(self, mask, grid_shape, num_visible, decoder_noise=None):
        """The tokens to decode: `select_tokens` output with `ids_keep` `(B, K + M)` (the
        visible ones first), `ids_restore` `(B, N)` and `mask` `(B, N)` (1 = not decoded).
        `decoder_noise` `(B, N)` fixes the decoder mask (lower = decoded)."""
        n = mask.shape[-1]
        if decoder_noise is None:
            decoder_noise = self.mask_generator.scores(ops.shape(mask)[0], grid_shape)  # (B, N)
        elif len(decoder_noise.shape) != 2 or tuple(decoder_noise.shape)[-1] != n:
            raise ValueError(f"`decoder_noise` must have shape (batch, {n}), got {tuple(decoder_noise.shape)}.")
        # Running cells score 0 or 1: break ties with the decoder mask's own seed stream.
        tie = keras.random.uniform(ops.shape(mask), seed=self.mask_generator.seed_generator)
        scores = mask * (2.0 + ops.cast(decoder_noise, "float32") + 0.5 * tie)  # visible tokens: 0, first
        return select_tokens(scores, num_visible + self.num_decoded(grid_shape, num_visible))

    def decode(self, decoder, latent, masking, grid_shape, num_visible, decoder_noise=None, training=None):
        """Run `decoder` (an `MAEDecoder`) on the chosen tokens only.

        Args:
            decoder: takes `(latent, ids_restore, ids_decode=...)`.
            latent: encoder output `(B, [1 +] K, D)`.
            masking: the encoder's masking dict (`ids_restore`, `mask`).
            grid_shape: the token grid.
            num_visible: K, the static number of tokens visible to the encoder.
            decoder_noise: optional `(B, N)` scores fixing the decoder mask.
            training: Keras training flag.

        Returns:
            dict: `pred` `(B, N, P)`, zero where nothing was decoded, and `decode_mask`
            `(B, N)`, 1 = hidden from the encoder and decoded (what the loss scores).
        """
        decoding = self(masking["mask"], grid_shape=grid_shape, num_visible=num_visible,
                        decoder_noise=decoder_noise)
        pred = decoder(latent, masking["ids_restore"], ids_decode=decoding["ids_keep"], training=training)  # (B, K+M, P)
        pred = restore_tokens(pred, decoding["ids_restore"], ops.zeros((pred.shape[-1],), pred.dtype))  # (B, N, P)
        return {"pred": pred, "decode_mask": masking["mask"] * (1.0 - decoding["mask"])}

    def get_config(self):
        config = super().get_config()
        config.update(
            mask_generator=keras.saving.serialize_keras_object(self.mask_generator),
            mask_ratio=self.mask_ratio,
            seed=self.seed,
            patch_size=self.patch_size,
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["mask_generator"] = keras.saving.deserialize_keras_object(config["mask_generator"])
        return cls(**config)
