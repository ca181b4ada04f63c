"""The torch-free `.pth` and safetensors readers against files written by torch and safetensors."""

import argparse
import collections
import os
import pickle
import zipfile

import numpy as np
import pytest
import safetensors.numpy
import safetensors.torch
import torch

from keras_mim.checkpoints import (
    CheckpointError,
    Namespace,
    load_safetensors,
    load_torch_file,
    read_state_dict,
    save_safetensors,
)


def torch_tensors():
    """Several dtypes, non-contiguous views and storages shared between tensors."""
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(4, 6, generator=gen)
    return collections.OrderedDict(
        f32=base,
        transposed=base.t(),  # same storage, strides (1, 6)
        sliced=base[1:3, ::2],  # offset 6, strides (12, 2)
        row=base[2],  # offset into the shared storage
        f16=torch.randn(3, 5, generator=gen).half(),
        bf16=torch.randn(7, generator=gen).bfloat16().view(7, 1).expand(7, 3),  # zero stride
        f64=torch.randn(2, 2, generator=gen, dtype=torch.float64),
        i64=torch.arange(5),
        i8=torch.tensor([-3, 4], dtype=torch.int8),
        u8=torch.tensor([250, 3], dtype=torch.uint8),
        flag=torch.tensor([True, False]),
        scalar=torch.tensor(2.5),
        empty=torch.zeros(0, 3),
        param=torch.nn.Parameter(torch.ones(2, 2)),
    )


def as_numpy(t):
    t = t.detach()
    return (t.float() if t.dtype == torch.bfloat16 else t).numpy()


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_torch_file_matches_torch(tmp_path, zip_format):
    tensors = torch_tensors()
    path = tmp_path / "x.pth"
    torch.save({"model": tensors, "epoch": 3}, path, _use_new_zipfile_serialization=zip_format)
    loaded = load_torch_file(path)
    assert loaded["epoch"] == 3
    for key, t in tensors.items():
        got, want = loaded["model"][key], as_numpy(t)
        assert got.dtype == want.dtype and got.shape == want.shape, key
        np.testing.assert_array_equal(got, want, err_msg=key)
        assert got.flags["C_CONTIGUOUS"] and got.flags["OWNDATA"], key  # a copy, not a view of the storage


def test_torch_file_reads_official_mae_args(tmp_path):
    args = argparse.Namespace(model="mae_vit_base_patch16", mask_ratio=0.75, norm_pix_loss=True,
                              lr=None, blr=1.5e-4, input_size=224, np_value=np.float32(0.5))
    torch.save({"model": {"cls_token": torch.zeros(1, 1, 8)}, "args": args}, tmp_path / "ckpt.pth")
    loaded = load_torch_file(tmp_path / "ckpt.pth")
    assert isinstance(loaded["args"], Namespace)
    assert vars(loaded["args"]) == vars(args)
    _, info = read_state_dict(str(tmp_path / "ckpt.pth"))
    assert info["args"]["model"] == "mae_vit_base_patch16" and info["args"]["norm_pix_loss"] is True


class Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_restricted_unpickler_refuses_other_globals(tmp_path):
    with zipfile.ZipFile(tmp_path / "evil.pth", "w") as z:
        z.writestr("evil/data.pkl", pickle.dumps({"model": Exploit()}, protocol=2))
    with pytest.raises(CheckpointError, match=r"Refusing to load `posix.system`.*weights_only=False"):
        load_torch_file(tmp_path / "evil.pth")
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps(Exploit(), protocol=2))
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint|Refusing"):
        load_torch_file(tmp_path / "evil.pkl")


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        load_torch_file(tmp_path / "notes.txt")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        read_state_dict(str(tmp_path / "notes.txt"))
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as z:
        z.writestr("readme.md", "no pickle here")
    with pytest.raises(CheckpointError, match="no single data.pkl"):
        load_torch_file(tmp_path / "other.zip")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="not a checkpoint: it holds a list"):
        read_state_dict(str(tmp_path / "list.pth"))
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "meta.pth")
    with pytest.raises(CheckpointError, match="not a state dict"):
        read_state_dict(str(tmp_path / "meta.pth"))
    with pytest.raises(FileNotFoundError, match="No checkpoint"):
        read_state_dict(str(tmp_path / "missing.pth"))
    with pytest.raises(TypeError, match="`source` must be"):
        read_state_dict(42)


def test_truncated_storage_is_reported(tmp_path):
    torch.save({"w": torch.ones(64)}, tmp_path / "ok.pth")
    with zipfile.ZipFile(tmp_path / "ok.pth") as src, zipfile.ZipFile(tmp_path / "cut.pth", "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            dst.writestr(name, data[:16] if "/data/" in name else data)
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_torch_file(tmp_path / "cut.pth")


def test_safetensors_reader_matches_library(tmp_path):
    tensors = {k: v.detach().clone().contiguous() for k, v in torch_tensors().items()}  # no shared storage
    safetensors.torch.save_file(tensors, tmp_path / "t.safetensors", metadata={"format": "pt"})
    loaded, metadata = load_safetensors(tmp_path / "t.safetensors", with_metadata=True)
    assert metadata == {"format": "pt"} and set(loaded) == set(tensors)
    for key, t in tensors.items():
        np.testing.assert_array_equal(loaded[key], as_numpy(t), err_msg=key)
        assert loaded[key].dtype == as_numpy(t).dtype, key


def test_safetensors_writer_is_read_by_library(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {"a": rng.random((3, 4)).astype("float32"), "b": rng.random(5).astype("float16"),
              "c": np.arange(6, dtype="int64").reshape(2, 3)[:, ::2], "d": np.array([True, False]),
              "e": rng.random((2, 2))}
    save_safetensors(arrays, tmp_path / "w.safetensors")
    back = safetensors.numpy.load_file(tmp_path / "w.safetensors")
    for key, a in arrays.items():
        np.testing.assert_array_equal(back[key], a, err_msg=key)
        assert back[key].dtype == a.dtype
    with pytest.raises(TypeError, match=r"z\.safetensors'.* tensor\(s\) 'z' \(complex128\)"):
        save_safetensors({"z": np.zeros(2, complex)}, tmp_path / "z.safetensors")


def test_safetensors_malformed(tmp_path):
    header = b'{"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}'
    (tmp_path / "short.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 8)
    with pytest.raises(CheckpointError, match=r"'.*short\.safetensors' is not a safetensors file, or a damaged one"):
        load_safetensors(tmp_path / "short.safetensors")
    header = b'{"w": {"dtype": "F8_E4M3", "shape": [1], "data_offsets": [0, 1]}}'
    (tmp_path / "f8.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + b"\0")
    with pytest.raises(CheckpointError, match=r"f8\.safetensors': tensor 'w' has dtype 'F8_E4M3'"):
        load_safetensors(tmp_path / "f8.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(CheckpointError, match=r"junk\.safetensors' is not a safetensors file"):
        load_safetensors(tmp_path / "junk.safetensors")
    with pytest.raises(FileNotFoundError, match=r"No safetensors file at '.*missing\.safetensors'"):
        load_safetensors(tmp_path / "missing.safetensors")


def test_safetensors_bfloat16_reads_as_float32(tmp_path):
    values = torch.tensor([1.0, -2.5, 3.140625, 65280.0]).bfloat16()
    safetensors.torch.save_file({"w": values}, tmp_path / "bf16.safetensors")
    got = load_safetensors(tmp_path / "bf16.safetensors")["w"]
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, [1.0, -2.5, 3.140625, 65280.0])  # exactly representable in bf16
