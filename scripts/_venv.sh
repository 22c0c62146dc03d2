# Sourced by the scripts: create (or reuse) the virtual environment and install masknn into it.
# torch first: on these machines `pip install torch==2.13.0` takes a CPU build from local disk.
VENV="${MASKNN_VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "== creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
"$PY" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  echo "== installing torch (CPU build)"
  "$PY" -m pip install -q torch==2.13.0 || {
    echo "torch==2.13.0 is not available here; installing torch>=2.3 from the package index" >&2
    "$PY" -m pip install -q "torch>=2.3"
  }
fi
echo "== installing masknn[${MASKNN_EXTRAS:-dev,docs}]"
"$PY" -m pip install -q -e ".[${MASKNN_EXTRAS:-dev,docs}]"
