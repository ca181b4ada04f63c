"""Any functional Keras CNN as a sparse encoder (SparK's `dense_model_to_sparse`)."""

import keras
from keras import ops

from keras_mim.layers.sparse_batch_norm import SparseBatchNormalization
from keras_mim.layers.sparse_ops import active_like, resize_active
from keras_mim.models.convolutional_encoder import ConvolutionalEncoder

#: Names of `keras.applications` CNNs `SparseCNN` builds itself (`weights=None`,
#: `include_top=False`; ConvNeXt without its ImageNet preprocessing layer).
KERAS_CNNS = {"resnet50": "ResNet50", "resnet101": "ResNet101", "resnet152": "ResNet152",
              "convnext_tiny": "ConvNeXtTiny", "convnext_small": "ConvNeXtSmall", "convnext_base": "ConvNeXtBase"}

#: Layers that mix positions in a way zeroing cannot keep sparse (statistics or outputs
#: over all positions, or reshaping the grid).
NOT_SPARSE = (keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D, keras.layers.Flatten,
              keras.layers.Reshape, keras.layers.GroupNormalization, keras.layers.UnitNormalization,
              keras.layers.MultiHeadAttention, keras.layers.Attention, keras.layers.Resizing,
              keras.layers.SpectralNormalization)
STAGE_STRIDES = (4, 8, 16, 32)


def keras_cnn(name, image_size=224, num_channels=3):
    """A `keras.applications` CNN by keras_mim name (`KERAS_CNNS`), untrained, without its head."""
    if name not in KERAS_CNNS:
        raise ValueError(f"Unknown CNN {name!r}; expected one of {sorted(KERAS_CNNS)} or a functional keras.Model.")
    h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    kwargs = dict(include_top=False, weights=None, input_shape=(h, w, num_channels), pooling=None)
    if name.startswith("convnext"):
        kwargs["include_preprocessing"] = False  # keras_mim images are scaled pixels, not 0-255
    return getattr(keras.applications, KERAS_CNNS[name])(**kwargs)


@keras.saving.register_keras_serializable(package="keras_mim")
class MaskStage(keras.layers.Layer):
    """`x * active` with the visible map brought to `x`'s resolution (inside a sparse graph)."""

    def call(self, x, active):
        return x * active_like(active, x)

    def compute_output_shape(self, x_shape, active_shape):
        return x_shape


@keras.saving.register_keras_serializable(package="keras_mim")
class SplitMask(keras.layers.Layer):
    """`(B, H, W, C + 1)` images with the visible map as last channel -> `(images, visible map)`."""

    def call(self, packed):
        return packed[..., :-1], packed[..., -1:]

    def compute_output_shape(self, shape):
        return tuple(shape[:-1]) + (shape[-1] - 1,), tuple(shape[:-1]) + (1,)


def layer_outputs(model):
    """`[(layer, output shape)]` of a functional model's layers, nested Sequentials opened."""
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.Sequential):
            found += [(sub, tuple(sub.output.shape)) for sub in layer.layers]
        elif isinstance(layer, keras.Model):
            raise ValueError(f"Layer {layer.name!r} is a nested {type(layer).__name__}; SparseCNN opens nested "
                             "Sequential models only. Flatten it into the outer functional model.")
        else:
            try:
                found.append((layer, tuple(layer.output.shape)))
            except (AttributeError, ValueError) as err:  # a layer called more than once
                raise ValueError(f"Layer {layer.name!r} is used more than once; SparseCNN needs each layer "
                                 f"called once ({err}).") from None
    return found


