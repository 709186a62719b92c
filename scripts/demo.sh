#!/usr/bin/env bash
# Sets up the environment and runs the demos: the numerics quickstart, then QAT on
# scikit-learn's digits (prepare_qat -> optax training -> convert -> int8 inference).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python examples/quickstart.py
echo
exec .venv/bin/python examples/qat_digits.py "$@"
