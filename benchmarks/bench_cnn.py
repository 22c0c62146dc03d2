"""Benchmark of the masknn CNN layers against the plain PyTorch layer, measured in the same run.

Forward + backward (input and parameter gradients, a fixed random cotangent), N=16,
64 -> 64 channels, 3x3 kernels, 64x64 images, 50 % of the pixels masked. Plain and
masked repeats are interleaved (alternating which goes first) so that load from
other processes hits both alike; the ratio is the median over repeats of
masked / plain time within the same repeat, next to the ratio of the medians.

Peak memory (``--memory``): each (case, layer) runs once in a fresh subprocess, after
a small warm-up that loads the kernels; the peak is the high-water mark of the
resident set (``VmHWM``, reset through ``/proc/self/clear_refs`` just before the
step) minus the resident set just before the measured forward+backward (so it counts everything
allocated by the
step: outputs, saved tensors, gradients, temporaries; the inputs and weights are
resident before and not counted). glibc's dynamic mmap threshold is pinned
(``MALLOC_MMAP_THRESHOLD_``) so freed tensors leave the resident set at once.

Run: python benchmarks/bench_cnn.py [--repeats 21] [--threads 1] [--memory]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from masknn import Masked
from masknn import nn as mnn

N, C, H = 16, 64, 64
CASES = ("conv_shared", "conv_per_channel", "batchnorm2d", "maxpool2d", "avgpool2d")


def _layers(case: str) -> tuple[nn.Module, nn.Module, bool]:
    """(plain layer, masked layer, per-channel mask)."""
    if case.startswith("conv"):
        plain: nn.Module = nn.Conv2d(C, C, 3, padding=1)
        masked: nn.Module = mnn.PartialConv2d(C, C, 3, padding=1)
        masked.load_state_dict(plain.state_dict())
        return plain, masked, case == "conv_per_channel"
    if case == "batchnorm2d":
        return nn.BatchNorm2d(C), mnn.MaskedBatchNorm2d(C), False
    if case == "maxpool2d":
        return nn.MaxPool2d(2), mnn.MaskedMaxPool2d(2), False
    if case == "avgpool2d":
        return nn.AvgPool2d(2), mnn.MaskedAvgPool2d(2), False
    raise ValueError(case)


def _setup(case: str, size: int = H, n: int = N) -> dict[str, Callable[[], None]]:
    torch.manual_seed(0)
    plain, masked, per_channel = _layers(case)
    x = torch.randn(n, C, size, size, requires_grad=True)
    mask = torch.rand(n, C if per_channel else 1, size, size) > 0.5
    with torch.no_grad():
        g_plain = torch.randn_like(plain(x))
        g_masked = torch.randn_like(masked(Masked(x, mask)).data)

    def run_plain() -> None:
        out = plain(x)
        out.backward(g_plain)
        x.grad = None

    def run_masked() -> None:
        out = masked(Masked(x, mask))
        out.data.backward(g_masked)
        x.grad = None

    return {"plain": run_plain, "masked": run_masked}


def time_case(case: str, repeats: int) -> dict[str, Any]:
    fns = _setup(case)
    for fn in fns.values():  # warm-up
        fn()
        fn()
    times: dict[str, list[float]] = {"plain": [], "masked": []}
    for r in range(repeats):
        order = ["plain", "masked"] if r % 2 == 0 else ["masked", "plain"]
        for name in order:
            t0 = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    paired = statistics.median(m / p for m, p in zip(times["masked"], times["plain"]))
    return {
        "case": case,
        "plain_ms": 1e3 * med["plain"],
        "masked_ms": 1e3 * med["masked"],
        "ratio_of_medians": med["masked"] / med["plain"],
        "median_paired_ratio": paired,
    }


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _hwm_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def memory_child(case: str, variant: str) -> None:
    small = _setup(case, size=8, n=2)[variant]
    small()  # load kernels, thread pools
    fn = _setup(case)[variant]
    before = _rss_bytes()
    with open("/proc/self/clear_refs", "w") as f:  # reset the resident-set high-water mark (Linux >= 4.0)
        f.write("5")
    fn()
    peak = _hwm_bytes()
    print(json.dumps({"peak_extra_mb": (peak - before) / 2**20, "resident_before_mb": before / 2**20}))


def memory_case(case: str, threads: int) -> dict[str, float]:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", OMP_NUM_THREADS=str(threads))
    out: dict[str, float] = {}
    for variant in ("plain", "masked"):
        res = subprocess.run(
            [sys.executable, __file__, "--memory-child", case, variant],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        out[variant] = json.loads(res.stdout.strip().splitlines()[-1])["peak_extra_mb"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: cores are shared)")
    parser.add_argument("--cases", nargs="*", default=list(CASES))
    parser.add_argument("--memory", action="store_true", help="also measure peak memory in subprocesses")
    parser.add_argument("--memory-child", nargs=2, metavar=("CASE", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_child:
        memory_child(*args.memory_child)
        return
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, load average {os.getloadavg()}")
    print(f"N={N}, {C}->{C} channels, 3x3, {H}x{H}, 50 % masked, forward+backward, {args.repeats} repeats")
    header = f"{'case':<18}{'plain ms':>10}{'masked ms':>11}{'ratio':>8}{'paired':>8}"
    if args.memory:
        header += f"{'plain MB':>10}{'masked MB':>11}{'mem ratio':>10}"
    print(header)
    for case in args.cases:
        r = time_case(case, args.repeats)
        line = (
            f"{case:<18}{r['plain_ms']:>10.2f}{r['masked_ms']:>11.2f}"
            f"{r['ratio_of_medians']:>8.3f}{r['median_paired_ratio']:>8.3f}"
        )
        if args.memory:
            mem = memory_case(case, args.threads)
            line += f"{mem['plain']:>10.1f}{mem['masked']:>11.1f}{mem['masked'] / mem['plain']:>10.3f}"
        print(line, flush=True)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
