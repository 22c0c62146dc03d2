#!/usr/bin/env bash
# The main job. Creates its own virtual environment.
# Usage: bash scripts/demo.sh [arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_venv.sh
"$PY" examples/quickstart.py "$@"
