"""Teacher features: per-token features of a frozen Keras model, run on the full image.

What feature-target methods (MaskAlign, MR-MAE) align their students with. Any Keras
model can teach: a keras_mim `ViTEncoder` (block outputs, [CLS] attention for guided
masks), a functional model such as a keras-hub backbone (outputs of named layers), or
any other model (its own outputs).
"""

import keras
from keras import ops

from keras_mim.layers.token_ops import gather_tokens
from keras_mim.masking import GuidedMaskGenerator

NORMALIZATIONS = (None, "layer_norm")


def is_block_encoder(model):
    """Whether `model` keeps keras_mim's encoder protocol with readable blocks (a
    `ViTEncoder`): `forward_features`, `layer_indices`, `depth`, `num_prefix_tokens`.
    Duck-typed, so that targets need not import the models package."""
    return all(hasattr(model, a) for a in ("forward_features", "layer_indices", "depth", "num_prefix_tokens"))


class _Trace(keras.layers.Layer):
    """Runs a function under Keras' shape-only tracing (`compute_output_spec`)."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def call(self, x):
        return self.fn(x)


class _Untracked:
    """Holds the layer-extraction view of a functional teacher out of Keras tracking:
    it shares the teacher's layers, which are tracked (and saved) once, via the teacher."""

    def __init__(self, model):
        self.model = model


@keras.saving.register_keras_serializable(package="keras_mim")
class TeacherFeatures(keras.layers.Layer):
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

    Args:
        model: the teacher, a built Keras model taking images `(B, H, W, C)`.
        layers: which features (see above).
        num_prefix_tokens: leading non-patch tokens of token outputs (None: the
            `ViTEncoder`'s own count, else 0).
        normalize: `"layer_norm"` (default) or None.
        epsilon: epsilon of that normalisation.
        feature_dims: optional declared width(s) `D_l` (an int for every layer or one
            per layer), checked by `check_compatible`.
        **kwargs: standard layer arguments.

    Example:
    >>> import numpy as np, keras
    >>> from keras_mim.models.vit_encoder import ViTEncoder
    >>> vit = ViTEncoder(image_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2)
    >>> teacher = TeacherFeatures(vit, layers=[0, 1])
    >>> teacher.check_compatible((16, 16, 3), num_patches=16)
    [32, 32]
    >>> [tuple(f.shape) for f in teacher(np.zeros((2, 16, 16, 3), "float32"))]
    [(2, 16, 32), (2, 16, 32)]
    """

    def __init__(self, model, layers=None, num_prefix_tokens=None, normalize="layer_norm", epsilon=1e-5,
                 feature_dims=None, **kwargs):
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
        self.built = True  # the teacher arrives built; nothing else holds state

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
        if layers is None:
            self._extractor = _Untracked(self.model)
            return None
        if isinstance(layers, str):
            layers = [layers]
        if not getattr(self.model, "inputs", None):  # not functional: no graph to read layers from
            raise TypeError(
                f"Choosing teacher `layers`={layers!r} needs a ViTEncoder or a functional "
                f"keras.Model; {type(self.model).__name__} is neither (pass `layers=None` to "
                "use its outputs)."
            )
        names = [layer.name for layer in self.model.layers]
        outputs = []
        for name in layers:
            if not isinstance(name, str):
                raise TypeError(
                    f"A functional teacher's `layers` are layer names, got {name!r} in {layers!r}."
                )
            if name not in names:
                raise ValueError(f"Unknown teacher layer {name!r} in `layers`; the teacher has layers {names}.")
            try:
                outputs.append(self.model.get_layer(name).output)
            except (AttributeError, ValueError) as e:
                raise ValueError(f"Cannot read the output of teacher layer {name!r}: {e}") from None
        self._extractor = _Untracked(keras.Model(self.model.inputs, outputs, name=f"{self.model.name}_features"))
        return list(layers)

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

    def call(self, images, ids_keep=None, with_cls=False):
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
        image_shape = tuple(image_shape)
        inputs = None if self.is_vit else getattr(self.model, "inputs", None)
        if inputs:
            expected = tuple(inputs[0].shape[1:])
            if len(expected) != len(image_shape) or any(
                e is not None and e != s for e, s in zip(expected, image_shape)
            ):
                raise ValueError(
                    f"The teacher takes inputs of shape {expected} (None = any) but the student's "
                    f"images are {image_shape}."
                )
        try:  # shapes only: no weights are read and nothing runs
            specs = _Trace(self.raw_features).compute_output_spec(keras.KerasTensor((1,) + image_shape))
        except Exception as e:  # the teacher's own error, without Keras' tracing preamble
            reason = str(e).split("Error encountered:")[-1].strip()
            raise ValueError(f"The teacher cannot take images of shape {image_shape}: {reason}") from None
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
        )
        return config


def get_teacher(teacher, layers=None, normalize="layer_norm", default_vit_layers=None, student=None):
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
    else:
        if is_block_encoder(teacher) and layers is None:
            layers = default_vit_layers
        teacher = TeacherFeatures(teacher, layers=layers, normalize=normalize, name="teacher")
    if student is not None and teacher.model is student:
        raise ValueError("The `teacher` must be a different model from the student `encoder`.")
    return teacher


def teacher_guided_masking(mask_generator, teacher, images, grid_shape, noise=None):
    """Masks for `images` (dict of `ids_keep`, `ids_restore`, `mask`).

    A `GuidedMaskGenerator` is fed the teacher's [CLS] attention as `importance`
    (MaskAlign's attention-guided masks); with a teacher that has no attention it draws
    plain random masks. `noise` fixes the mask whatever the generator.
    """
    if noise is None and isinstance(mask_generator, GuidedMaskGenerator) and teacher.has_attention:
        return mask_generator(images, grid_shape=grid_shape, importance=teacher.attention(images))
    return mask_generator(images, grid_shape=grid_shape, noise=noise)
