import os
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from etils import epath
from PIL import Image

from keras_mim import MaskedAutoencoder
from keras_mim.data.image_folder import ImageFolder
from keras_mim.data.images import image_dataset
from tests.data.test_image_folder import write_folder
from tests.layers.test_random_resized_crop import pil_crop_resize


def batches(ds):
    return [tuple(np.asarray(v) for v in b) if isinstance(b, tuple) else np.asarray(b) for b in ds]


#: The tiny MAEs `fit_one_step` trains, one per channel count, built and compiled once per
#: process: each test's `fit` then reuses the compiled step (its batches are all 4 x 16 x 16 x C),
#: where a model per test compiled (JAX) or traced (TensorFlow) it anew, 5-10 s each.
FIT_MODELS = {}
FIT_BATCH = 4


def fit_one_step(ds, num_channels):
    """A tiny MAE takes the dataset in `fit` (one step of a `FIT_BATCH` batch). Compiled on
    JAX, whose eager op-by-op dispatch costs ~4x its one XLA compile; TensorFlow's graph mode
    (no XLA) and torch eager are the cheaper ways there."""
    model = FIT_MODELS.get(num_channels)
    if model is None:
        model = MaskedAutoencoder.from_preset("mae_vit_test", image_size=16, num_channels=num_channels, seed=0)
        model.compile(optimizer="adamw", jit_compile=keras.backend.backend() == "jax")
        FIT_MODELS[num_channels] = model
    history = model.fit(ds, epochs=1, steps_per_epoch=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


# ------------------------------------------------------------------------------------ arrays
@pytest.mark.parametrize("dtype, scale", [("uint8", 255.0), ("uint16", 65535.0), ("float32", 1.0)])
def test_array_scaling(dtype, scale):
    rng = np.random.default_rng(0)
    x = (rng.random((5, 8, 6, 3)) * scale).astype(dtype) if scale > 1 else rng.random((5, 8, 6, 3)).astype(dtype)
    out = np.concatenate(batches(image_dataset(x, batch_size=2, shuffle=False)))
    assert out.dtype == np.float32 and out.shape == (5, 8, 6, 3)
    np.testing.assert_allclose(out, x.astype("float64") / scale, atol=1e-6)


def test_array_gray_labels_shuffle_and_fit():
    x = np.random.default_rng(1).random((12, 20, 20)).astype("float32")
    ds = image_dataset(x, image_size=16, batch_size=4, labels=np.arange(12), seed=3)
    (images, labels), *_ = batches(ds)
    assert images.shape == (4, 16, 16, 1) and labels.dtype == np.int32
    assert not np.array_equal(np.concatenate([b[1] for b in batches(ds)]), np.arange(12))  # shuffled
    epoch = lambda d: np.concatenate([b[1] for b in batches(d)])  # noqa: E731
    np.testing.assert_array_equal(epoch(image_dataset(x, 16, 4, labels=np.arange(12), seed=3)),
                                  epoch(image_dataset(x, 16, 4, labels=np.arange(12), seed=3)))
    fit_one_step(image_dataset(x, image_size=16, batch_size=FIT_BATCH, augmentation="mae"), 1)


def test_array_non_finite_raises():
    x = np.zeros((3, 4, 4, 1), "float32")
    x[2, 1, 1] = np.nan
    with pytest.raises(ValueError, match=r"NaN or inf .*image 2"):
        image_dataset(x)


# ------------------------------------------------------------------------------------ resize modes
def test_resize_modes_match_pil():
    image = np.random.default_rng(2).random((20, 40, 1)).astype("float32")
    out = {mode: batches(image_dataset(image[None], image_size=10, resize=mode, shuffle=False))[0][0]
           for mode in ("resize", "crop", "pad")}
    np.testing.assert_allclose(out["resize"], pil_crop_resize(image, (0, 0, 20, 40), (10, 10)), atol=2e-3)
    np.testing.assert_allclose(out["crop"], pil_crop_resize(image, (0, 10, 20, 20), (10, 10)), atol=2e-3)
    # pad: the whole image shrunk to 5 x 10, centred between zero rows.
    np.testing.assert_allclose(out["pad"][2:7], pil_crop_resize(image, (0, 0, 20, 40), (5, 10)), atol=2e-3)
    assert (out["pad"][:2] == 0).all() and (out["pad"][7:] == 0).all()


# ------------------------------------------------------------------------------------ tf.data
@pytest.mark.parametrize("kind", ["images", "pairs", "dicts", "batched"])
def test_tf_data_sources(kind):
    x = (np.random.default_rng(3).random((6, 16, 16, 3)) * 255).astype("uint8")
    y = np.arange(6) % 2
    source = {"images": tf.data.Dataset.from_tensor_slices(x),
              "pairs": tf.data.Dataset.from_tensor_slices((x, y)),
              "dicts": tf.data.Dataset.from_tensor_slices({"image": x, "label": y}),
              "batched": tf.data.Dataset.from_tensor_slices((x, y)).batch(4)}[kind]
    labels = None if kind == "images" else "inferred"
    out = batches(image_dataset(source, batch_size=3, shuffle=False, labels=labels))
    images = np.concatenate([b[0] for b in out] if labels else out)
    np.testing.assert_allclose(images, x / 255.0, atol=1e-6)
    if labels:
        np.testing.assert_array_equal(np.concatenate([b[1] for b in out]), y)
    if kind == "dicts":
        fit_one_step(image_dataset(source, batch_size=FIT_BATCH, num_channels=1), 1)


# ------------------------------------------------------------------------------------ folders
def test_folder_source_skips_lists_and_fits(tmp_path):
    write_folder(tmp_path)
    ds = image_dataset(tmp_path, image_size=16, batch_size=4, labels="inferred", seed=1)
    assert ds.num_channels == 3 and ds.class_names == ["junk", "people", "scans"]
    with pytest.warns(UserWarning, match="corrupt.png"):
        out = batches(ds)
    assert sum(len(b[1]) for b in out) == 9  # 10 files pass the scan, one fails to decode
    assert all(b[0].shape[1:] == (16, 16, 3) and 0 <= b[0].min() and b[0].max() <= 1 for b in out)
    names = sorted(os.path.basename(p) for p, _ in ds.skipped)
    assert names == ["corrupt.png", "empty.png", "notes.jpg", "random.png", "truncated.jpg"]
    assert len(batches(ds)) == 3 and len(ds.skipped) == 5  # listed once, not per pass
    fit_one_step(image_dataset(ImageFolder(tmp_path / "scans"), image_size=16, num_channels=1, batch_size=FIT_BATCH),
                 1)


def test_folder_mixed_channels_and_gray_conversion(tmp_path):
    write_folder(tmp_path)
    gray = image_dataset(tmp_path / "scans", image_size=8, num_channels=1, shuffle=False)
    assert batches(gray)[0].shape == (5, 8, 8, 1)
    folder = ImageFolder(tmp_path / "scans")
    camera = batches(image_dataset(folder, image_size=8, shuffle=False))[0][0]  # camera.bmp, 1 -> 3
    np.testing.assert_array_equal(camera[..., 0], camera[..., 2])


def test_folder_of_different_sizes_needs_image_size(tmp_path):
    write_folder(tmp_path)
    with pytest.raises(ValueError, match=r"differ in size .*pass `image_size`"):
        image_dataset(tmp_path)


def test_multichannel_folder(tmp_path):
    import tifffile

    for i in range(3):
        tifffile.imwrite(tmp_path / f"tile{i}.tif", np.random.default_rng(i).random((16, 16, 5)).astype("float32"),
                         photometric="minisblack", planarconfig="contig")
    ds = image_dataset(tmp_path, batch_size=3)
    assert ds.num_channels == 5 and batches(ds)[0].shape == (3, 16, 16, 5)
    with pytest.raises(ValueError, match="5-channel"):
        image_dataset(tmp_path, num_channels=3)


# ------------------------------------------------------------------------------------ tfds
class KerasMimTinyImages(tfds.core.GeneratorBasedBuilder):
    """Six 16 x 16 RGB images with labels, generated (no download)."""

    VERSION = tfds.core.Version("1.0.0")
    # TFDS looks for the builder's checksums next to its code through importlib_resources,
    # which this tfds version imports without declaring it; point it at this file instead.
    code_path = epath.Path(__file__)

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(16, 16, 3)), "label": tfds.features.ClassLabel(names=["a", "b"])}))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for i in range(6):
            yield i, {"image": np.full((16, 16, 3), 40 * i, "uint8"), "label": i % 2}


