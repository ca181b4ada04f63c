#!/usr/bin/env bash
# Set up .venv, then run the default demo: `keras-mim pretrain` (extra args are passed on).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup_env.sh
export TF_CPP_MIN_LOG_LEVEL=3
.venv/bin/keras-mim pretrain "$@"
