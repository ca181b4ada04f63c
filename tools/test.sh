#!/usr/bin/env bash
# Set up .venv, then run the whole test suite once per backend (TensorFlow, JAX, PyTorch).
# Usage: bash tools/test.sh [extra pytest args]      BACKENDS="jax" bash tools/test.sh
# Tests run on PYTEST_WORKERS processes (pytest-xdist; default 2, one per core of the CI machine).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup_env.sh
export TF_CPP_MIN_LOG_LEVEL=3 PYTHONDONTWRITEBYTECODE=1
status=0
summary=()
for backend in ${BACKENDS:-tensorflow jax torch}; do
  echo "=== KERAS_BACKEND=$backend ==="
  start=$(date +%s)
  if KERAS_BACKEND=$backend .venv/bin/python -m pytest -q -p no:cacheprovider -n "${PYTEST_WORKERS:-2}" "$@"; then
    result=passed
  else
    result=FAILED; status=1
  fi
  summary+=("$backend: $result in $(( $(date +%s) - start )) s")
done
printf '%s\n' "${summary[@]}"
exit $status
