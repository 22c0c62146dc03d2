"""Reductions, softmax, losses, MaskedLinear and TimeDistributedLinear against their plain twins.

Every masked op runs in the same process as its plain PyTorch twin, interleaved
round-robin (the order alternates each repeat); a ratio is the median over repeats of
masked / plain time within the same repeat; "best" is the ratio of the fastest repeats
(the run least disturbed by other processes on a shared machine). "composable" is the same masked op forced
onto its composable path (``masknn.functional._select.composable_only()``: plain
``torch.where`` and differentiable ops, what compile/export/ONNX/torch.func see),
measured in eager mode. "train" is forward + backward w.r.t. the input (and the
parameters for the layers), "infer" is the forward under ``torch.no_grad()``.

Run: python benchmarks/bench_reduce.py [--repeats 15] [--threads 1] [--only sum,softmax,...] [--keep-memory]
[--cpu-time]

``--keep-memory`` (glibc only) asks malloc to keep freed memory (``mallopt``: no mmap for
large blocks, no trimming), as jemalloc or tcmalloc would: on this shared machine a fresh
multi-megabyte block costs page faults that vary by 10x from run to run and hit the
plain and masked ops unevenly; with it the figures measure the kernels.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

import masknn.functional as MF
from masknn import Masked
from masknn import nn as mnn
from masknn.functional._select import composable_only

Fn = Callable[[], object]


#: The clock: wall time, or with ``--cpu-time`` this thread's CPU time (user + system, page
#: faults included), which time slices taken by other processes on a loaded machine do not reach.
_CLOCK = [time.perf_counter]


def _timed(fn: Fn) -> float:
    start = _CLOCK[0]()
    fn()
    return _CLOCK[0]() - start


def compare(title: str, fns: dict[str, Fn], repeats: int) -> dict[str, float]:
    """Median time of each function and its median ratio to the first (the plain twin)."""
    names = list(fns)
    for _ in range(2):
        for n in names:
            fns[n]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for i in range(repeats):
        for n in names if i % 2 == 0 else names[::-1]:
            times[n].append(_timed(fns[n]))
    base = names[0]
    print(f"{title}")
    ratios = {}
    for n in names:
        r = statistics.median(a / b for a, b in zip(times[n], times[base]))
        best = min(times[n]) / min(times[base])
        ratios[n] = r
        print(
            f"  {n:28s} {statistics.median(times[n]) * 1e3:9.3f} ms   x{r:5.2f}"
            f"   (best {min(times[n]) * 1e3:8.3f} ms, x{best:5.2f})"
        )
    return ratios


def _composable(fn: Fn) -> Fn:
    def run() -> object:
        with composable_only():
            return fn()

    return run


def _infer(fn: Fn) -> Fn:
    def run() -> object:
        with torch.no_grad():
            return fn()

    return run


def _train(x: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor], params: list[torch.Tensor]) -> Fn:
    def run() -> object:
        x.grad = None
        for p in params:
            p.grad = None
        fn(x).sum().backward()
        return None

    return run


def _sum_mean_case(
    shape: tuple[int, ...],
    name: str,
    plain: Callable[[torch.Tensor], torch.Tensor],
    ours: Callable[..., Masked],
    theirs: Callable[..., torch.Tensor],
    repeats: int,
) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g)
    m = torch.rand(shape[0], 1, *shape[2:], generator=g) > 0.5
    me = m.expand(shape)
    xn = torch.where(m, x, torch.tensor(float("nan")))  # raw data with NaN holes: the fallback
    xg = x.clone().requires_grad_(True)

    def mine(a: torch.Tensor) -> torch.Tensor:
        return ours(a, m, (2, 3)).data

    def tm(a: torch.Tensor) -> torch.Tensor:
        return theirs(a, (2, 3), mask=me)

    compare(
        f"masked_{name} over (2, 3), {shape}, (N, 1, H, W) mask, 50 % valid: infer",
        {
            f"x.{name}((2, 3))": _infer(lambda: plain(x)),
            f"masked_{name}": _infer(lambda: mine(x)),
            f"torch.masked.{name}": _infer(lambda: tm(x)),
            "composable": _composable(_infer(lambda: mine(x))),
            "NaN at masked": _infer(lambda: mine(xn)),
        },
        repeats,
    )
    compare(
        f"masked_{name} over (2, 3), {shape}: train",
        {
            f"x.{name}((2, 3))": _train(xg, plain, []),
            f"masked_{name}": _train(xg, mine, []),
            f"torch.masked.{name}": _train(xg, tm, []),
            "composable": _composable(_train(xg, mine, [])),
        },
        repeats,
    )


def bench_sum_mean(repeats: int) -> None:
    for shape in ((16, 64, 64, 64), (8, 16, 32, 32)):
        _sum_mean_case(shape, "sum", lambda a: a.sum((2, 3)), MF.masked_sum, torch.masked.sum, repeats)
        _sum_mean_case(shape, "mean", lambda a: a.mean((2, 3)), MF.masked_mean, torch.masked.mean, repeats)


def bench_softmax(repeats: int) -> None:
    g = torch.Generator().manual_seed(0)
    shape = (16, 8, 128, 128)  # attention scores (N, heads, L, S), key padding mask (N, 1, 1, S)
    x = torch.randn(shape, generator=g)
    m = torch.rand(16, 1, 1, 128, generator=g) > 0.5
    m[0] = False  # a fully padded sample
    nm = ~m
    xg = x.clone().requires_grad_(True)
    for name, plain, ours in (
        ("softmax", lambda a: a.masked_fill(nm, float("-inf")).softmax(-1), MF.masked_softmax),
        ("log_softmax", lambda a: a.masked_fill(nm, float("-inf")).log_softmax(-1), MF.masked_log_softmax),
    ):

        def mine(a: torch.Tensor, ours: Callable[..., Masked] = ours) -> torch.Tensor:
            return ours(a, m, -1).data

        def plain_loss(a: torch.Tensor, plain: Callable[..., torch.Tensor] = plain) -> torch.Tensor:
            # the fully padded sample is NaN in the plain twin: keep it out of the loss
            return plain(a)[1:]

        compare(
            f"masked_{name}, {shape}, key mask (N, 1, 1, S): infer",
            {
                f"masked_fill(-inf).{name}": _infer(lambda plain=plain: plain(x)),
                f"masked_{name}": _infer(lambda mine=mine: mine(x)),
                "composable": _composable(_infer(lambda mine=mine: mine(x))),
            },
            repeats,
        )
        compare(
            f"masked_{name}, {shape}: train",
            {
                f"masked_fill(-inf).{name}": _train(xg, plain_loss, []),
                f"masked_{name}": _train(xg, mine, []),
                "composable": _composable(_train(xg, mine, [])),
            },
            repeats,
        )


def bench_losses(repeats: int) -> None:
    g = torch.Generator().manual_seed(0)
    shape = (16, 3, 256, 256)
    x = torch.randn(shape, generator=g)
    t = torch.randn(shape, generator=g)
    tb = (torch.rand(shape, generator=g) > 0.5).float()
    m = torch.rand(16, 1, 256, 256, generator=g) > 0.3
    xg = x.clone().requires_grad_(True)
    for name, plain, ours, target in (
        ("mse_loss", F.mse_loss, MF.masked_mse_loss, t),
        ("l1_loss", F.l1_loss, MF.masked_l1_loss, t),
        ("smooth_l1_loss", F.smooth_l1_loss, MF.masked_smooth_l1_loss, t),
        (
            "bce_with_logits",
            F.binary_cross_entropy_with_logits,
            MF.masked_binary_cross_entropy_with_logits,
            tb,
        ),
    ):

        def p(
            a: torch.Tensor, plain: Callable[..., torch.Tensor] = plain, target: torch.Tensor = target
        ) -> torch.Tensor:
            return plain(a, target)

        def mine(
            a: torch.Tensor, ours: Callable[..., torch.Tensor] = ours, target: torch.Tensor = target
        ) -> torch.Tensor:
            return ours(a, target, m)

        compare(
            f"masked_{name}, {shape}, (N, 1, H, W) mask, 70 % valid: infer",
            {
                f"F.{name}": _infer(lambda p=p: p(x)),
                f"masked_{name}": _infer(lambda mine=mine: mine(x)),
                "composable": _composable(_infer(lambda mine=mine: mine(x))),
            },
            repeats,
        )
        compare(
            f"masked_{name}, {shape}: train",
            {
                f"F.{name}": _train(xg, p, []),
                f"masked_{name}": _train(xg, mine, []),
                "composable": _composable(_train(xg, mine, [])),
            },
            repeats,
        )


def bench_linear(repeats: int) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4096, 512, generator=g)
    m = torch.rand(4096, 512, generator=g) > 0.3
    torch.manual_seed(0)
    plain = nn.Linear(512, 256)
    ours = mnn.MaskedLinear(512, 256)
    ours.load_state_dict(plain.state_dict())
    xg = x.clone().requires_grad_(True)
    params = [*plain.parameters(), *ours.parameters()]
    for mode in ("zero", "partial"):
        ours.mode = mode

        def mine(a: torch.Tensor) -> torch.Tensor:
            return ours(Masked(a, m)).data

        compare(
            f"MaskedLinear(mode={mode!r}) 512 -> 256, x (4096, 512), per-feature mask 70 % valid: infer",
            {
                "nn.Linear": _infer(lambda: plain(x)),
                "MaskedLinear": _infer(lambda: mine(x)),
                "composable": _composable(_infer(lambda: mine(x))),
            },
            repeats,
        )
        compare(
            f"MaskedLinear(mode={mode!r}): train",
            {
                "nn.Linear": _train(xg, plain, params),
                "MaskedLinear": _train(xg, mine, params),
                "composable": _composable(_train(xg, mine, params)),
            },
            repeats,
        )


def bench_time_distributed(repeats: int) -> None:
    g = torch.Generator().manual_seed(0)
    n, t, f = 64, 256, 256
    x = torch.randn(n, t, f, generator=g)
    lengths = torch.randint(1, t + 1, (n,), generator=g)
    lengths = (lengths.float() * (t / 2) / lengths.float().mean()).long().clamp(1, t)  # ~50 % padding
    m = (torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(-1)
    torch.manual_seed(0)
    plain = nn.Linear(f, f)
    ours = mnn.TimeDistributedLinear(f, f)
    ours.load_state_dict(plain.state_dict())
    xg = x.clone().requires_grad_(True)
    params = [*plain.parameters(), *ours.parameters()]
    padding = 1 - float(m.float().mean())

    def mine(a: torch.Tensor) -> torch.Tensor:
        return ours(Masked(a, m)).data

    compare(
        f"TimeDistributedLinear {f} -> {f}, ({n}, {t}), {padding:.0%} padding: infer",
        {
            "nn.Linear (padded)": _infer(lambda: plain(x)),
            "TimeDistributedLinear": _infer(lambda: mine(x)),
            "composable": _composable(_infer(lambda: mine(x))),
        },
        repeats,
    )
    compare(
        f"TimeDistributedLinear, {padding:.0%} padding: train",
        {
            "nn.Linear (padded)": _train(xg, plain, params),
            "TimeDistributedLinear": _train(xg, mine, params),
            "composable": _composable(_train(xg, mine, params)),
        },
        repeats,
    )


def bench_floor(repeats: int) -> None:
    """The passes a NaN-safe masked sum is made of, alone: what bounds ``masked_sum``."""
    from masknn.functional._select import mask_bits

    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 16, 64, 128, generator=g)
    m = torch.rand(8, 1, 64, 128, generator=g) > 0.5
    bits = mask_bits(m, x.dtype)
    xi = x.view(torch.int32)
    nm = ~m
    compare(
        "the floor: passes over 1M float32 with an (N, 1, H, W) mask",
        {
            "x.sum((2, 3))": lambda: x.sum((2, 3)),
            "copy": lambda: x.clone(),
            "bitwise select": lambda: torch.bitwise_and(xi, bits),
            "torch.where(m, x, 0)": lambda: torch.where(m, x, 0.0),
            "x.masked_fill(~m, 0)": lambda: x.masked_fill(nm, 0.0),
            "x * m (not NaN-safe)": lambda: x * m,
            "masked_sum": lambda: MF.masked_sum(x, m, (2, 3)),
        },
        repeats,
    )


BENCHES = {
    "floor": bench_floor,
    "sum": bench_sum_mean,
    "softmax": bench_softmax,
    "losses": bench_losses,
    "linear": bench_linear,
    "td": bench_time_distributed,
}


def keep_memory() -> bool:
    """glibc: large blocks from the heap (no mmap) and no trimming, so freed memory is reused."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    libc = ctypes.CDLL(name)
    m_trim_threshold, m_mmap_threshold = -1, -3
    ok = libc.mallopt(m_mmap_threshold, 1 << 30) == 1
    return ok and libc.mallopt(m_trim_threshold, 1 << 40) == 1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", default=",".join(BENCHES))
    parser.add_argument("--keep-memory", action="store_true")
    parser.add_argument("--cpu-time", action="store_true", help="time with this thread's CPU time")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.cpu_time:
        _CLOCK[0] = time.thread_time
    kept = keep_memory() if args.keep_memory else False
    clock = "thread CPU time" if args.cpu_time else "wall time"
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.repeats} repeats, keep memory: {kept}")
    print(f"clock: {clock}")
    for name in args.only.split(","):
        BENCHES[name](args.repeats)


if __name__ == "__main__":
    main()