def test_tfds_prepared_set_loads_offline(tmp_path):
    KerasMimTinyImages(data_dir=str(tmp_path)).download_and_prepare()
    ds = image_dataset("tfds:keras_mim_tiny_images", data_dir=tmp_path, batch_size=3, labels="inferred",
                       shuffle=False)
    assert ds.class_names == ["a", "b"]
    images = np.concatenate([b[0] for b in batches(ds)])
    np.testing.assert_allclose(np.sort(images[:, 0, 0, 0]), np.arange(6) * 40 / 255, atol=1e-6)
    fit_one_step(image_dataset("tfds:keras_mim_tiny_images", data_dir=tmp_path, batch_size=FIT_BATCH), 3)
    with pytest.raises(ValueError, match=r"`split`='validation' .*\['train'\]"):
        image_dataset("tfds:keras_mim_tiny_images", data_dir=tmp_path, split="validation")


def test_tfds_unprepared_fails_at_once_without_download(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(tfds.download.DownloadManager, "download", no_network)
    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", no_network)
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"not prepared .*tfds build mnist --data_dir"):
        image_dataset("tfds:mnist", data_dir=tmp_path)
    with pytest.raises(ValueError, match="no dataset 'no_such_set_xyz'"):
        image_dataset("tfds:no_such_set_xyz", data_dir=tmp_path)
    assert time.perf_counter() - start < 60  # generous guard: no network wait
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    with pytest.raises(ImportError, match="pip install tensorflow-datasets"):
        image_dataset("tfds:mnist")


