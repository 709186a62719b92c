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
set +e
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test,demo]" 2>&1 \
  | grep -v "^WARNING: Location"
pip_status=${PIPESTATUS[0]}
set -e
if [ "$pip_status" -ne 0 ]; then
  echo "setup failed: pip install exited with $pip_status" >&2
  exit "$pip_status"
fi
# torchao prints loader noise on import; show it only if the import fails.
if ! check_output=$(.venv/bin/python -c "import jaxq, jax, flax, optax, torch, torchao, pytest, hypothesis, sklearn" 2>&1); then
  echo "$check_output" >&2
  echo "setup failed: jaxq or a dependency does not import" >&2
  exit 1
fi
