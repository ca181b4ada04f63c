#!/usr/bin/env bash
# Set up .venv, then run the default demo: `keras-mim pretrain` (extra args are passed on).
# It trains on PyTorch unless KERAS_BACKEND, --backend or --resume says otherwise: on a CPU
# the demo's small model needs no compilation there, which made it the fastest backend for
# the demo (benchmarks/results/demo_speed_cpu.json, docs/speed.md "The demo").
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup_env.sh
export TF_CPP_MIN_LOG_LEVEL=3
backend=()
if [ -z "${KERAS_BACKEND:-}" ] && [[ " $* " != *" --backend"* ]] && [[ " $* " != *" --resume"* ]]; then
  backend=(--backend torch)
fi
.venv/bin/keras-mim pretrain "${backend[@]}" "$@"
