"""The torch-free `.pth` reader against `torch.load(path, weights_only=True)` on the same file:
every tensor (name, shape, dtype, values) and every other entry must agree."""

import collections
from collections.abc import Mapping

import numpy as np
import pytest
import torch

from keras_mim.checkpoints import load_torch_file

#: The numpy dtype the reader promises for each torch dtype (bfloat16 widens, exactly, to float32).
EXPECTED_DTYPES = {
    torch.float64: "float64", torch.float32: "float32", torch.float16: "float16",
    torch.bfloat16: "float32", torch.int64: "int64", torch.int32: "int32", torch.int16: "int16",
    torch.int8: "int8", torch.uint8: "uint8", torch.bool: "bool",
}


def training_checkpoint():
    """A training checkpoint as torch code writes one: a state dict of several dtypes and
    strided views sharing storages, nested dicts (EMA blocks, optimizer state with int keys),
    lists, tuples and plain values."""
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(6, 4, generator=gen)
    special = torch.tensor([0.0, -0.0, float("inf"), float("-inf"), float("nan"), 65504.0, 6e-8])
    model = collections.OrderedDict(
        weight=weight,
        transposed=weight.t(),  # strides (1, 4) over the same storage
        strided=weight[1::2, ::3],  # storage offset 4, strides (8, 3)
        row=weight[5],  # offset 20 into the shared storage
        expanded=torch.randn(3, 1, generator=gen).expand(3, 5),  # zero stride
        f16=torch.cat([torch.randn(5, generator=gen), special]).half(),
        bf16=torch.cat([torch.randn(9, generator=gen), special]).bfloat16().view(2, 8)[:, 1::2],
        f64=torch.randn(2, 3, generator=gen, dtype=torch.float64),
        i64=torch.arange(-6, 6).view(3, 4).t(),
        i32=torch.tensor([-(2**31), 2**31 - 1], dtype=torch.int32),
        i16=torch.tensor([-7, 300], dtype=torch.int16),
        i8=torch.tensor([-128, 127], dtype=torch.int8),
        u8=torch.tensor([0, 255, 3], dtype=torch.uint8),
        mask=torch.tensor([[True, False], [False, True]]),
        scalar=torch.tensor(2.5),
        empty=torch.zeros(0, 3),
    )
    blocks = {str(i): {"attn": {"qkv": torch.randn(6, 2, generator=gen).half()}, "norm": torch.ones(2)}
              for i in range(2)}
    return {
        "model": model,
        "ema": {"decay": 0.999, "blocks": blocks},
        "optimizer": {
            "state": {0: {"step": torch.tensor(10.0), "exp_avg": torch.randn(6, 4, generator=gen)}},
            "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.95), "params": [0]}],
        },
        "epoch": 7,
        "names": ["weight", "strided"],
        "flag": None,
    }


def assert_same(ours, theirs, where="checkpoint"):
    """Walk `torch.load`'s object and the reader's side by side; returns the tensor count."""
    if isinstance(theirs, torch.Tensor):
        assert isinstance(ours, np.ndarray), f"{where}: {type(ours).__name__}, not an array"
        assert ours.shape == tuple(theirs.shape), where
        assert ours.dtype == np.dtype(EXPECTED_DTYPES[theirs.dtype]), f"{where}: {ours.dtype} for {theirs.dtype}"
        want = (theirs.float() if theirs.dtype == torch.bfloat16 else theirs).numpy()
        np.testing.assert_array_equal(ours, want, err_msg=where)  # NaNs compare equal here
        if ours.dtype.kind == "f":  # -0.0 == 0.0 above: the signs must match too
            np.testing.assert_array_equal(np.signbit(ours), np.signbit(want), err_msg=where)
        return 1
    if isinstance(theirs, Mapping):
        assert isinstance(ours, Mapping), f"{where}: {type(ours).__name__}, not a dict"
        assert list(ours) == list(theirs), where  # the same names, in the same order
        return sum(assert_same(ours[key], theirs[key], f"{where}[{key!r}]") for key in theirs)
    if isinstance(theirs, (list, tuple)):
        assert type(ours) is type(theirs) and len(ours) == len(theirs), where
        return sum(assert_same(a, b, f"{where}[{i}]") for i, (a, b) in enumerate(zip(ours, theirs)))
    assert type(ours) is type(theirs) and ours == theirs, f"{where}: {ours!r} != {theirs!r}"
    return 0


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_reader_agrees_with_torch_load(tmp_path, zip_format):
    path = tmp_path / "checkpoint.pth"
    torch.save(training_checkpoint(), path, _use_new_zipfile_serialization=zip_format)
    theirs = torch.load(path, weights_only=True)
    ours = load_torch_file(path)
    assert assert_same(ours, theirs) == 16 + 2 * 2 + 2  # model, EMA blocks, optimizer state
    # The views come back as independent contiguous arrays, not windows on the storage.
    for key in ("transposed", "strided", "expanded", "bf16"):
        assert ours["model"][key].flags["C_CONTIGUOUS"] and ours["model"][key].flags["OWNDATA"], key


def test_comparison_catches_a_difference(tmp_path):
    """The walk above is not vacuous: one changed element, dtype or name fails it."""
    torch.save({"model": {"w": torch.ones(2, 2)}}, tmp_path / "a.pth")
    ours = load_torch_file(tmp_path / "a.pth")
    theirs = torch.load(tmp_path / "a.pth", weights_only=True)
    ours["model"]["w"][0, 1] = 2.0
    with pytest.raises(AssertionError, match=r"\['model'\]\['w'\]"):
        assert_same(ours, theirs)
    for changed in ({"model": {"w": np.ones((2, 2), "float64")}}, {"model": {"v": np.ones((2, 2), "float32")}}):
        with pytest.raises(AssertionError):
            assert_same(changed, theirs)
