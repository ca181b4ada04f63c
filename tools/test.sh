#!/usr/bin/env bash
# Set up .venv, then run the test suite once per backend (TensorFlow, JAX, PyTorch). Tests
# marked `backend_independent` (source checks, argument parsing, notebooks) or `one_backend`
# (end-to-end runs whose per-backend parts are tested on every backend) run in one of the
# passes only: the one their marker pins (`backend=...`), else one chosen by a stable hash
# of the test id (tests/conftest.py, `one_pass_backend`). Prints each pass's time and the
# 15 slowest tests of the run; then the keras-hub tier (tests/keras_hub, keras-hub importable)
# on each backend. See docs/ci.md.
# Usage: bash tools/test.sh [extra pytest args]      BACKENDS="jax" bash tools/test.sh
# (with one backend, that pass runs every test). Tests run on PYTEST_WORKERS processes
# (pytest-xdist; default 2, one per core of the CI machine).
# KERAS_MIM_TEST_REPORTS=DIR keeps each pass's JUnit report (DIR/<backend>.xml).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup_env.sh
export TF_CPP_MIN_LOG_LEVEL=3 PYTHONDONTWRITEBYTECODE=1
# XLA (JAX, TensorFlow's jit_compile) compiles with less LLVM optimisation: the tests' tiny
# models spend most of their time compiling (measured: the method suite's fit tests on
# TensorFlow 27% faster); the programs compute the same, only less optimised.
export XLA_FLAGS="${XLA_FLAGS:-} --xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
# One OpenMP thread per pytest worker (cores / workers): PyTorch's eager ops run OpenMP
# regions whose threads spin-wait, so two workers of two threads each on two cores stall
# one another (measured: the MAE and method-suite modules on torch, 114 s -> 46 s; the nano
# step beside a one-core busy loop 63 -> 142 ms median at 2 threads, 75 ms at 1; TensorFlow
# and JAX unchanged). docs/ci.md.
workers="${PYTEST_WORKERS:-2}"
threads=$(( $(nproc) / workers ))
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(( threads > 0 ? threads : 1 ))}"
shared=$(mktemp -d)
trap 'rm -rf "$shared"' EXIT
export KERAS_MIM_TEST_SHARED="$shared"  # files several passes share (cross-backend .keras files)
export KERAS_MIM_TEST_PASSES="${BACKENDS:-tensorflow jax torch}"
status=0
summary=()
for backend in $KERAS_MIM_TEST_PASSES; do
  echo "=== $backend (KERAS_BACKEND=$backend) ==="
  start=$(date +%s)
  result=passed
  KERAS_BACKEND=$backend .venv/bin/python -m pytest -q -p no:cacheprovider -n "$workers" --dist worksteal \
    --junitxml="$shared/$backend.xml" --ignore=tests/keras_hub "$@" || { result=FAILED; status=1; }
  summary+=("$backend: $result in $(( $(date +%s) - start )) s")
done
# The keras-hub tier: tests/keras_hub with keras-hub importable (installed beside the venv by
# tools/setup_env.sh), once per backend, one process each (a dozen small tests). Runs with the
# whole suite (no extra pytest arguments) or when KERAS_HUB_TIER=1.
if [ $# -eq 0 ] || [ "${KERAS_HUB_TIER:-}" = 1 ]; then
  for backend in $KERAS_MIM_TEST_PASSES; do
    echo "=== keras-hub tier, $backend ==="
    start=$(date +%s)
    result=passed
    PYTHONPATH=.venv/keras-hub KERAS_BACKEND=$backend .venv/bin/python -m pytest -q -p no:cacheprovider \
      --junitxml="$shared/keras_hub_$backend.xml" tests/keras_hub || { result=FAILED; status=1; }
    summary+=("keras-hub tier, $backend: $result in $(( $(date +%s) - start )) s")
  done
fi
printf '%s\n' "${summary[@]}"
.venv/bin/python tools/slowest_tests.py "$shared"/*.xml --top 15 || true
if [ -n "${KERAS_MIM_TEST_REPORTS:-}" ]; then  # keep the JUnit reports (per-test times) for tools/slowest_tests.py
  mkdir -p "$KERAS_MIM_TEST_REPORTS" && cp "$shared"/*.xml "$KERAS_MIM_TEST_REPORTS"/
fi
exit $status
