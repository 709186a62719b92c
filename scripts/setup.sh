#!/usr/bin/env bash
# Creates .venv (if missing) and installs jaxq with its test and demo extras.
# torch is pinned to 2.13.0 exactly: a CPU wheel of it is on the machines' disk.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# Quiet, but keep real errors visible; the registries' index warnings are noise.
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test,demo]" 2>&1 \
  | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import jaxq, jax, flax, optax, torch, torchao, pytest, hypothesis, sklearn" \
  || { echo "setup failed: jaxq or a dependency does not import" >&2; exit 1; }
