#!/usr/bin/env bash
# The main job: installs masknn[demo] into .venv and runs `masknn demo` (task classify by default,
# <= 3 minutes on 2 CPU cores). Figures (PNG) and tables go to ./masknn-demo/.
# Usage: bash scripts/demo.sh [TASK] [--quick | --full] [--out DIR]
#   TASK: classify (default), gapfill, sequences, all
set -euo pipefail
cd "$(dirname "$0")/.."
MASKNN_EXTRAS="${MASKNN_EXTRAS:-demo}"
. scripts/_venv.sh
"$PY" -m masknn demo "$@"
