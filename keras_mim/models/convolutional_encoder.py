"""What the sparse convolutional encoders share (ConvNeXt V2, any Keras CNN made sparse):
the encoder protocol on a grid of mask cells, and masks given as call arguments."""

import math

import keras
from keras import ops

from keras_mim.layers.sparse_ops import cell_mask_to_active
from keras_mim.models.feature_export import FeatureExport
from keras_mim.models.preset_io import EncoderPresetMixin
from keras_mim.utils import check_image_batch, check_image_size, to_2tuple


class ConvolutionalEncoder(EncoderPresetMixin, FeatureExport, keras.Model):
    """Base of the hierarchical convolutional encoders that masked pretraining sees through
    a grid of mask cells (SparK, FCMAE).

    The cell is the encoder's total stride (32 px for four stages): `patch_size` is
    `(32, 32)`, `grid_shape` the cell grid, so every mask generator works on it as on a
    ViT's token grid. `call(images, mask=None)` returns the last stage as tokens
    `(B, N, D)` (row-major over the cell grid, no prefix token, no final norm: as in
    ConvNeXt and ResNet, a head normalises what it pools); `forward_stages(images, mask=None)` returns every stage's feature
    map. With `mask` `(B, N)` (1 = hidden) the encoding is sparse: hidden cells are zero
    in every stage and no output at a visible position depends on hidden pixels.

    Subclasses set `image_size`, `num_channels`, `stride`, `stage_dims` before calling
    `init_grid()`, and implement `forward_stages(images, active=None, training=None)`
    where `active` is the visible map `(B, gh, gw, 1)`.
    """

    num_prefix_tokens = 0
    num_frames = None
    use_cls_token = False
    use_mask_token = False

    @classmethod
    def cell_size(cls, **config):
        """The mask cell (total stride, in pixels) of an encoder built from `config`."""
        return 32

    def init_grid(self):
        """Set the protocol attributes from `image_size`, `stride` and `stage_dims`."""
        self.image_size = to_2tuple(self.image_size, "image_size")
        self.patch_size = self.patch_shape = (self.stride, self.stride)
        self.grid_shape = check_image_size(self.image_size, self.patch_size, "`image_size`")
        self.output_grid_shape = self.grid_shape
        self.num_patches = math.prod(self.grid_shape)
        self.output_dim = int(self.stage_dims[-1])

    @property
    def input_size(self):
        return self.image_size

    def check_images(self, images, name="images"):
        """Raise a clear error unless `images` fits this encoder; returns its cell grid."""
        shape = check_image_batch(images, self.num_channels, name)
        return check_image_size(shape[1:3], self.patch_size, f"`{name}` size")

    def active_map(self, mask):
        """`(B, N)` mask (1 = hidden) -> visible map `(B, gh, gw, 1)`, or None."""
        return None if mask is None else cell_mask_to_active(mask, self.grid_shape)

    def stages(self, images, mask=None, training=None):
        """Every stage's feature map, finest first; sparse when `mask` `(B, N)` is given."""
        return self.forward_stages(images, self.active_map(mask), training=training)

    def call(self, images, mask=None, training=None):
        fmap = self.stages(images, mask, training=training)[-1]  # (B, gh, gw, D)
        tokens = ops.reshape(fmap, (-1, self.num_patches, fmap.shape[-1]))
        return tokens

    def pooled_features(self, images, training=None):
        """Global average of the last stage `(B, D)` (what a classification head reads)."""
        return ops.mean(self.stages(images, training=training)[-1], axis=(1, 2))
