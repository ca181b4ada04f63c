"""Helpers the model tests share: real data, the jit choice per backend, loss-falls and
`.keras` round-trip checks (one piece of code for every pretraining method)."""

import json

import keras
import numpy as np
from sklearn.datasets import load_digits

from tests.conftest import to_numpy


def digits(n=256, channels=1, size=16):
    """Real 8x8 digits upscaled to `(n, size, size, channels)` float32 in [0, 1]."""
    x = load_digits().images[:n].astype("float32") / 16.0
    x = np.kron(x, np.ones((size // 8, size // 8), "float32"))[..., None]
    return np.repeat(x, channels, axis=-1)


def jit_for_backend():
    """XLA where the backend has it; torch runs eagerly."""
    return keras.backend.backend() in ("jax", "tensorflow")


def fit_history(model, x, epochs=5, batch_size=32, learning_rate=3e-3, **fit_kwargs):
    """Compile with the MAE optimizer (AdamW, beta_2 0.95) and return the loss history."""
    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate, weight_decay=0.05, beta_2=0.95),
        jit_compile=jit_for_backend(),
    )
    history = model.fit(x, batch_size=batch_size, epochs=epochs, shuffle=False, verbose=0, **fit_kwargs)
    return history.history["loss"]


def assert_loss_falls(model, x, factor=0.75, **kwargs):
    """Train `model` on `x`; the last epoch's mean loss must be below `factor` x the first."""
    history = fit_history(model, x, **kwargs)
    assert np.all(np.isfinite(history)), history
    assert history[-1] < factor * history[0], history
    return history


def same_config(a, b):
    return json.loads(json.dumps(a)) == json.loads(json.dumps(b))  # tuples and lists alike


def assert_roundtrip(model, x, tmp_path, call_kwargs=None, keys=None, atol=1e-6):
    """Save to `.keras`, load, and compare config, outputs (called with `call_kwargs`,
    e.g. a fixed `noise`) and the loss; returns the loaded model."""
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is type(model)
    assert same_config(loaded.get_config(), model.get_config())
    call_kwargs = call_kwargs or {}
    a, b = model(x, **call_kwargs), loaded(x, **call_kwargs)
    for key in keys or sorted(a):
        np.testing.assert_allclose(to_numpy(a[key]), to_numpy(b[key]), atol=atol, err_msg=key)
    la, lb = model.compute_loss(x=x, y_pred=a, training=False), loaded.compute_loss(x=x, y_pred=b, training=False)
    np.testing.assert_allclose(float(la), float(lb), rtol=1e-5, atol=1e-7)
    return loaded


def moving_digits(n=128, frames=4, channels=1):
    """Real digits sliding one pixel right and down per frame: `(n, frames, 16, 16, channels)`."""
    x = digits(n, channels=channels)
    return np.stack([np.roll(x, (f, f), axis=(1, 2)) for f in range(frames)], axis=1)


def method_inputs(spec, encoder, n=256):
    """Real-digit training data for a registered method, as its model takes them: images
    `(n, H, W, C)`, clips of moving digits `(n, T, H, W, C)`, or view pairs (CropMAE-style:
    a digit and the same digit shifted; SiamMAE-style: two frames of a moving digit)."""
    channels, size = encoder.num_channels, tuple(encoder.image_size)
    if spec.data == "audio":
        return tone_spectrograms(n, size)
    if spec.data == "points":
        from keras_mim.data.sample_points import shape_clouds

        return shape_clouds(n, num_points=encoder.num_points, seed=0)[0]
    if spec.data == "paired":  # generated scenes: RGB, depth and class maps
        from keras_mim.data.paired_scenes import paired_scenes

        return paired_scenes(n, image_size=encoder.image_size, seed=0)
    if spec.data == "multispectral":  # generated tiles, SatMAE's 10 of the 13 bands
        from keras_mim.data.multispectral import SATMAE_BANDS, multispectral_scenes

        return multispectral_scenes(n, image_size=size, seed=0)[0][..., list(SATMAE_BANDS)[:channels]]
    if size not in ((16, 16), (64, 64)):
        raise ValueError(f"test presets are 16 px (64 px for 32 px mask cells); got {size}")
    if spec.two_views:
        if spec.data == "clips":
            frames = moving_digits(n, frames=3, channels=channels)
            return {"reference": frames[:, 0], "target": frames[:, 2]}
        x = digits(n, channels=channels)
        return {"reference": x, "target": np.roll(x, 2, axis=2)}
    if spec.data == "clips":
        return moving_digits(n, frames=encoder.num_frames, channels=channels)
    return digits(n, channels=channels, size=size[0])


def tone_spectrograms(n, size, seed=0):
    """Log-mel spectrograms `(n, frames, mel_bins, 1)` of generated tones and chirps
    (`keras_mim.data.sample_audio.tone_clips`), as numpy."""
    import keras

    from keras_mim.data.sample_audio import tone_clips
    from keras_mim.layers import LogMelSpectrogram

    frames, bins = size
    waves, _, _ = tone_clips(n, seconds=0.01 * frames + 0.03, seed=seed)
    return keras.ops.convert_to_numpy(LogMelSpectrogram(num_mel_bins=bins, num_frames=frames)(waves))


def map_inputs(fn, x):
    """`fn` applied to an input array, or to each view of a view pair."""
    return {k: fn(v) for k, v in x.items()} if isinstance(x, dict) else fn(x)


def small_teacher(channels=1):
    """A small frozen teacher for the teacher methods' test presets (16 px, patch 4)."""
    from keras_mim import ViTEncoder

    return ViTEncoder(image_size=16, patch_size=4, num_channels=channels, embed_dim=24, depth=2, num_heads=2,
                      name="teacher")


def build_test_method(name, channels=1, **overrides):
    """Method `name` on its test preset, for `channels`-channel images, seeded; teacher
    methods get `small_teacher`."""
    from keras_mim.models import build_method, get_method_spec

    spec = get_method_spec(name)
    if spec.teacher and "teacher" not in overrides:
        overrides["teacher"] = small_teacher(channels)
    fixed = "channel_groups" in spec.presets[spec.test_preset]["encoder"]  # SatMAE's band groups fix the bands
    if spec.data not in ("points", "paired") and not fixed:  # x, y, z; modalities fix theirs
        overrides["num_channels"] = channels
    return build_method(name, seed=0, **overrides)
