"""Carrier benchmark: what the Masked operators and the carrier cost next to plain PyTorch.

Cases (float32, one thread by default, 50 % of positions masked, channel-shared masks):

* ``Masked(data, mask)`` construction (validation) vs a plain ``(data, mask)`` tuple, per call;
* residual ``a + b`` on two ``Masked`` vs ``a.data + b.data`` (the plain twin) and vs calling
  ``masknn.functional.masked_add`` directly (the operator's own overhead);
* a squeeze-and-excitation gate ``x * gate`` (gate ``(N, C, 1, 1)``) and a bias
  ``x + bias`` (``(1, C, 1, 1)``) vs the same on ``x.data``, forward and forward + backward;
* the leakage checker over the contract table with and without the NaN/Inf cotangent check
  (``--contract``; needs the repository root on ``sys.path``).

Plain and masked repeats are interleaved (alternating which goes first); the ratio is the
median over repeats of masked / plain time within the same repeat.

Run: python benchmarks/bench_carrier.py [--repeats 21] [--threads 1] [--contract]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

import masknn.functional as MF
from masknn import Masked


def _time(fn: Callable[[], object], inner: int) -> float:
    start = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - start) / inner


def _compare(
    name: str, plain: Callable[[], object], masked: Callable[[], object], repeats: int, inner: int = 1
) -> None:
    for _ in range(2):
        plain()
        masked()
    tp: list[float] = []
    tm: list[float] = []
    for i in range(repeats):
        if i % 2:
            tp.append(_time(plain, inner))
            tm.append(_time(masked, inner))
        else:
            tm.append(_time(masked, inner))
            tp.append(_time(plain, inner))
    ratio = statistics.median(m / p for m, p in zip(tm, tp))
    unit, scale = ("us", 1e6) if statistics.median(tp) < 1e-3 else ("ms", 1e3)
    print(
        f"{name:44s} plain {statistics.median(tp) * scale:8.2f} {unit}   masked "
        f"{statistics.median(tm) * scale:8.2f} {unit}   ratio {ratio:5.2f}"
    )


def _backward(fn: Callable[[], Masked | torch.Tensor]) -> Callable[[], None]:
    def run() -> None:
        out = fn()
        (out.data if isinstance(out, Masked) else out).sum().backward()

    return run


def _contract(repeats: int) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.module_db import Adapter, all_entries

    from masknn.testing import assert_no_leakage

    entries = all_entries()

    def run(cotangents: bool) -> None:
        for info in entries:
            torch.manual_seed(0)
            module = info.make()
            inputs = info.inputs()
            if info.call is not None:
                module = Adapter(module, info.call)
            try:
                assert_no_leakage(module, *inputs, check_cotangents=cotangents, **info.options)
            except AssertionError:
                pass  # rows that fail stop early in both settings; the timing is what matters here

    _compare(
        f"contract table ({len(entries)} rows), cotangent check",
        lambda: run(False),
        lambda: run(True),
        repeats,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--contract", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    r = args.repeats

    d, m = torch.randn(2, 3, 4, 4), torch.rand(2, 1, 4, 4) > 0.5
    _compare("Masked(data, mask) vs (data, mask)", lambda: (d, m), lambda: Masked(d, m), r, inner=2000)

    shape, mshape = (16, 64, 32, 32), (16, 1, 32, 32)
    a = Masked(torch.randn(shape), torch.rand(mshape) > 0.5)
    b = Masked(torch.randn(shape), torch.rand(mshape) > 0.5)
    _compare("a + b vs a.data + b.data", lambda: a.data + b.data, lambda: a + b, r)
    _compare(
        "a + b vs masked_add(...) (operator overhead)",
        lambda: MF.masked_add(a.data, a.mask, b.data, b.mask),
        lambda: a + b,
        r,
    )

    gate = torch.rand(16, 64, 1, 1)
    bias = torch.randn(1, 64, 1, 1)
    _compare("x * gate vs x.data * gate", lambda: a.data * gate, lambda: a * gate, r)
    _compare("x + bias vs x.data + bias", lambda: a.data + bias, lambda: a + bias, r)

    xg = torch.randn(shape, requires_grad=True)
    gg = torch.rand(16, 64, 1, 1, requires_grad=True)
    bg = torch.randn(1, 64, 1, 1, requires_grad=True)
    xm = Masked(xg, a.mask)
    _compare(
        "fwd+bwd x * gate + bias vs plain",
        _backward(lambda: xg * gg + bg),
        _backward(lambda: xm * gg + bg),
        r,
    )
    yg = torch.randn(shape, requires_grad=True)
    ym = Masked(yg, b.mask)
    _compare("fwd+bwd a + b vs plain", _backward(lambda: xg + yg), _backward(lambda: xm + ym), r)

    if args.contract:
        _contract(max(3, r // 7))


if __name__ == "__main__":
    main()
