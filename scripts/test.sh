#!/usr/bin/env bash
# Sets up the environment and runs the whole test suite (slow end-to-end tests included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -n "${JAXQ_TEST_WORKERS:-2}" -q -p no:cacheprovider "$@"
