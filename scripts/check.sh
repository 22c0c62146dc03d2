#!/usr/bin/env bash
# The whole check: lint, format, types, tests. Creates its own virtual environment.
# Usage: bash scripts/check.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
export HYPOTHESIS_PROFILE="${HYPOTHESIS_PROFILE:-ci}"  # property tests: the same examples every run (tests/conftest.py)
# The tests read the demo data (loaders, --quick smoke runs), run the ONNX cells of the
# compatibility suite (test: onnx, onnxscript, onnxruntime) and the check builds the docs:
# install the demo, test and docs extras too.
MASKNN_EXTRAS="${MASKNN_EXTRAS:-dev,demo,test,docs}"
. scripts/_venv.sh
# The data tests skip when a demo package is missing (a user's partial install); here the
# extra was asked for, so a missing package is an install failure, not a skip.
if [[ ",$MASKNN_EXTRAS," == *",demo,"* ]]; then
  "$PY" - <<'PY'
import importlib.util
import sys

missing = [m for m in ("matplotlib", "tqdm", "scipy", "sklearn", "mlxtend", "cartopy", "sktime")
           if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"check.sh: the demo extra did not install: {missing}")
PY
fi
# The ONNX cells skip when the exporter or runtime is missing (a user's partial install);
# here the extra was asked for, so a missing package is an install failure, not a skip.
if [[ ",$MASKNN_EXTRAS," == *",test,"* ]]; then
  "$PY" - <<'PY'
import importlib.util
import sys

missing = [m for m in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"check.sh: the test extra did not install: {missing}")
PY
fi
# The models extra (torchvision, timm, segmentation_models_pytorch: masknn.convert's tests
# run real model code). The model libraries go in with --no-deps so that pip never swaps
# the CPU torch for the CUDA build PyPI's torchvision pins; their other requirements are
# plain Python packages, installed normally. The tests import torchvision through a shim
# (tests/convert/_torchvision_shim.py).
if [[ "${MASKNN_MODELS:-1}" == "1" ]]; then
  echo "== installing masknn[models] (the model libraries with --no-deps)"
  TORCH_BEFORE="$("$PY" -c "import torch; print(torch.__version__)")"
  # The extra's requirements as written in pyproject.toml (no TOML parser needed).
  mapfile -t MODEL_REQS < <("$PY" - <<'PY'
import re

text = open("pyproject.toml").read()
block = re.search(r"^models = \[(.*?)^\]", text, re.S | re.M).group(1)
reqs = re.findall(r'"([^"]+)"', block)
no_deps = ("torchvision", "timm", "segmentation-models-pytorch")
print(" ".join(r for r in reqs if r.startswith(no_deps)))
print(" ".join(r for r in reqs if not r.startswith(no_deps)))
PY
)
  # shellcheck disable=SC2086
  "$PY" -m pip install -q --no-deps ${MODEL_REQS[0]}
  # shellcheck disable=SC2086
  "$PY" -m pip install -q ${MODEL_REQS[1]}
  "$PY" - "$TORCH_BEFORE" <<'PY'
import importlib.util
import sys

import torch

missing = [m for m in ("torchvision", "timm", "segmentation_models_pytorch", "huggingface_hub", "safetensors",
                       "yaml", "PIL") if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"check.sh: the models extra did not install: {missing}")
if torch.__version__ != sys.argv[1]:
    sys.exit(f"check.sh: installing the models extra changed torch from {sys.argv[1]} to {torch.__version__}")
PY
fi
echo "== ruff check";          "$PY" -m ruff check .
echo "== ruff format --check"; "$PY" -m ruff format --check .
echo "== mypy";                "$PY" -m mypy
echo "== docs (mkdocs build --strict)"
"$PY" -m mkdocs build --strict -q -d "$(mktemp -d)"
# One thread: the suite is many small tensors, where OpenMP start-up costs more than it
# saves (measured: 20 s with one thread vs 280 s with two on a loaded 2-core machine).
# Benchmarks (benchmarks/) choose their own thread count.
# Parallel: pytest-xdist (dev extra), one worker per core (MASKNN_TEST_WORKERS, default 2: CI's
# cores; 0 runs in this process); worksteal balances the few long torch.compile tests. Each
# worker compiles inductor kernels in its own process (TORCHINDUCTOR_COMPILE_THREADS=1): the
# workers already fill the cores, a pool of compile processes per worker would only add
# start-up time and memory. Extra arguments come last (`-n 0` there overrides).
XDIST=()
if "$PY" -c "import xdist" >/dev/null 2>&1; then
  XDIST=(-n "${MASKNN_TEST_WORKERS:-2}" --dist worksteal)
fi
echo "== pytest"
OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" TORCHINDUCTOR_COMPILE_THREADS="${TORCHINDUCTOR_COMPILE_THREADS:-1}" \
  "$PY" -m pytest ${XDIST[@]+"${XDIST[@]}"} "$@"
