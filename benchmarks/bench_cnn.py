"""Benchmark of the masknn CNN layers against the plain PyTorch layer, measured in the same run.

Default setting: N=16, 64 -> 64 channels, 3x3 kernels, 64x64 images, 50 % of the pixels
masked. Every case times several variants of one step: "plain" (the torch layer with the
same weights) is the baseline, "masked" the masknn layer; partial-convolution cases add
torch-pconv (DesignStripe's PConv2d, when installed: ``pip install torch-pconv --no-deps``),
masknn's composable path forced in eager mode (``composable_only()``: what torch.compile,
export and torch.func see), and with ``--compile`` the torch.compile'd masked and plain
layers. Variants run interleaved (a new seeded random order every repeat) so that load from other
processes hits all alike; the table gives each variant's median time, the ratio of its
median to the plain median, and the median over repeats of the per-repeat ratio
("paired"); for the small layer also the microseconds above plain (the per-call overhead).

Cases: ``conv_shared`` / ``conv_per_channel`` (training step: forward + backward with input,
weight and bias gradients, a fixed random cotangent), ``conv_shared_infer`` (forward under
``torch.no_grad()``), ``conv_small`` (N=2, 16 -> 16, 32x32, training step), and the other
CNN layers (``batchnorm2d``, ``maxpool2d``, ``avgpool2d``, training step).

Peak memory (``--memory``): each (case, layer) runs once in a fresh subprocess, after
a small warm-up that loads the kernels; the peak is the high-water mark of the
resident set (``VmHWM``, reset through ``/proc/self/clear_refs`` just before the
step) minus the resident set just before the measured step (so it counts everything
allocated by the step: outputs, saved tensors, gradients, temporaries; the inputs and
weights are resident before and not counted). glibc's dynamic mmap threshold is pinned
(``MALLOC_MMAP_THRESHOLD_``) so freed tensors leave the resident set at once.

Run: python benchmarks/bench_cnn.py [--repeats 21] [--threads 1] [--memory] [--compile]
     [--cases conv_shared conv_small ...] [--device cuda] [--timer cpu]

``--timer cpu`` times each step by the thread's CPU time instead of the wall clock: with one
thread, all the work runs in the calling thread, so time the process spends waiting for a
core taken by another process is not counted (for loaded machines).
"""

from __future__ import annotations

import argparse
import json
import os
import random
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
from masknn.functional._select import composable_only

N, C, H = 16, 64, 64
CONV_CASES = ("conv_shared", "conv_shared_infer", "conv_per_channel", "conv_small")
CASES = (*CONV_CASES, "batchnorm2d", "maxpool2d", "avgpool2d")

try:  # the peer implementation, for comparison only (not a masknn dependency)
    import torch_pconv
except Exception:  # pragma: no cover - optional
    torch_pconv = None


def _layers(case: str) -> tuple[nn.Module, nn.Module, bool]:
    """(plain layer, masked layer, per-channel mask)."""
    if case.startswith("conv"):
        c = 16 if case == "conv_small" else C
        plain: nn.Module = nn.Conv2d(c, c, 3, padding=1)
        masked: nn.Module = mnn.PartialConv2d(c, c, 3, padding=1)
        masked.load_state_dict(plain.state_dict())
        return plain, masked, case == "conv_per_channel"
    if case == "batchnorm2d":
        return nn.BatchNorm2d(C), mnn.MaskedBatchNorm2d(C), False
    if case == "maxpool2d":
        return nn.MaxPool2d(2), mnn.MaskedMaxPool2d(2), False
    if case == "avgpool2d":
        return nn.AvgPool2d(2), mnn.MaskedAvgPool2d(2), False
    raise ValueError(case)


def _size(case: str) -> tuple[int, int, int]:
    """(batch, channels, image size)."""
    return (2, 16, 32) if case == "conv_small" else (N, C, H)


