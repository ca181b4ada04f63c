"""Where state dicts come from: `.pth` / `.bin` / `.safetensors` files, Hugging Face model
directories (`config.json` + weights, sharded or not) and in-memory dicts."""

import json
import os
from collections.abc import Mapping

import numpy as np

from keras_mim.checkpoints.common import CheckpointError, describe_keys, to_numpy
from keras_mim.checkpoints.safetensors_file import is_safetensors, load_safetensors
from keras_mim.checkpoints.torch_file import Namespace, load_torch_file

#: Entries of a training checkpoint that hold the model's state dict, tried in order.
CONTAINER_KEYS = ("model", "state_dict", "model_state", "module")
HF_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
              "pytorch_model.bin.index.json")


def _plain(args):
    if args is None:
        return None
    if isinstance(args, Namespace):
        return dict(vars(args))
    return dict(args) if isinstance(args, Mapping) else None


def unwrap_state_dict(obj, source="the checkpoint"):
    """`(state_dict, args)` of a loaded checkpoint object: a bare state dict, or a
    training checkpoint `{"model": state_dict, "args": Namespace, ...}` (official MAE)."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{source} is not a checkpoint: it holds a {type(obj).__name__}, not a dict.")
    args = _plain(obj.get("args"))
    for key in CONTAINER_KEYS:
        if isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    arrays = {k: v for k, v in obj.items() if isinstance(v, np.ndarray) or hasattr(v, "detach")}
    others = [k for k in obj if k not in arrays]
    if not arrays or others:
        what = f"entries that are not tensors: {describe_keys(map(str, others), 6)}" if arrays else "no tensors"
        raise CheckpointError(
            f"{source} is not a state dict ({what}). Expected a dict of tensors, or a training "
            f"checkpoint holding one under one of {list(CONTAINER_KEYS)}."
        )
    return {str(k): to_numpy(v, k) for k, v in arrays.items()}, args


def read_file(path):
    """`(state_dict, args)` of a torch or safetensors file (detected from its bytes)."""
    if is_safetensors(path):
        return load_safetensors(path), None
    return unwrap_state_dict(load_torch_file(path), repr(str(path)))


def read_hf_directory(path):
    """`(state_dict, config)` of a Hugging Face model directory."""
    with open(os.path.join(path, "config.json")) as f:
        config = json.load(f)
    present = [name for name in HF_WEIGHTS if os.path.exists(os.path.join(path, name))]
    if not present:
        raise CheckpointError(
            f"{str(path)!r} has a config.json but no weights; expected one of {list(HF_WEIGHTS)}."
        )
    name = present[0]
    if not name.endswith(".index.json"):
        return read_file(os.path.join(path, name))[0], config
    with open(os.path.join(path, name)) as f:
        shards = sorted(set(json.load(f)["weight_map"].values()))
    state = {}
    for shard in shards:
        state.update(read_file(os.path.join(path, shard))[0])
    return state, config


def read_state_dict(source):
    """Read a checkpoint into numpy, whatever its container.

    Args:
        source: a path to a `.pth` / `.pt` / `.bin` (torch) or `.safetensors` file, to a
            Hugging Face model directory (`config.json` plus `model.safetensors` or
            `pytorch_model.bin`, possibly sharded), or an in-memory dict (a state dict
            of numpy arrays / torch tensors, or `{"model": state_dict, ...}`).

    Returns:
        `(state_dict, info)`: dict key -> numpy array, and a dict with `"args"` (the
        official MAE `args` as a dict, or None), `"hf_config"` (the directory's
        config.json, or None) and `"name"` (the file or directory name).

    Examples:
        >>> import numpy as np
        >>> sd, info = read_state_dict({"model": {"cls_token": np.zeros((1, 1, 8), "float32")}})
        >>> sorted(sd), info["args"]
        (['cls_token'], None)
    """
    info = {"args": None, "hf_config": None, "name": ""}
    if isinstance(source, Mapping):
        state, info["args"] = unwrap_state_dict(source, "the given dict")
        return state, info
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(
            f"`source` must be a file or directory path or a state dict, got {type(source).__name__}."
        )
    path = os.fspath(source)
    info["name"] = os.path.basename(os.path.normpath(path))
    if os.path.isdir(path):
        if not os.path.exists(os.path.join(path, "config.json")):
            raise CheckpointError(
                f"{path!r} is a directory without config.json; pass a checkpoint file or a Hugging Face "
                "model directory (config.json + model.safetensors / pytorch_model.bin)."
            )
        state, info["hf_config"] = read_hf_directory(path)
    elif os.path.isfile(path):
        state, info["args"] = read_file(path)
    else:
        raise FileNotFoundError(f"No checkpoint file or directory at {path!r}.")
    return state, info
