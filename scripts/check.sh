#!/usr/bin/env bash
# The whole check: lint, format, types, tests. Creates its own virtual environment.
# Usage: bash scripts/check.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_venv.sh
echo "== ruff check";          "$PY" -m ruff check .
echo "== ruff format --check"; "$PY" -m ruff format --check .
echo "== mypy";                "$PY" -m mypy
echo "== docs (mkdocs build --strict)"
"$PY" -m mkdocs build --strict -q -d "$(mktemp -d)"
echo "== pytest";              "$PY" -m pytest "$@"
