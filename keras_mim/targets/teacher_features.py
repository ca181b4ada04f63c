"""Teacher features: per-token features of a frozen Keras model, run on the full image.

A `Target` (what `MaskedAutoencoder(target=...)` and `SimMIM(target=...)` regress at the
hidden tokens: EVA / MILAN style), and what feature-alignment methods (MaskAlign, MR-MAE)
align their students with, through `features(...)`. Any Keras model can teach: a
keras_mim `ViTEncoder` (block outputs, [CLS] attention for guided masks), a functional
model such as a keras-hub backbone (outputs of named layers), or any other model (its own
outputs).
"""

import keras
from keras import ops

from keras_mim.layers.token_ops import gather_tokens
from keras_mim.losses import cosine_per_token, mse_per_token
from keras_mim.targets.target import Target
from keras_mim.targets.teacher_layers import (  # noqa: F401 (is_block_encoder, teacher_guided_masking: re-exported)
    functional_extractor, is_block_encoder, teacher_guided_masking, trace_features,
)

NORMALIZATIONS = (None, "layer_norm")
#: Per-token losses of a teacher target: MSE, or cosine (`1 - cos`, EVA's `-cos` plus 1).
LOSSES = {"mse": mse_per_token, "cosine": cosine_per_token}


@keras.saving.register_keras_serializable(package="keras_mim")
class TeacherFeatures(Target):
    """Frozen features of chosen teacher layers as patch tokens `(B, N, D_l)`, float32.

    The teacher runs on the whole image with `training=False`; it is frozen when wrapped
    (`trainable` stays False, whatever is set later) and its outputs pass through
    `stop_gradient`, so no gradient reaches it. Per layer, a token output `(B, T, D)`
    loses its first `num_prefix_tokens` tokens ([CLS], registers); a spatial output
    `(B, h, w, D)` is flattened row-major to `(B, h * w, D)`. With
    `normalize="layer_norm"` every token is standardised over its features, without
    affine parameters (MaskAlign's "whiten" target norm, `F.layer_norm`, eps 1e-5).

    The teacher sees the images exactly as the student does: put any preprocessing it
    needs (e.g. CLIP's mean and std, which the official MaskAlign applies after undoing
    the ImageNet normalisation) inside a functional teacher. The wrapped model is
    serialized inside this layer's config and its weights travel in the `.keras` file
    of any model holding this layer.

    Which teachers:
      - a keras_mim `ViTEncoder`: `layers` are block indices (negative from the end,
        default `[-1]`); features are block outputs before the final norm (as
        Hugging Face `hidden_states[1:]`); `num_prefix_tokens` is the encoder's;
        `attention(images)` is its last block's [CLS] attention.
      - a functional `keras.Model` (e.g. a keras-hub backbone): `layers` are layer
        names, read through `keras.Model(model.inputs, [model.get_layer(n).output])`;
        None means the model's own outputs.
      - any other Keras model: `layers` must be None; its outputs are the features.

    Call `check_compatible(image_shape, num_patches)` before training (the models do,
    at construction): it traces the teacher symbolically and raises if a layer's token
    count differs from the student's patch count or a width from `feature_dims`.

    Two ways to read it: `features(images, ids_keep=None, with_cls=False)` gives a list,
    one tensor per chosen layer (MaskAlign, MR-MAE); as a `Target` of ONE chosen layer,
    `teacher(images)` gives its `(B, N, D)` patch tokens, `output_dim(...)` is `D`
    (after `check_compatible`) and `loss_per_token` is the per-token `loss`: `"mse"` or
    `"cosine"`, `1 - cos(pred, target)`. EVA's official loss is `-cos` (the same
    gradients, shifted by 1 so that 0 is a perfect match); MILAN's is `2 - 2 cos` of
    L2-normalised vectors (twice this one).

    Args:
        model: the teacher, a built Keras model taking images `(B, H, W, C)`.
        layers: which features (see above).
        num_prefix_tokens: leading non-patch tokens of token outputs (None: the
            `ViTEncoder`'s own count, else 0).
        normalize: `"layer_norm"` (default) or None.
        epsilon: epsilon of that normalisation.
        feature_dims: optional declared width(s) `D_l` (an int for every layer or one
            per layer), checked by `check_compatible`.
        loss: per-token loss as a target: `"mse"` (default) or `"cosine"`.
        **kwargs: standard layer arguments.

    Examples:
        >>> import numpy as np, keras
        >>> from keras_mim.models.vit_encoder import ViTEncoder
        >>> vit = ViTEncoder(image_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2)
        >>> teacher = TeacherFeatures(vit, layers=[0, 1])
        >>> teacher.check_compatible((16, 16, 3), num_patches=16)
        [32, 32]
        >>> [tuple(f.shape) for f in teacher.features(np.zeros((2, 16, 16, 3), "float32"))]
        [(2, 16, 32), (2, 16, 32)]
        >>> target = TeacherFeatures(vit, loss="cosine")  # one layer: a Target
        >>> target.check_compatible((16, 16, 3), num_patches=16), target.output_dim(4, 3)
        ([32], 32)
        >>> tuple(target(np.zeros((2, 16, 16, 3), "float32"), patch_size=4).shape)
        (2, 16, 32)
    """

    def __init__(self, model, layers=None, num_prefix_tokens=None, normalize="layer_norm", epsilon=1e-5,
                 feature_dims=None, loss="mse", **kwargs):
        super().__init__(**kwargs)
        if isinstance(model, dict):
            model = keras.saving.deserialize_keras_object(model)
        if not isinstance(model, keras.Model):
            raise TypeError(
                f"The teacher `model` must be a Keras model (a ViTEncoder, a functional model "
                f"such as a keras-hub backbone, ...), got {type(model).__name__}."
            )
        if normalize not in NORMALIZATIONS:
            raise ValueError(f"`normalize` must be one of {list(NORMALIZATIONS)}, got {normalize!r}.")
        if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not epsilon > 0:
            raise ValueError(f"`epsilon` must be a float > 0, got {epsilon!r}.")
        if not isinstance(loss, str) or loss not in LOSSES:
            raise ValueError(f"`loss` must be one of {sorted(LOSSES)}, got {loss!r}.")
        self.loss = loss
        self.model = model
        # Through the setter itself: on TensorFlow `model.trainable = False` is skipped when
        # the flag is already False (e.g. a deserialized frozen model), leaving its
        # sub-layers' variables trainable.
        keras.layers.Layer.trainable.fset(model, False)
        self.normalize = normalize
        self.epsilon = float(epsilon)
        self.is_vit = is_block_encoder(model)
        self.feature_layers = self._resolve_layers(layers)
        self.num_prefix_tokens = self._resolve_prefix(num_prefix_tokens)
        self.feature_dims = self._resolve_dims(feature_dims)
        self._dims = None  # the widths of the chosen outputs, known after `check_compatible`

    # The teacher never trains: setting `trainable` (e.g. `model.trainable = True` on
    # the pretraining model) leaves it frozen.
    @property
    def trainable(self):
        return False

    @trainable.setter
    def trainable(self, value):
        keras.layers.Layer.trainable.fset(self, False)

    # ------------------------------------------------------------------ configuration
    def _resolve_layers(self, layers):
        if self.is_vit:
            layers = [-1] if layers is None else layers
            try:
                return self.model.layer_indices(layers)
            except ValueError as e:
                raise ValueError(f"Bad teacher `layers`={layers!r}: {e}") from None
        layers, self._extractor = functional_extractor(self.model, layers)
        return layers

    def _resolve_prefix(self, num_prefix_tokens):
        if self.is_vit:
            if num_prefix_tokens is not None and num_prefix_tokens != self.model.num_prefix_tokens:
                raise ValueError(
                    f"`num_prefix_tokens`={num_prefix_tokens!r} but the ViTEncoder teacher has "
                    f"{self.model.num_prefix_tokens} prefix token(s)."
                )
            return self.model.num_prefix_tokens
        if num_prefix_tokens is None:
            return 0
        if isinstance(num_prefix_tokens, bool) or not isinstance(num_prefix_tokens, int) or num_prefix_tokens < 0:
            raise ValueError(f"`num_prefix_tokens` must be an int >= 0, got {num_prefix_tokens!r}.")
        return num_prefix_tokens

    def _resolve_dims(self, feature_dims):
        if feature_dims is None:
            return None
        dims = [feature_dims] if isinstance(feature_dims, int) else list(feature_dims)
        if not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in dims):
            raise ValueError(f"`feature_dims` must be a positive int or a list of them, got {feature_dims!r}.")
        return dims

    @property
    def has_attention(self):
        """Whether `attention(images)` is available ([CLS] attention of a ViTEncoder)."""
        return self.is_vit and hasattr(self.model, "cls_attention") and self.model.num_prefix_tokens >= 1

    def layer_label(self, i):
        """A readable name for output `i` in error messages."""
        if self.feature_layers is None:
            return f"output {i}"
        kind = "block" if self.is_vit else "layer"
        return f"{kind} {self.feature_layers[i]!r}"

    # ------------------------------------------------------------------ features
    def raw_features(self, images):
        """The teacher's chosen outputs as it gives them (a list, not normalised)."""
        if self.is_vit:
            _, features = self.model.forward_features(images, self.feature_layers, training=False)
            return list(features)
        out = self._extractor.model(images, training=False)
        return list(out) if isinstance(out, (list, tuple)) else [out]

    def prefix_of(self, feature):
        """Prefix-token count of one raw output: token outputs have them, maps do not."""
        return self.num_prefix_tokens if len(feature.shape) == 3 else 0

    def to_tokens(self, feature):
        """`(B, h, w, D) -> (B, h * w, D)`; token outputs `(B, T, D)` unchanged."""
        if len(feature.shape) == 4:
            _, h, w, d = feature.shape
            return ops.reshape(feature, (-1, h * w, d))
        return feature

    def layer_norm(self, x):
        """Per-token standardisation over features, no affine (`F.layer_norm`)."""
        mean, var = ops.moments(x, axes=[-1], keepdims=True)
        return (x - mean) / ops.sqrt(var + self.epsilon)

    def features(self, images, ids_keep=None, with_cls=False):
        """Teacher features, one float32 tensor per chosen layer.

        Args:
            images: `(B, H, W, C)`, as the student sees them.
            ids_keep: optional int `(B, K)`: keep only the patch tokens at these
                positions (the student's visible ones).
            with_cls: put the first prefix token (the [CLS]) in front; every chosen
                output must have one.

        Returns:
            list of `(B, [1 +] N or K, D_l)` float32, without gradient.
        """
        out = []
        for feature in self.raw_features(images):
            prefix = self.prefix_of(feature)
            x = ops.cast(self.to_tokens(feature), "float32")  # (B, P + N, D)
            if self.normalize == "layer_norm":
                x = self.layer_norm(x)
            patches = x[:, prefix:]  # (B, N, D)
            if ids_keep is not None:
                patches = gather_tokens(patches, ids_keep)  # (B, K, D)
            if with_cls:
                if prefix < 1:
                    raise ValueError("`with_cls=True` needs teacher outputs with a [CLS] prefix token.")
                patches = ops.concatenate([x[:, :1], patches], axis=1)  # (B, 1 + K, D)
            out.append(ops.stop_gradient(patches))
        return out

    # ------------------------------------------------------------------ as a Target
    def single_layer(self, count=None):
        """Raise a `ValueError` unless one layer is chosen (`count` outputs, when known)."""
        count = len(self.feature_layers) if count is None and self.feature_layers is not None else count
        if count is not None and count != 1:
            raise ValueError(
                f"A TeacherFeatures used as a target regresses ONE teacher layer, but this one reads "
                f"{count} ({self.feature_layers if self.feature_layers is not None else 'outputs'}); "
                "choose one with `layers=`."
            )

    def output_dim(self, patch_size=None, num_channels=None):
        """Width `D` of the one chosen layer (the patch size and channels do not change
        it); known after `check_compatible`, or from `feature_dims`."""
        self.single_layer()
        dims = self._dims if self._dims is not None else self.feature_dims
        if dims is None:
            raise ValueError(
                "The teacher's feature width is not known yet: call `check_compatible(image_shape, "
                "num_patches)` first (MaskedAutoencoder and SimMIM do), or declare `feature_dims`."
            )
        self.single_layer(len(dims))
        return dims[0]

    def call(self, images, patch_size=None):
        """As a `Target`: the one chosen layer's patch tokens `(B, N, D)`, float32,
        without gradient (`patch_size` is unused: the teacher cuts its own grid)."""
        self.single_layer()
        out = self.features(images)
        self.single_layer(len(out))
        return out[0]

    def loss_per_token(self, pred, target):
        """`loss` per token, float32: `(B, N, D) -> (B, N)`."""
        return LOSSES[self.loss](pred, target)

    @property
    def has_cls(self):
        """Whether every chosen output carries a [CLS] prefix token (known after
        `check_compatible`)."""
        return bool(getattr(self, "_prefixes", None)) and all(p >= 1 for p in self._prefixes)

    def attention(self, images):
        """The teacher's last-block [CLS] attention to each patch `(B, N)`, no gradient."""
        if not self.has_attention:
            raise ValueError(
                f"A {type(self.model).__name__} teacher gives no [CLS] attention; only a "
                "ViTEncoder with a cls token does."
            )
        return ops.stop_gradient(self.model.cls_attention(images, training=False))

    # ------------------------------------------------------------------ checks
    def feature_shapes(self, image_shape):
        """Symbolic `(patch tokens, width)` and prefix-token count of each chosen output
        for images `(H, W, C)`, from one shape-only trace of the teacher; raises a
        `ValueError` if the teacher cannot take such images."""
        specs = trace_features(self.raw_features, self.model, image_shape, check_inputs=not self.is_vit)
        shapes, prefixes = [], []
        for i, spec in enumerate(specs):
            if len(spec.shape) not in (3, 4):
                raise ValueError(
                    f"Teacher {self.layer_label(i)} gives shape {tuple(spec.shape)}; expected tokens "
                    "(B, T, D) or a feature map (B, h, w, D)."
                )
            prefix = self.prefix_of(spec)
            tokens = (spec.shape[1] * spec.shape[2] if len(spec.shape) == 4 else spec.shape[1]) - prefix
            prefixes.append(prefix)
            shapes.append((tokens, spec.shape[-1]))
        return shapes, prefixes

    def check_compatible(self, image_shape, num_patches):
        """Raise a `ValueError` unless each chosen output has `num_patches` patch tokens
        for images `image_shape` `(H, W, C)` and the declared `feature_dims`.

        Returns:
            the feature width `D_l` of each chosen output, a list of ints.
        """
        shapes, prefixes = self.feature_shapes(image_shape)
        self._prefixes = tuple(prefixes)
        dims = [d for _, d in shapes]
        for i, (n, _) in enumerate(shapes):
            if n != num_patches:
                raise ValueError(
                    f"Teacher {self.layer_label(i)} gives {n} patch tokens (after dropping "
                    f"{prefixes[i]} prefix token(s)) but the student has {num_patches} patches; "
                    "teacher and student must cut the image into the same token grid."
                )
        if self.feature_dims is not None:
            declared = self.feature_dims * len(dims) if len(self.feature_dims) == 1 else self.feature_dims
            if len(declared) != len(dims) or declared != dims:
                raise ValueError(
                    f"`feature_dims`={self.feature_dims} does not match the teacher's feature widths "
                    f"{dims} (layers {self.feature_layers})."
                )
        self._dims = tuple(dims)
        return dims

    def get_config(self):
        config = super().get_config()
        config.update(
            model=keras.saving.serialize_keras_object(self.model),
            layers=self.feature_layers,
            num_prefix_tokens=self.num_prefix_tokens,
            normalize=self.normalize,
            epsilon=self.epsilon,
            feature_dims=self.feature_dims,
            loss=self.loss,
        )
        return config