# ------------------------------------------------------------------------------------ torch
def test_torch_dataloader():
    import torch

    x = np.random.default_rng(4).random((5, 3, 16, 16)).astype("float32")  # (B, C, H, W) as ToTensor
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.tensor(x), torch.arange(5)),
                                         batch_size=2)
    out = batches(image_dataset(loader, batch_size=4, labels="inferred"))
    np.testing.assert_allclose(np.concatenate([b[0] for b in out]), np.moveaxis(x, 1, -1), atol=1e-6)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in out]), np.arange(5))
    fit_one_step(image_dataset(loader, batch_size=FIT_BATCH), 3)


def test_dataloader_channels_last_or_unscaled_batches_raise():
    import torch

    def loader(images):
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images), batch_size=2)

    with pytest.raises(ValueError, match=r"`source` DataLoader yields batches of shape \(2, 16, 16, 3\), which "
                                         r"look channels-last .*images\.permute\(0, 3, 1, 2\)"):
        image_dataset(loader(torch.zeros((4, 16, 16, 3))))
    with pytest.raises(ValueError, match=r"`source` DataLoader \(its first batch\) holds float pixels in "
                                         r"\[200, 200\], expected \[0, 1\]: they look like 0-255 pixels"):
        image_dataset(loader(torch.full((4, 3, 8, 8), 200.0)))


def test_empty_dataloader_and_dataset_raise():
    import torch

    empty = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.zeros((0, 3, 8, 8))), batch_size=2)
    with pytest.raises(ValueError, match=r"`source` DataLoader is empty"):
        image_dataset(empty)
    with pytest.raises(ValueError, match=r"`source` dataset is empty"):
        image_dataset(tf.data.Dataset.from_tensor_slices(np.zeros((0, 8, 8, 3), "float32")))


# ------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(source=[1, 2]), TypeError, r"`source` must be .*got list"),
        (dict(source="missing/folder"), FileNotFoundError, "missing/folder"),
        (dict(source=np.zeros((2, 4, 4, 3)), batch_size=0), ValueError, "`batch_size`"),
        (dict(source=np.zeros((2, 4, 4, 3)), resize="stretch"), ValueError, "`resize`"),
        (dict(source=np.zeros((2, 4, 4, 3)), num_channels=2), ValueError, "`num_channels`"),
        (dict(source=np.zeros((2, 4, 4, 3)), augmentation="simclr"), ValueError, "`augmentation`"),
        (dict(source=np.zeros((2, 4, 4, 3)), augmentation="mae"), ValueError, "needs `image_size`"),
        (dict(source=np.zeros((2, 4, 4, 3)), augmentation=3), TypeError, "`augmentation`"),
        (dict(source=np.zeros((2, 4, 4, 3)), labels="folders"), ValueError, "`labels`"),
        (dict(source=np.zeros((2, 4, 4, 3)), labels=[0]), ValueError, "`labels` must be 2"),
        (dict(source=np.zeros((2, 4, 4, 3)), image_size=0), ValueError, "`image_size`"),
        (dict(source=np.zeros((2, 4, 4, 3)), seed=-1), ValueError, "`seed`"),
        (dict(source=np.zeros((2, 4, 4, 3)), shuffle="yes"), TypeError, "`shuffle`"),
        (dict(source=np.zeros((2, 4, 4, 3), "int32")), TypeError, "dtype int32"),
        (dict(source=np.zeros((2, 4))), ValueError, r"shape \(2, 4\)"),
        (dict(source=tf.data.Dataset.from_tensor_slices(np.zeros((2, 4, 4, 3))), labels="inferred"), ValueError,
         "yields no label"),
        (dict(source="tfds:"), ValueError, "name the dataset"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        image_dataset(**kwargs)


def test_folder_labels_need_subfolders(tmp_path):
    Image.fromarray(np.zeros((4, 4), "uint8")).save(tmp_path / "a.png")
    with pytest.raises(ValueError, match="directly in it"):
        image_dataset(tmp_path, labels="inferred")
    with pytest.raises(ValueError, match="only for an array `source`"):
        image_dataset(tmp_path, labels=np.zeros(1, "int32"))
    assert keras.ops.shape(batches(image_dataset(tmp_path))[0]) == (1, 4, 4, 1)
