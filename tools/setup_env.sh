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
# The keras-hub tier (tools/test.sh): keras-hub beside the venv, not in it, so the backend passes
# test keras_mim without the optional extra. --no-deps: keras-hub's own requirements
# (tensorflow-text, a second TensorFlow pin) are not needed to build and convert backbones.
if [ ! -d .venv/keras-hub/keras_hub ]; then
  .venv/bin/python -m pip install -q --no-deps --target .venv/keras-hub \
    "keras-hub==0.32.0" "kagglehub==1.0.3" "kagglesdk==0.1.38"
fi
.venv/bin/python -c "import keras, torch, jax, tensorflow as tf; print('keras', keras.__version__, '| torch', torch.__version__, '| jax', jax.__version__, '| tensorflow', tf.__version__)"
