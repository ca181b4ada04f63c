#!/usr/bin/env bash
# Create (or reuse) .venv with keras_mim and all three backends, CPU builds only.
# torch is pinned to the CPU build first so nothing pulls the CUDA wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[tensorflow,jax,dev]"
.venv/bin/python -c "import keras, torch, jax, tensorflow as tf; print('keras', keras.__version__, '| torch', torch.__version__, '| jax', jax.__version__, '| tensorflow', tf.__version__)"
