"""Review benchmark: foundation reductions/losses and masked batch norm against plain PyTorch.

Cases (float32, 50 % of positions masked at random with a channel-shared mask):

* ``masked_mean`` over (H, W) of ``(8, 16, 64, 128)`` vs ``x.mean((2, 3))``;
* ``masked_mse_loss`` forward + backward vs ``F.mse_loss``;
* ``MaskedBatchNorm2d`` in training mode, forward + backward, ``(16, 64, 64, 64)``
  (the setting of ``bench_cnn.py``) vs ``nn.BatchNorm2d``.

Plain and masked repeats are interleaved (alternating which goes first); the ratio is
the median over repeats of masked / plain time within the same repeat.

Run: python benchmarks/bench_review.py [--repeats 15] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

import masknn.functional as MF
from masknn import Masked
from masknn import nn as mnn


def _time(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _compare(name: str, plain: Callable[[], object], masked: Callable[[], object], repeats: int) -> None:
    for _ in range(2):
        plain()
        masked()
    tp: list[float] = []
    tm: list[float] = []
    for i in range(repeats):
        if i % 2:
            tp.append(_time(plain))
            tm.append(_time(masked))
        else:
            tm.append(_time(masked))
            tp.append(_time(plain))
    ratio = statistics.median(m / p for m, p in zip(tm, tp))
    print(
        f"{name:34s} plain {statistics.median(tp) * 1e3:8.2f} ms   masked "
        f"{statistics.median(tm) * 1e3:8.2f} ms   ratio {ratio:5.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    x = torch.randn(8, 16, 64, 128, requires_grad=True)
    t = torch.randn(8, 16, 64, 128)
    m = torch.rand(8, 1, 64, 128) > 0.5
    xd = x.detach()
    _compare(
        "masked_mean (H, W)", lambda: xd.mean((2, 3)), lambda: MF.masked_mean(xd, m, dim=(2, 3)), args.repeats
    )
    _compare(
        "masked_mse_loss fwd+bwd",
        lambda: F.mse_loss(x, t).backward(),
        lambda: MF.masked_mse_loss(x, t, m).backward(),
        args.repeats,
    )

    xb = torch.randn(16, 64, 64, 64, requires_grad=True)
    mb = torch.rand(16, 1, 64, 64) > 0.5
    g = torch.randn(16, 64, 64, 64)
    plain_bn, masked_bn = nn.BatchNorm2d(64), mnn.MaskedBatchNorm2d(64)
    _compare(
        "MaskedBatchNorm2d train fwd+bwd",
        lambda: plain_bn(xb).backward(g),
        lambda: masked_bn(Masked(xb, mb)).data.backward(g),
        args.repeats,
    )


if __name__ == "__main__":
    main()
