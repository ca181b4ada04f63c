#!/usr/bin/env bash
# Create (or reuse) .venv with keras_mim and all three backends, CPU builds only.
# torch is pinned to the CPU build first so nothing pulls the CUDA wheels.
# Installs go through uv (from the package registry) when it installs: the same versions as
# pip, five times faster (measured on a fresh clone: 119 s with pip, 24 s with uv, docs/ci.md);
# pip otherwise. uv does not read pip's configuration, so the indexes and find-links pip is
# configured with (pip.conf, PIP_* variables) are handed to it, and it picks the best version
# over all of them as pip does.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
pip_setting() {  # pip's configured value of $1 (e.g. find-links), from the environment or pip.conf
  local variable="PIP_$(echo "$1" | tr 'a-z-' 'A-Z_')"
  if [ -n "${!variable:-}" ]; then echo "${!variable}"; return; fi
  .venv/bin/python -m pip config get "global.$1" 2>/dev/null | tr '\n' ' ' || true
}
if [ "${KERAS_MIM_NO_UV:-}" != 1 ] && .venv/bin/python -m pip install -q uv 2>/dev/null; then
  UV_FIND_LINKS=$(pip_setting find-links | xargs | tr ' ' ',')
  UV_INDEX_URL=$(pip_setting index-url | xargs)
  UV_EXTRA_INDEX_URL=$(pip_setting extra-index-url | xargs)
  export UV_INDEX_STRATEGY=unsafe-best-match UV_PYTHON=.venv/bin/python
  for variable in UV_FIND_LINKS UV_INDEX_URL UV_EXTRA_INDEX_URL; do
    if [ -n "${!variable}" ]; then export "$variable"; else unset "$variable"; fi
  done
  install() { .venv/bin/uv pip install -q "$@" || .venv/bin/python -m pip install -q "$@"; }
else
  .venv/bin/python -m pip install -q --upgrade pip
  install() { .venv/bin/python -m pip install -q "$@"; }
fi
install "torch==2.13.0"
install -e ".[tensorflow,jax,dev]"
# The keras-hub tier (tools/test.sh): keras-hub beside the venv, not in it, so the backend passes
# test keras_mim without the optional extra. --no-deps: keras-hub's own requirements
# (tensorflow-text, a second TensorFlow pin) are not needed to build and convert backbones.
if [ ! -d .venv/keras-hub/keras_hub ]; then
  install --no-deps --target .venv/keras-hub "keras-hub==0.32.0" "kagglehub==1.0.3" "kagglesdk==0.1.38"
fi
# espeak-ng (a system package) synthesises the spoken digits of the audio demos and tests.
if ! command -v espeak-ng > /dev/null; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo -n"
  { $sudo apt-get install -y -q espeak-ng || { $sudo apt-get update -q && $sudo apt-get install -y -q espeak-ng; }; } \
    > /dev/null 2>&1 || echo "tools/setup_env.sh: could not install espeak-ng (apt-get install espeak-ng); the spoken-digit tests need it" >&2
fi
# versions from the installed metadata: importing the four packages costs 10-20 s on a fresh venv
.venv/bin/python -c "from importlib.metadata import version as v; print(*(f'{p} {v(p)}' for p in ('keras', 'torch', 'jax', 'tensorflow-cpu')), sep=' | ')"
case "$(.venv/bin/python -c 'from importlib.metadata import version; print(version("torch"))')" in
  *+cpu) ;;
  *) echo "tools/setup_env.sh: torch is not the CPU build" >&2; exit 1 ;;
esac
