#!/usr/bin/env bash
# The whole check: lint, format, types, tests. Creates its own virtual environment.
# Usage: bash scripts/check.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
# The tests read the demo data (loaders, --quick smoke runs): install the demo extra too.
MASKNN_EXTRAS="${MASKNN_EXTRAS:-dev,demo}"
. scripts/_venv.sh
echo "== ruff check";          "$PY" -m ruff check src tests benchmarks examples
echo "== ruff format --check"; "$PY" -m ruff format --check src tests benchmarks examples
echo "== mypy";                "$PY" -m mypy
echo "== pytest";              "$PY" -m pytest "$@"
