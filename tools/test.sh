#!/usr/bin/env bash
# Set up .venv, then run the test suite: the backend-independent tests once (marker
# `backend_independent`: source checks, argument parsing, registry, big presets), then
# every other test once per backend (TensorFlow, JAX, PyTorch). Prints the time of each
# pass and the 15 slowest tests of the run.
# Usage: bash tools/test.sh [extra pytest args]      BACKENDS="jax" bash tools/test.sh
#        PASSES="torch" bash tools/test.sh            (PASSES: any of once tensorflow jax torch)
# Tests run on PYTEST_WORKERS processes (pytest-xdist; default 2, one per core of the CI machine).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup_env.sh
export TF_CPP_MIN_LOG_LEVEL=3 PYTHONDONTWRITEBYTECODE=1
shared=$(mktemp -d)
trap 'rm -rf "$shared"' EXIT
export KERAS_MIM_TEST_SHARED="$shared"  # files several passes share (cross-backend .keras files)
status=0
summary=()
run_pass() {  # name backend marker-expression [pytest args]
  local name=$1 backend=$2 marker=$3
  shift 3
  echo "=== $name (KERAS_BACKEND=$backend, -m '$marker') ==="
  local start=$(date +%s) result=passed
  KERAS_BACKEND=$backend .venv/bin/python -m pytest -q -p no:cacheprovider -n "${PYTEST_WORKERS:-2}" \
    -m "$marker" --junitxml="$shared/$name.xml" "$@" || { result=FAILED; status=1; }
  summary+=("$name: $result in $(( $(date +%s) - start )) s")
}
for pass in ${PASSES:-once ${BACKENDS:-tensorflow jax torch}}; do
  if [ "$pass" = once ]; then
    run_pass once jax "backend_independent" "$@"
  else
    run_pass "$pass" "$pass" "not backend_independent" "$@"
  fi
done
printf '%s\n' "${summary[@]}"
.venv/bin/python tools/slowest_tests.py "$shared"/*.xml --top 15 || true
exit $status
