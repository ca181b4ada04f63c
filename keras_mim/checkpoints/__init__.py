"""Checkpoint interop: published MAE / timm / Hugging Face ViT weights in and out of
keras_mim, on every backend, with numpy only (no torch, no network)."""

from keras_mim.checkpoints.common import CheckpointError
from keras_mim.checkpoints.config import infer_config
from keras_mim.checkpoints.export import export_hf_config, export_state_dict, save_hf_pretrained
from keras_mim.checkpoints.layouts import to_official
from keras_mim.checkpoints.load import load_mae_checkpoint
from keras_mim.checkpoints.safetensors_file import load_safetensors, save_safetensors
from keras_mim.checkpoints.sources import read_state_dict
from keras_mim.checkpoints.torch_file import Namespace, load_torch_file

__all__ = [
    "CheckpointError",
    "Namespace",
    "export_hf_config",
    "export_state_dict",
    "infer_config",
    "load_mae_checkpoint",
    "load_safetensors",
    "load_torch_file",
    "read_state_dict",
    "save_hf_pretrained",
    "save_safetensors",
    "to_official",
]
