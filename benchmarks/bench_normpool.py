"""Normalization, pooling and up-sampling: masknn against the plain PyTorch twin, in the same run.

Every case runs its candidates round-robin (the order rotates every repeat, so load from
other processes hits them alike), one thread by default; a ratio is the median time of a
candidate over the median time of the plain twin measured in the same run.

Candidates:

* ``plain``: the torch layer (``nn.BatchNorm2d``, ``nn.MaxPool2d(2)``, ...) with the same
  weights and the same input, no mask;
* ``masked``: the masknn layer in eager mode (its fast kernels on CPU);
* ``composable``: the masknn layer inside ``masknn.functional._select.composable_only()``,
  i.e. the plain differentiable ops that compile, export, vmap and double backward take;
* with ``--compiled``: ``plain-compiled`` and ``masked-compiled``, both
  ``torch.compile(dynamic=False)`` (inductor), compiled before timing.

Setting: N=16, 64 channels, 64x64 images (as ``bench_cnn.py``), float32, 50 % of the pixels
masked at random with a channel-shared mask ``(N, 1, H, W)`` (``--per-channel``: ``(N, C, H, W)``).
Modes: ``train`` is forward + backward in training mode (input and parameter gradients, a
fixed random cotangent); ``eval`` is inference (eval mode, ``torch.no_grad``); ``eval-bwd``
is forward + backward in eval mode (frozen statistics, e.g. fine-tuning).

Run: python benchmarks/bench_normpool.py [--repeats 21] [--threads 1] [--cases ...] [--compiled]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from masknn import Masked
from masknn import nn as mnn
from masknn.functional._select import composable_only

N, C, H = 16, 64, 64

#: case -> (plain layer, masked layer, mode)
CASES: dict[str, Callable[[], tuple[nn.Module, nn.Module, str]]] = {
    "batchnorm2d-train": lambda: (nn.BatchNorm2d(C), mnn.MaskedBatchNorm2d(C), "train"),
    "batchnorm2d-eval": lambda: (nn.BatchNorm2d(C), mnn.MaskedBatchNorm2d(C), "eval"),
    "batchnorm2d-eval-bwd": lambda: (nn.BatchNorm2d(C), mnn.MaskedBatchNorm2d(C), "eval-bwd"),
    "maxpool2d-train": lambda: (nn.MaxPool2d(2), mnn.MaskedMaxPool2d(2), "train"),
    "maxpool2d-eval": lambda: (nn.MaxPool2d(2), mnn.MaskedMaxPool2d(2), "eval"),
    "avgpool2d-train": lambda: (nn.AvgPool2d(2), mnn.MaskedAvgPool2d(2), "train"),
    "avgpool2d-eval": lambda: (nn.AvgPool2d(2), mnn.MaskedAvgPool2d(2), "eval"),
    "adaptiveavg1-train": lambda: (nn.AdaptiveAvgPool2d(1), mnn.MaskedAdaptiveAvgPool2d(1), "train"),
    "adaptivemax1-train": lambda: (nn.AdaptiveMaxPool2d(1), mnn.MaskedAdaptiveMaxPool2d(1), "train"),
    "instancenorm2d-train": lambda: (
        nn.InstanceNorm2d(C, affine=True),
        mnn.MaskedInstanceNorm2d(C, affine=True),
        "train",
    ),
    "groupnorm-train": lambda: (nn.GroupNorm(8, C), mnn.MaskedGroupNorm(8, C), "train"),
    "layernorm-train": lambda: (nn.LayerNorm([H, H]), mnn.MaskedLayerNorm([H, H]), "train"),
    "upsample-bilinear-train": lambda: (
        nn.Upsample(scale_factor=2, mode="bilinear"),
        mnn.MaskedUpsample(scale_factor=2, mode="bilinear"),
        "train",
    ),
    "upsample-nearest-train": lambda: (
        nn.Upsample(scale_factor=2),
        mnn.MaskedUpsample(scale_factor=2),
        "train",
    ),
}
DEFAULT = [
    "batchnorm2d-train",
    "batchnorm2d-eval",
    "batchnorm2d-eval-bwd",
    "maxpool2d-train",
    "avgpool2d-train",
]


def _runner(
    layer: nn.Module, mode: str, call: Callable[[nn.Module], torch.Tensor], grad: torch.Tensor | None
) -> Callable[[], None]:
    if mode == "eval":

        def run() -> None:
            with torch.no_grad():
                call(layer)

        return run

    def run_bwd() -> None:
        call(layer).backward(grad)

    return run_bwd


def setup(case: str, per_channel: bool, compiled: bool) -> dict[str, Callable[[], None]]:
    torch.manual_seed(0)
    plain, masked, mode = CASES[case]()
    if list(plain.state_dict()):
        with torch.no_grad():
            for p in plain.parameters():
                p.uniform_(0.5, 1.5)
            if isinstance(plain, nn.BatchNorm2d):
                plain.running_mean.uniform_(-0.5, 0.5)
                plain.running_var.uniform_(0.5, 2.0)
        masked.load_state_dict(plain.state_dict())
    for layer in (plain, masked):
        layer.train(mode == "train")
    x = torch.randn(N, C, H, H, requires_grad=mode != "eval")
    mask = torch.rand(N, C if per_channel else 1, H, H) > 0.5
    xin = Masked(x, mask)
    with torch.no_grad():
        g = torch.randn_like(plain(x)) if mode != "eval" else None

    def call_plain(layer: nn.Module) -> torch.Tensor:
        return layer(x)

    def call_masked(layer: nn.Module) -> torch.Tensor:
        return layer(xin).data

    fns: dict[str, Callable[[], None]] = {
        "plain": _runner(plain, mode, call_plain, g),
        "masked": _runner(masked, mode, call_masked, g),
    }
    inner = _runner(masked, mode, call_masked, g)

    def composable() -> None:
        with composable_only():
            inner()

    fns["composable"] = composable
    if compiled:
        cp = torch.compile(plain, dynamic=False)
        cm = torch.compile(masked, dynamic=False)
        fns["plain-compiled"] = _runner(cp, mode, call_plain, g)
        fns["masked-compiled"] = _runner(cm, mode, call_masked, g)
    return fns


def time_case(
    case: str, repeats: int, per_channel: bool, compiled: bool, clock: Callable[[], float] = time.perf_counter
) -> dict[str, Any]:
    fns = setup(case, per_channel, compiled)
    names = list(fns)
    for fn in fns.values():  # warm-up (and compilation)
        for _ in range(3):
            fn()
    times: dict[str, list[float]] = {k: [] for k in names}
    for r in range(repeats):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            t0 = clock()
            fns[name]()
            times[name].append(clock() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"case": case, "ms": {k: 1e3 * v for k, v in med.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cases", nargs="*", default=DEFAULT, help=f"any of {list(CASES)} or 'all'")
    parser.add_argument("--per-channel", action="store_true")
    parser.add_argument("--compiled", action="store_true", help="also torch.compile both (inductor)")
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="wall: perf_counter; cpu: this thread's CPU time (excludes time descheduled by other load)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cases = list(CASES) if args.cases == ["all"] else args.cases
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, load average {os.getloadavg()}")
    mask = "per-channel (N, C, H, W)" if args.per_channel else "shared (N, 1, H, W)"
    print(
        f"N={N}, C={C}, {H}x{H}, 50 % masked, {mask} mask, {args.repeats} repeats, interleaved medians, "
        f"{args.clock} clock"
    )
    for case in cases:
        with contextlib.suppress(KeyboardInterrupt):
            clock = time.perf_counter if args.clock == "wall" else time.thread_time
            r = time_case(case, args.repeats, args.per_channel, args.compiled, clock)
        ms = r["ms"]
        base = ms["plain"]
        cols = "  ".join(f"{k} {v:8.2f} ms ({v / base:4.2f}x)" for k, v in ms.items() if k != "plain")
        extra = ""
        if "masked-compiled" in ms:
            extra = (
                f"  [masked-compiled / plain-compiled {ms['masked-compiled'] / ms['plain-compiled']:4.2f}x]"
            )
        print(f"{case:<26} plain {base:8.2f} ms  {cols}{extra}", flush=True)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
