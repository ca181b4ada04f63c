#!/usr/bin/env bash
# The GPU measurement of benchmarks/train_speed.py in one go: MAE ViT-B/16 and ViT-L/16 at
# 224 px, batch 256, bf16 (autocast for HF, mixed_bfloat16 for Keras), keras_mim on JAX, torch
# eager and torch.compile beside HF ViTMAEForPreTraining eager and compiled, one runner on the
# card at a time. Run from the repository root on a machine with one NVIDIA GPU and the
# frameworks installed; wheels in .whl/ (e.g. keras, namex, optree where the machine lacks
# them; WHEELS=DIR elsewhere) are installed into /tmp/site first. TensorFlow runs where it is installed (the
# `tensorflow` group is added when it imports). Output: OUT (default benchmarks/results)/
# NAME (default train_speed_gpu).json and its log.
#
#     OUT=/tmp/out bash benchmarks/train_speed_gpu.sh            # STEPS=10 ROUNDS=2 by default
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-benchmarks/results}
mkdir -p "$out"
wheels=${WHEELS:-.whl}
if compgen -G "$wheels/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$wheels"/*.whl
  export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
backends=${BACKENDS:-hf,hf-compile,keras-torch,keras-torch-compile,jax}
if python3 -c "import tensorflow" 2> /dev/null; then backends="$backends,tensorflow"; fi
python3 benchmarks/train_speed.py --configs "${CONFIGS:-base,large}" --backends "$backends" \
  --batch-size 256 --precision mixed_bfloat16 --steps "${STEPS:-10}" --rounds "${ROUNDS:-2}" --warmup-steps 3 \
  --mask-zero "${MASK_ZERO:-none}" --compile-configs "${CONFIGS:-base,large}" --interleave off \
  --matmul-size "${MATMUL:-8192}" --no-pipeline --timeout "${TIMEOUT:-240}" --json "$out/${NAME:-train_speed_gpu}.json" 2>&1 | tee "$out/${NAME:-train_speed_gpu}.log"
