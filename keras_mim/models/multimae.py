"""MultiMAE: Multi-modal Multi-task Masked Autoencoders (Bachmann et al., ECCV 2022).

Official code: EPFL-VILAB/MultiMAE (`multimae/multimae.py`: `generate_random_masks`,
`forward`; `output_adapters.py`: `SpatialOutputAdapter`; `criterion.py`). Several paired
modalities (RGB, depth, semantic classes) are cut into tokens by their own patch embeddings,
a fixed number of visible tokens is split across them per sample (Dirichlet), one ViT
encodes the visible tokens of all of them, and one light decoder per modality rebuilds it
from all visible tokens. Differences from the official code: docs/multimodal.md.
"""

import keras
from keras import ops

from keras_mim.layers.patching import patchify, unpatchify
from keras_mim.masking import get_mask_generator
from keras_mim.models.methods import MethodSpec, register_method
from keras_mim.models.multi_modal_encoder import MultiModalEncoder
from keras_mim.models.multimae_decoder import MultiMAEDecoder
from keras_mim.models.pretraining_model import PretrainingModel
from keras_mim.targets import PixelTarget
from keras_mim.utils import check_mask_ratio

LOSSES = ("mse", "l1", "cross_entropy")
#: MultiMAE's decoders: 256 wide, 2 self-attention blocks after the cross-attention, 8 heads.
DECODER = {"decoder_dim": 256, "depth": 2, "num_heads": 8, "mlp_ratio": 4.0}


def robust_standardize(x, low=0.1, high=0.9, eps=1e-6):
    """Each sample of `x` `(B, H, W, C)` minus the mean, over the std, of its values between
    the `low` and `high` quantiles (MultiMAE's depth standardisation, on the input and the
    target): float32, `(x - mean) / sqrt(var_unbiased + eps)`."""
    x = ops.cast(x, "float32")
    flat = ops.reshape(x, (-1, x.shape[1] * x.shape[2] * x.shape[3]))
    n = flat.shape[1]
    kept = ops.sort(flat, axis=1)[:, int(low * n) : int(high * n)]  # (B, n')
    m = kept.shape[1]
    mean = ops.mean(kept, axis=1)
    var = ops.sum(ops.square(kept - mean[:, None]), axis=1) / max(m - 1, 1)
    return (x - ops.reshape(mean, (-1, 1, 1, 1))) / ops.sqrt(ops.reshape(var, (-1, 1, 1, 1)) + eps)


