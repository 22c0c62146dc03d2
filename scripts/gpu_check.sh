#!/usr/bin/env bash
# The CUDA check, run on a GPU machine (never in CI, which has no GPU): the CUDA tests and
# the CUDA benchmark, with their output under $OUT. Needs a python3 with a CUDA build of
# torch, pytest and hypothesis (masknn is taken from src/, not installed).
# Usage: OUT=gpu-results bash scripts/gpu_check.sh   (SKIP_BENCH=1: the tests only)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu-results}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python3 -c "import sys, torch; print(sys.version.split()[0], torch.__version__, torch.version.cuda,
torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA device')" | tee "$OUT/env.txt"
# Every test with CUDA in its name or module: the contract table on CUDA, CUDA equal to the
# CPU, autocast float16 and compile on CUDA, the CUDA paths of partial convolution, the
# recurrent layers, the synchronized batch norm and converted models synchronized across ranks.
timeout "${TEST_TIMEOUT:-330}" python3 -m pytest -q -p no:cacheprovider -o addopts="" -rs \
  tests/test_cuda.py tests/functional/test_recurrent_cuda.py tests/functional/test_conv.py \
  tests/nn/test_sync_batchnorm.py tests/convert/test_sync_batchnorm.py -k "cuda" 2>&1 | tee "$OUT/cuda_tests.log"
# Whether the masked CNN compiles under this machine's torch (which may not be CI's), CPU and
# CUDA, with the traceback of any failure.
timeout "${PROBE_TIMEOUT:-120}" python3 scripts/compile_probe.py 2>&1 | tee "$OUT/compile_probe.log"
[ "${SKIP_BENCH:-0}" = 1 ] && exit 0
timeout "${BENCH_TIMEOUT:-180}" python3 benchmarks/bench_cuda.py --repeats 20 --out "$OUT/bench_cuda.md" 2>&1 \
  | tee "$OUT/bench.log"
