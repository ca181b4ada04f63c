"""The encoder protocol is the contract: a minimal encoder written here, with nothing of
ViTEncoder, trains inside MAE and SimMIM and survives a `.keras` round trip."""

import keras
import numpy as np
from keras import ops

from keras_mim.models import MaskedAutoencoder, SimMIM
from keras_mim.models.pretraining_model import ENCODER_PROTOCOL
from tests.conftest import to_numpy


@keras.saving.register_keras_serializable(package="keras_mim_tests")
class LinearPatchEncoder(keras.Model):
    """Each patch through one Dense layer, no attention, no position: the least an encoder
    needs to be (`ENCODER_PROTOCOL`, and a mask token for SimMIM)."""

    def __init__(self, image_size=16, patch_size=4, num_channels=1, width=8, **kwargs):
        super().__init__(**kwargs)
        self.image_size, self.patch_size = (image_size, image_size), (patch_size, patch_size)
        self.patch_shape, self.input_size, self.num_channels = self.patch_size, self.image_size, num_channels
        self.grid_shape = self.output_grid_shape = (image_size // patch_size,) * 2
        self.num_patches, self.num_prefix_tokens, self.output_dim = self.grid_shape[0] ** 2, 0, width
        self.use_mask_token = True
        self.proj = keras.layers.Dense(width, name="proj")

    def build(self, images_shape=None):
        self.proj.build((None, self.num_patches, self.patch_size[0] ** 2 * self.num_channels))
        self.mask_token = self.add_weight(shape=(self.output_dim,), initializer="zeros", name="mask_token")
        self.built = True

    def check_images(self, images, name="images"):
        if tuple(images.shape[1:]) != self.image_size + (self.num_channels,):
            raise ValueError(f"`{name}` must be (B, 16, 16, {self.num_channels}), got {images.shape}")

    def call(self, images, ids_keep=None, token_mask=None, training=None):
        g, p, c = self.grid_shape[0], self.patch_size[0], self.num_channels
        x = ops.reshape(images, (-1, g, p, g, p, c))
        x = ops.reshape(ops.transpose(x, (0, 1, 3, 2, 4, 5)), (-1, g * g, p * p * c))
        x = self.proj(x)  # (B, N, D)
        if token_mask is not None:  # SimMIM: hidden patches become the mask token
            m = ops.expand_dims(ops.cast(token_mask, x.dtype), -1)
            x = x * (1 - m) + self.mask_token * m
        if ids_keep is not None:  # MAE: only the visible tokens
            x = ops.take_along_axis(x, ops.expand_dims(ids_keep, -1), axis=1)
        return x

    def get_config(self):
        return {**super().get_config(), "image_size": self.image_size[0], "patch_size": self.patch_size[0],
                "num_channels": self.num_channels, "width": self.output_dim}


def digits(n=32):
    from sklearn.datasets import load_digits

    x = load_digits().images[:n, :, :, None].astype("float32") / 16.0  # (n, 8, 8, 1)
    return np.repeat(np.repeat(x, 2, axis=1), 2, axis=2)  # (n, 16, 16, 1)


def train_and_round_trip(model, tmp_path):
    x = digits()
    assert all(hasattr(model.encoder, a) for a in ENCODER_PROTOCOL)
    model.build()  # keras_mim models know their shapes; the encoder's build() too
    before = to_numpy(model.encoder.proj.kernel).copy()
    model.compile(optimizer=keras.optimizers.AdamW(1e-2))
    history = model.fit(x, batch_size=16, epochs=3, shuffle=False, verbose=0).history["loss"]
    assert np.all(np.isfinite(history)) and history[-1] < history[0], history
    assert not np.allclose(before, to_numpy(model.encoder.proj.kernel))  # the encoder trained
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert type(loaded.encoder) is LinearPatchEncoder
    noise = np.random.default_rng(0).random((4, 16)).astype("float32")
    a, b = model(x[:4], noise=noise), loaded(x[:4], noise=noise)
    np.testing.assert_allclose(to_numpy(a["pred"]), to_numpy(b["pred"]), atol=1e-6)


def test_mae_trains_a_minimal_encoder(tmp_path):
    decoder = dict(decoder_dim=16, depth=1, num_heads=2)  # an MAEDecoder on the encoder's grid, no prefix token
    train_and_round_trip(MaskedAutoencoder(LinearPatchEncoder(), decoder=decoder, mask_ratio=0.5, seed=0), tmp_path)


def test_simmim_trains_a_minimal_encoder(tmp_path):
    train_and_round_trip(SimMIM(LinearPatchEncoder(), mask_ratio=0.5, seed=0), tmp_path)