def _setup(
    case: str,
    size: int | None = None,
    n: int | None = None,
    compile_: bool = False,
    device: str = "cpu",
) -> dict[str, Any]:
    """The variants of one case: name -> a callable running one step."""
    torch.manual_seed(0)
    n0, c, s0 = _size(case)
    n, size = n or n0, size or s0
    plain, masked, per_channel = _layers(case)
    plain, masked = plain.to(device), masked.to(device)
    infer = case.endswith("_infer")
    x = torch.randn(n, c, size, size, device=device, requires_grad=not infer)
    mask = torch.rand(n, c if per_channel else 1, size, size, device=device) > 0.5
    with torch.no_grad():
        g_plain = torch.randn_like(plain(x))
        g_masked = torch.randn_like(masked(Masked(x, mask)).data)

    def step(fn: Callable[[], torch.Tensor], g: torch.Tensor) -> Callable[[], None]:
        if infer:

            def run_infer() -> None:
                with torch.no_grad():
                    fn()

            return run_infer

        def run() -> None:
            fn().backward(g)
            x.grad = None

        return run

    def masked_fn(layer: nn.Module) -> Callable[[], torch.Tensor]:
        return lambda: layer(Masked(x, mask)).data

    out: dict[str, Any] = {
        "plain": step(lambda: plain(x), g_plain),
        "masked": step(masked_fn(masked), g_masked),
    }
    if not case.startswith("conv"):
        return out

    def composable() -> torch.Tensor:
        with composable_only():
            return masked(Masked(x, mask)).data

    out["masknn composable"] = step(composable, g_masked)
    if torch_pconv is not None and not per_channel:
        peer = torch_pconv.PConv2d(c, c, 3, padding=1, bias=True).to(device)
        with torch.no_grad():
            peer.regular_conv.weight.copy_(plain.weight)
            peer.bias.copy_(plain.bias.view(1, -1, 1, 1))
        mask_f = mask[:, 0].float()
        out["torch-pconv"] = step(lambda: peer(x, mask_f)[0], g_masked)
    if compile_:
        c_plain = torch.compile(plain)
        c_masked = torch.compile(masked)
        out["plain compiled"] = step(lambda: c_plain(x), g_plain)
        out["masked compiled"] = step(masked_fn(c_masked), g_masked)
    return out


def time_case(
    case: str, repeats: int, compile_: bool = False, device: str = "cpu", timer: str = "wall"
) -> list[dict[str, Any]]:
    fns = _setup(case, compile_=compile_, device=device)
    clock = time.thread_time if timer == "cpu" else time.perf_counter
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for fn in fns.values():  # warm-up (and compilation)
        for _ in range(3):
            fn()
    names = list(fns)
    times: dict[str, list[float]] = {k: [] for k in names}
    order = random.Random(0)
    for _ in range(repeats):
        # A new order every repeat: each variant follows every other one in turn (a rotation
        # keeps each variant's predecessor, and the memory state it leaves, fixed).
        order.shuffle(names)
        for name in names:
            sync()
            t0 = clock()
            fns[name]()
            sync()
            times[name].append(clock() - t0)
    base = statistics.median(times["plain"])
    rows = []
    for name in fns:  # in the variants' own order (``names`` was shuffled)
        med = statistics.median(times[name])
        rows.append(
            {
                "case": case,
                "variant": name,
                "ms": 1e3 * med,
                "ratio": med / base,
                "paired": statistics.median(a / b for a, b in zip(times[name], times["plain"])),
                "us_above_plain": 1e6 * (med - base),
            }
        )
    return rows


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
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd conv layers")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda; --memory is CPU only")
    parser.add_argument(
        "--timer",
        choices=("wall", "cpu"),
        default="wall",
        help="wall clock (default), or the thread's CPU time (one thread on the CPU: robust to other "
        "processes taking the cores)",
    )
    parser.add_argument("--memory-child", nargs=2, metavar=("CASE", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_child:
        memory_child(*args.memory_child)
        return
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, load average {os.getloadavg()}")
    if args.device != "cpu":
        print(f"device: {torch.cuda.get_device_name() if args.device.startswith('cuda') else args.device}")
    print(f"torch-pconv: {'installed' if torch_pconv is not None else 'not installed'}")
    print(
        f"{args.repeats} repeats, variants interleaved in a new random order each, {args.timer} time; "
        "ratio = median / plain median"
    )
    print(f"{'case':<18}{'variant':<19}{'ms':>9}{'ratio':>8}{'paired':>8}{'us>plain':>10}")
    for case in args.cases:
        compile_ = args.compile and case.startswith("conv")
        rows = time_case(case, args.repeats, compile_=compile_, device=args.device, timer=args.timer)
        for r in rows:
            print(
                f"{case:<18}{r['variant']:<19}{r['ms']:>9.3f}{r['ratio']:>8.3f}{r['paired']:>8.3f}"
                f"{r['us_above_plain']:>10.0f}",
                flush=True,
            )
        if args.memory and args.device == "cpu":
            mem = memory_case(case, args.threads)
            print(
                f"{case:<18}{'peak memory MiB':<19} plain {mem['plain']:.1f}, masked {mem['masked']:.1f}, "
                f"ratio {mem['masked'] / mem['plain']:.3f}",
                flush=True,
            )
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