def get_teacher(teacher, layers=None, normalize="layer_norm", default_vit_layers=None, student=None, loss=None):
    """A `TeacherFeatures` from a `TeacherFeatures` (returned as is), its serialized
    config, or a Keras model wrapped with `layers` (for a ViTEncoder without `layers`:
    `default_vit_layers`) and `normalize`.

    Args:
        teacher: see above.
        layers: teacher layers when wrapping a model; must be None for a
            `TeacherFeatures`, which carries its own.
        normalize: normalisation when wrapping a model.
        default_vit_layers: block indices used for a ViTEncoder teacher without `layers`.
        student: the student encoder, which must not be the teacher itself.
        loss: the per-token loss as a target (`"mse"`, `"cosine"`) when wrapping a model
            (None: `"mse"`); a `TeacherFeatures` keeps its own, and a different `loss`
            raises.
    """
    if teacher is None:
        raise TypeError("A `teacher` is required: a Keras model (e.g. a ViTEncoder) or a TeacherFeatures.")
    if isinstance(teacher, dict):
        teacher = keras.saving.deserialize_keras_object(teacher)
    if isinstance(teacher, TeacherFeatures):
        if layers is not None:
            raise ValueError(
                f"`teacher_layers`={layers!r} applies when `teacher` is a model; this "
                f"TeacherFeatures already reads layers {teacher.feature_layers}."
            )
        if loss is not None and loss != teacher.loss:
            raise ValueError(f"`loss`={loss!r} but the TeacherFeatures `teacher` has loss={teacher.loss!r}.")
    else:
        if is_block_encoder(teacher) and layers is None:
            layers = default_vit_layers
        teacher = TeacherFeatures(teacher, layers=layers, normalize=normalize, loss=loss or "mse", name="teacher")
    if student is not None and teacher.model is student:
        raise ValueError("The `teacher` must be a different model from the student `encoder`.")
    return teacher


def teacher_target(teacher, layer=None, loss=None, student=None, default_loss="cosine"):
    """The `TeacherFeatures` target of EVA / MILAN-style models: `teacher` (a model, wrapped
    with `layer`, `normalize="layer_norm"` and `loss`, default `default_loss`; or a
    `TeacherFeatures` / its config, which keeps its own loss unless `loss` differs) reading
    ONE layer (a ViTEncoder's last block by default)."""
    wrapping = teacher is not None and not isinstance(teacher, (dict, TeacherFeatures))
    layers = [layer] if isinstance(layer, (int, str)) and not isinstance(layer, bool) else layer
    target = get_teacher(teacher, layers, normalize="layer_norm", default_vit_layers=[-1], student=student,
                         loss=default_loss if wrapping and loss is None else loss)
    target.single_layer()
    return target