@keras.saving.register_keras_serializable(package="keras_mim")
class MultiMAE(PretrainingModel):
    """Masked autoencoding of several paired modalities with one shared encoder.

    `call(inputs, noise=None)` takes a dict of every modality of `encoder`
    (`MultiModalEncoder`): standardises the ones in `standardize` per sample, draws which
    of the `(M, gh, gw)` tokens stay visible (`DirichletMaskGenerator`: a static total,
    split across modalities by a Dirichlet draw per sample), encodes the visible tokens
    of all modalities together, and decodes each modality with its own
    `MultiMAEDecoder`, which attends to the visible tokens of all of them. Returns a
    dict: `pred` (modality -> `(B, N, output)` per-token predictions), `mask` `(B, M N)`
    (1 = hidden, modality-major), `ids_restore` and, if any, `standardized` (modality ->
    its standardised input, which is also its target).

    Losses (`compute_loss`, float32), each on its modality's hidden tokens only, per
    sample, averaged over the samples with at least one hidden token of that modality
    (the official `nanmean`), then summed with `loss_weights`:
    `"mse"` on pixels (per-patch normalised with `norm_pix_loss`), `"l1"` (depth),
    `"cross_entropy"` on class maps (mean over the pixels of a patch).

    Args:
        encoder: a `MultiModalEncoder`.
        decoder: a dict of `MultiMAEDecoder` arguments shared by the modalities'
            decoders (`decoder_dim`, `depth`, `num_heads`, `mlp_ratio`), or None
            (MultiMAE's 256 wide, 2 blocks, 8 heads).
        losses: dict modality -> `"mse"`, `"l1"` or `"cross_entropy"`; unnamed ones:
            the main (first) modality `"mse"`, other image modalities `"l1"`, class maps
            `"cross_entropy"` (MultiMAE: RGB, depth, semseg).
        loss_weights: dict modality -> weight (default 1 each; MultiMAE sums unweighted).
        norm_pix_loss: per-patch normalised targets for `"mse"` modalities (default True).
        standardize: modalities standardised per sample by their 10-90% quantile values
            (input and target), as MultiMAE's depth; None: every image modality but the
            main one.
        mask_generator: `"dirichlet"` (default), or any mask generator over the
            `(M, gh, gw)` grid (`"random"`: one uniform mask over all tokens).
        mask_ratio: fraction of all tokens hidden (MultiMAE: 98 of 3 x 196 visible, 5/6).
        alpha: the Dirichlet concentration (1.0).
        seed: optional int seed of the masks.
        **kwargs: standard model arguments.

    Examples:
        >>> import numpy as np
        >>> model = MultiMAE.from_preset("multimae_vit_test", seed=0)
        >>> x = {"rgb": np.random.rand(2, 16, 16, 3).astype("float32"),
        ...      "depth": np.random.rand(2, 16, 16, 1).astype("float32"),
        ...      "semseg": np.random.randint(0, 4, (2, 16, 16)).astype("int32")}
        >>> out = model(x)
        >>> {k: tuple(v.shape) for k, v in out["pred"].items()}
        {'rgb': (2, 16, 48), 'depth': (2, 16, 16), 'semseg': (2, 16, 64)}
        >>> int(keras.ops.sum(1 - out["mask"][0]))  # visible tokens of the 48, all modalities together
        12
    """

    def __init__(self, encoder, decoder=None, losses=None, loss_weights=None, norm_pix_loss=True, standardize=None,
                 mask_generator="dirichlet", mask_ratio=5 / 6, alpha=1.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(encoder, MultiModalEncoder):
            raise TypeError(f"`encoder` must be a MultiModalEncoder, got {type(encoder).__name__}.")
        self.encoder = encoder
        names, specs = encoder.names, encoder.modalities
        self.losses_by_modality = self._check_losses(losses, names, specs)
        weights = dict(loss_weights or {})
        unknown = sorted(set(weights) - set(names))
        if unknown:
            raise ValueError(f"`loss_weights` names {unknown}, which are not modalities of the encoder {list(names)}.")
        self.modality_weights = {n: float(weights.get(n, 1.0)) for n in names}
        self.norm_pix_loss_enabled = bool(norm_pix_loss)
        if standardize is None:
            standardize = [n for n in names[1:] if "channels" in specs[n]]
        bad = [n for n in standardize if n not in names or "channels" not in specs[n]]
        if bad:
            raise ValueError(f"`standardize` names {bad}; it takes image modalities of the encoder "
                             f"({[n for n in names if 'channels' in specs[n]]}).")
        self.standardize = tuple(standardize)
        self.decoder_config = {**DECODER, **(decoder or {})}
        self.decoders = [
            MultiMAEDecoder(encoder.grid_shape, i, self.output_dim(n), **self.decoder_config, dtype=self.dtype_policy,
                            name=f"decoder_{n}")
            for i, n in enumerate(names)
        ]
        kwargs_gen = {"alpha": alpha} if mask_generator == "dirichlet" else {}
        self.mask_generator = get_mask_generator(mask_generator, mask_ratio=mask_ratio, seed=seed, **kwargs_gen)
        self.mask_ratio = check_mask_ratio(self.mask_generator.mask_ratio, encoder.num_patches)
        self.alpha = float(alpha)
        self.num_visible = self.mask_generator.num_visible(encoder.grid_shape)
        self.seed = seed
        self.pixel_target = PixelTarget(normalize=True, dtype=self.dtype_policy, name="pixel_target")

    @staticmethod
    def _check_losses(losses, names, specs):
        losses = dict(losses or {})
        out = {}
        for i, n in enumerate(names):
            default = "cross_entropy" if "classes" in specs[n] else "mse" if i == 0 else "l1"
            kind = losses.pop(n, default)
            if kind not in LOSSES or (kind == "cross_entropy") != ("classes" in specs[n]):
                allowed = ["cross_entropy"] if "classes" in specs[n] else ["mse", "l1"]
                raise ValueError(f"`losses[{n!r}]` must be one of {allowed} for this modality, got {kind!r}.")
            out[n] = kind
        if losses:
            raise ValueError(f"`losses` names {sorted(losses)}, which are not modalities of the encoder {list(names)}.")
        return out

    def output_dim(self, name):
        """Prediction width per token of modality `name`: `ph pw C`, or `ph pw K` class logits."""
        spec = self.encoder.modalities[name]
        ph, pw = self.encoder.patch_size
        return ph * pw * spec.get("channels", spec.get("classes"))

    def build(self, input_shape=None):
        latent = (None, 1 + self.num_visible, self.encoder.embed_dim)
        for decoder in self.decoders:
            if not decoder.built:
                decoder.build(latent)
        self.built = True

    def _check_data(self, x):
        spec = self.data_spec(x)
        if isinstance(spec, dict):
            missing = [n for n in self.encoder.names if n not in spec]
            if missing:
                raise ValueError(f"`x` lacks the modalities {missing}; MultiMAE pretrains on all of "
                                 f"{list(self.encoder.names)} (a dict of arrays).")
            self.encoder.check_images(spec, name="x")
        elif hasattr(spec, "shape"):
            raise ValueError(f"`x` must be a dict of the modalities {list(self.encoder.names)}, got one array "
                             f"of shape {tuple(spec.shape)}.")

    # ------------------------------------------------------------------ the method
    def prepare_inputs(self, inputs):
        """The modalities as the encoder and the targets see them (`standardize` applied)."""
        return {n: robust_standardize(x) if n in self.standardize else x for n, x in inputs.items()}

    def random_masking(self, inputs, noise=None):
        first = inputs[self.encoder.main]
        return self.mask_generator(first, grid_shape=self.encoder.grid_shape, noise=noise)

    def forward_encoder(self, inputs, noise=None, training=None):
        masking = self.random_masking(inputs, noise=noise)  # ids_keep (B, K), ids_restore, mask (B, M N)
        latent = self.encoder(inputs, ids_keep=masking["ids_keep"], training=training)  # (B, 1 + K, D)
        return latent, masking

    def forward_decoders(self, latent, masking, training=None):
        return {n: dec(latent, masking["ids_keep"], masking["ids_restore"], training=training)
                for n, dec in zip(self.encoder.names, self.decoders)}  # each (B, N, output)

    def call(self, inputs, noise=None, training=None):
        self._check_call(inputs)
        inputs = self.prepare_inputs(inputs)
        latent, masking = self.forward_encoder(inputs, noise=noise, training=training)
        pred = self.forward_decoders(latent, masking, training=training)
        out = {"pred": pred, "mask": masking["mask"], "ids_restore": masking["ids_restore"]}
        if self.standardize:  # the standardised modalities, the targets' too: computed once per step
            out["standardized"] = {n: inputs[n] for n in self.standardize}
        return out

    def seen_inputs(self, inputs, out):
        """The modalities as the model saw them in the call that gave `out`."""
        return {**inputs, **out.get("standardized", {})}

    def _check_call(self, inputs):
        if not isinstance(inputs, dict) or set(inputs) != set(self.encoder.names):
            got = sorted(inputs) if isinstance(inputs, dict) else type(inputs).__name__
            raise ValueError(f"MultiMAE takes a dict of the modalities {list(self.encoder.names)}, got {got}.")

    def modality_mask(self, mask, name):
        """The `(B, N)` slice of `mask` `(B, M N)` that belongs to modality `name`."""
        n = self.encoder.num_patches // len(self.encoder.names)
        i = self.encoder.names.index(name)
        return mask[:, i * n : (i + 1) * n]

    def per_token_loss(self, name, pred, x):
        """Modality `name`'s loss per token `(B, N)`, float32."""
        kind, patch = self.losses_by_modality[name], self.encoder.patch_size
        pred = ops.cast(pred, "float32")
        if kind == "cross_entropy":
            labels = patchify(ops.expand_dims(ops.cast(x, "int32"), -1), patch)  # (B, N, ph pw)
            logits = ops.reshape(pred, (-1, pred.shape[1], labels.shape[2], self.encoder.modalities[name]["classes"]))
            ce = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
            return ops.mean(ce, axis=-1)
        if kind == "mse" and self.norm_pix_loss_enabled:
            target = self.pixel_target(x, patch_size=patch)
        else:
            target = ops.cast(patchify(x, patch), "float32")
        error = ops.square(pred - target) if kind == "mse" else ops.abs(pred - target)
        return ops.mean(error, axis=-1)

    def forward_loss(self, inputs, out):
        """Dict modality -> loss (float32 scalars) and `total`."""
        losses, total = {}, 0.0
        for name in self.encoder.names:
            per_token = self.per_token_loss(name, out["pred"][name], inputs[name])
            mask = ops.cast(self.modality_mask(out["mask"], name), "float32")
            hidden = ops.sum(mask, axis=1)  # (B,)
            per_sample = ops.sum(per_token * mask, axis=1) / ops.maximum(hidden, 1.0)
            counted = ops.cast(hidden > 0, "float32")
            losses[name] = ops.sum(per_sample * counted) / ops.maximum(ops.sum(counted), 1.0)
            total = total + self.modality_weights[name] * losses[name]
        losses["total"] = total
        return losses

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if y_pred is None:
            y_pred = self(x, training=training)
        return self.add_layer_losses(self.forward_loss(self.seen_inputs(x, y_pred), y_pred)["total"])

    def reconstruct(self, inputs, noise=None):
        """For figures: modality -> `(seen, reconstruction, pixel_mask)` numpy arrays, `seen`
        the input as the model takes it (standardised where `standardize` says), the
        reconstruction in the same units (images `(B, H, W, C)`; class maps `(B, H, W, 1)`
        of the most likely class) and the hidden pixels `(B, H, W, 1)`. Normalised-patch
        predictions are mapped back with each patch's own statistics, hidden ones included,
        as `MaskedAutoencoder.reconstruct` (which says why such figures flatter the model)."""
        from keras_mim.models.reconstruction import pixel_reconstruction

        out = self(inputs, noise=noise, training=False)
        seen = self.seen_inputs(inputs, out)
        (h, w), (ph, pw) = self.encoder.image_size, self.encoder.patch_size
        figures = {}
        for name in self.encoder.names:
            mask, pred, x = self.modality_mask(out["mask"], name), out["pred"][name], seen[name]
            if "classes" in self.encoder.modalities[name]:
                k = self.encoder.modalities[name]["classes"]
                labels = ops.argmax(ops.reshape(pred, (-1, pred.shape[1], ph * pw, k)), axis=-1)  # (B, N, ph pw)
                rec = unpatchify(ops.cast(labels, "float32"), (ph, pw), (h, w, 1))
                pixel_mask = unpatchify(ops.repeat(ops.expand_dims(mask, -1), ph * pw, axis=-1), (ph, pw), (h, w, 1))
                x = ops.expand_dims(ops.cast(x, "float32"), -1)
            else:
                normalised = self.losses_by_modality[name] == "mse" and self.norm_pix_loss_enabled
                target = self.pixel_target if normalised else PixelTarget(normalize=False)
                rec, pixel_mask = pixel_reconstruction(target, x, pred, mask, (ph, pw))
            figures[name] = tuple(ops.convert_to_numpy(ops.cast(t, "float32")) for t in (x, rec, pixel_mask))
        return figures

    def get_config(self):
        config = super().get_config()
        config.update(encoder=keras.saving.serialize_keras_object(self.encoder), decoder=self.decoder_config,
                      losses=self.losses_by_modality, loss_weights=self.modality_weights,
                      norm_pix_loss=self.norm_pix_loss_enabled, standardize=list(self.standardize),
                      mask_generator=keras.saving.serialize_keras_object(self.mask_generator),
                      mask_ratio=self.mask_ratio, alpha=self.alpha, seed=self.seed)
        return config


def multimodal(modalities, image_size, patch_size, embed_dim, depth, num_heads, **kwargs):
    """MultiModalEncoder arguments of one architecture."""
    return dict(modalities=modalities, image_size=image_size, patch_size=patch_size, embed_dim=embed_dim,
                depth=depth, num_heads=num_heads, **kwargs)


SCENE_MODALITIES = {"rgb": 3, "depth": 1, "semseg": {"classes": 4}}

register_method(MethodSpec(
    name="multimae", model=MultiMAE, family="multimodal", data="paired", pixels=True,
    description="MultiMAE: RGB + depth + classes, visible tokens split by a Dirichlet draw, a decoder per modality.",
    paper="Bachmann et al., ECCV 2022", code="EPFL-VILAB/MultiMAE", test_preset="multimae_vit_test",
    cli_preset="multimae_vit_tiny",
    presets={
        "multimae_vit_base_patch16": dict(
            description="MultiMAE ViT-B/16 at 224 on RGB, depth and 133 COCO classes, 98 visible tokens (official).",
            encoder_class=MultiModalEncoder,
            encoder=multimodal({"rgb": 3, "depth": 1, "semseg": {"classes": 133}}, 224, 16, 768, 12, 12)),
        "multimae_vit_tiny": dict(
            description="MultiMAE 128 x 4 x 4 at 32 px, patch 4, on the generated scenes (RGB, depth, 4 classes).",
            encoder_class=MultiModalEncoder, encoder=multimodal(SCENE_MODALITIES, 32, 4, 128, 4, 4),
            decoder=dict(decoder_dim=128, depth=1, num_heads=4)),
        "multimae_vit_test": dict(
            description="MultiMAE 32 x 2 x 2 at 16 px, patch 4, decoders 64 x 1, 12 of 48 visible: for tests.",
            encoder_class=MultiModalEncoder, encoder=multimodal(SCENE_MODALITIES, 16, 4, 32, 2, 2),
            decoder=dict(decoder_dim=64, depth=1, num_heads=2), kwargs={"mask_ratio": 0.75}),
    },
))