def check_sparse_layers(model, image_size):
    """Raise a ValueError naming the first layer that cannot be made sparse; returns the
    names of the last layer at each stage stride (4, 8, 16, 32 px)."""
    h, w = image_size
    stages = {}
    for layer, shape in layer_outputs(model):
        bad = isinstance(layer, NOT_SPARSE)
        axis = getattr(layer, "axis", None)
        if isinstance(layer, (keras.layers.LayerNormalization, keras.layers.BatchNormalization)):
            bad = bad or axis not in (-1, 3, [-1], [3], (-1,), (3,))
        if bad or len(shape) != 4:
            raise ValueError(f"Layer {layer.name!r} ({type(layer).__name__}) cannot be made sparse: it "
                             f"{'mixes every position' if bad else f'outputs shape {shape}, not a feature map'}; "
                             "build the CNN without it (e.g. `include_top=False, pooling=None`).")
        if isinstance(layer, keras.layers.ZeroPadding2D):
            continue  # borders of zeros, nothing to mask
        fh, fw = shape[1], shape[2]
        if h % fh or w % fw or h // fh != w // fw or h // fh > 32:
            raise ValueError(f"Layer {layer.name!r} outputs a {fh} x {fw} map, which is not a whole stride "
                             f"(at most 32) of the {h} x {w} input; SparseCNN cannot align the mask with it.")
        if h // fh in STAGE_STRIDES:
            stages[h // fh] = layer.name
    if 32 not in stages:
        raise ValueError(f"The CNN's total stride is {max(stages or [1])} px; SparK's mask cells need a stride of 32.")
    return [stages[s] for s in STAGE_STRIDES if s in stages]


def sparse_graph(model, stage_names):
    """A functional model `(B, H, W, C + 1) -> [stage maps]` running `model`'s own layers
    (shared weights) with hidden positions zeroed after every layer and batch norms
    replaced by `SparseBatchNormalization` wrappers; the last input channel is the visible map."""
    h, w, c = model.input_shape[1:]
    packed = keras.Input((h, w, c + 1), name="images_and_visible_map")
    raw, active = SplitMask(name="split_mask")(packed)
    images = MaskStage(name="mask_input")(raw, active)
    found = {}

    def run(layer, args, kwargs):
        if isinstance(layer, keras.Sequential):
            x = args[0]
            for sub in layer.layers:
                x = run(sub, (x,), {})
            return x
        if isinstance(layer, keras.layers.BatchNormalization):
            out = SparseBatchNormalization(layer, name=f"sparse_{layer.name}")(args[0], active)
        else:
            out = layer(*args, **kwargs)
        if not isinstance(layer, keras.layers.ZeroPadding2D):
            out = MaskStage(name=f"mask_{layer.name}")(out, active)
        found[layer.name] = out
        return out

    def call_function(layer, *args, **kwargs):
        args = keras.tree.map_structure(lambda t: images if t is packed else t, args)
        return run(layer, args, kwargs)

    keras.models.clone_model(model, input_tensors=packed, clone_function=lambda layer: layer,
                             call_function=call_function)
    return keras.Model(packed, [found[name] for name in stage_names], name=f"sparse_{model.name}")


@keras.saving.register_keras_serializable(package="keras_mim")
class SparseCNN(ConvolutionalEncoder):
    """A functional Keras CNN (channels last, total stride 32) as a sparse keras_mim
    encoder, SparK's way: the same layers (shared weights) run with hidden 32 px cells
    zeroed in the input and after every layer, and every `BatchNormalization` replaced
    by a `SparseBatchNormalization` wrapper (batch statistics over visible positions
    only). `backbone` stays the ordinary dense network: after pretraining it holds the
    learned weights and is used as any Keras model (`encoder.backbone.save(...)`,
    `ImageClassifier(encoder, ...)`).

    `forward_stages` returns the last feature map at each stride 4, 8, 16 and 32 px
    (SparK's hierarchical features; for keras.applications ResNet50 the outputs of
    conv2 .. conv5). `call(images, mask=None)` returns the stride-32 map as tokens.

    Differences from the official code: SparK rewrites PyTorch modules in place and
    keeps the mask in a module-level variable; here the mask travels as the last channel
    of the sparse graph's input (it traces under jit on every backend), the graph is
    built with `keras.models.clone_model(..., call_function=...)`, and a layer SparK
    does not know is still accepted when it keeps positions apart (per-position or
    local), with outputs zeroed after it; layers that mix all positions are refused.

    Args:
        backbone: a functional `keras.Model` (one image input of static size), a name in
            `KERAS_CNNS` (`"resnet50"`, `"convnext_tiny"`, ...: built untrained by
            `keras.applications`), or a serialized model.
        image_size: input size when `backbone` is a name (multiples of 32; default 224).
        num_channels: input channels when `backbone` is a name.
        **kwargs: standard model arguments (name, dtype).

    Examples:
        >>> import numpy as np
        >>> enc = SparseCNN("resnet50", image_size=64)
        >>> enc.grid_shape, [tuple(f.shape[1:3]) for f in enc.stages(np.zeros((1, 64, 64, 3), "float32"))]
        ((2, 2), [(16, 16), (8, 8), (4, 4), (2, 2)])
    """

    drop_path_rate = 0.0
    norm_epsilon = 1e-6

    def __init__(self, backbone="resnet50", image_size=None, num_channels=3, **kwargs):
        super().__init__(**kwargs)
        self.backbone_name = backbone if isinstance(backbone, str) else None
        if isinstance(backbone, str):
            backbone = keras_cnn(backbone, 224 if image_size is None else image_size, num_channels)
        elif isinstance(backbone, dict):
            backbone = keras.saving.deserialize_keras_object(backbone)
        if not isinstance(backbone, keras.Model) or not hasattr(backbone, "inputs") or not backbone.inputs:
            raise TypeError(f"`backbone` must be a functional keras.Model or one of {sorted(KERAS_CNNS)}, "
                            f"got {type(backbone).__name__}.")
        if len(backbone.inputs) != 1 or len(backbone.input_shape) != 4 or None in backbone.input_shape[1:]:
            raise ValueError(f"`backbone` must take one batch of images of static size (B, H, W, C), got input "
                             f"shape {backbone.input_shape}.")
        self.backbone = backbone
        self.image_size = tuple(backbone.input_shape[1:3])
        self.num_channels = int(backbone.input_shape[3])
        self.stride = 32
        self.stage_names = check_sparse_layers(backbone, self.image_size)
        self.sparse_model = sparse_graph(backbone, self.stage_names)
        self.stage_dims = tuple(int(o.shape[-1]) for o in self.sparse_model.outputs)
        self.init_grid()
        self.depth = len(self.stage_names)
        self.built = True

    def build(self, images_shape=None):
        self.built = True

    def build_from_config(self, config):
        self.built = True

    def forward_stages(self, images, active=None, training=None):
        if active is None:
            active = ops.ones_like(images[..., :1])
        visible = ops.cast(resize_active(active, self.image_size), images.dtype)  # (B, H, W, 1)
        return list(self.sparse_model(ops.concatenate([images, visible], axis=-1), training=training))

    def get_config(self):
        config = super().get_config()
        if self.backbone_name is not None:
            config.update(backbone=self.backbone_name, image_size=self.image_size, num_channels=self.num_channels)
        else:
            config.update(backbone=keras.saving.serialize_keras_object(self.backbone))
        return config
