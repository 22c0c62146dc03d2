"""A small masked CNN under torch.compile: eager and compiled masknn against the plain CNN, same run.

The network (the same weights in both)::

    masked: PartialConv2d(c_in, 32, 3, p=1) -> MaskedBatchNorm2d -> Elementwise(ReLU) -> MaskedMaxPool2d(2)
            -> PartialConv2d(32, 64, 3, p=1) -> MaskedBatchNorm2d -> Elementwise(ReLU) -> MaskedAvgPool2d(2)
            -> MaskedGlobalAvgPool -> MaskedLinear(64, 10)
    plain:  Conv2d -> BatchNorm2d -> ReLU -> MaxPool2d(2) -> Conv2d -> BatchNorm2d -> ReLU -> AvgPool2d(2)
            -> mean over (H, W) -> Linear

Variants, run round-robin (the starting variant rotates every repeat, so load from other
processes hits them alike), medians; every ratio is to a median of the same run:

* ``plain``: the plain CNN in eager mode (the input without its holes);
* ``masked``: the masknn CNN in eager mode (its CPU fast kernels);
* ``plain-compiled`` / ``masked-compiled``: ``torch.compile`` (inductor, default options) of
  the whole step: the forward (and the loss in training), compiled before timing.

Modes: ``train`` = forward + cross-entropy + backward in training mode (input-free: weight
gradients only, as a real training step); ``eval`` = inference (eval mode, ``no_grad``).
Masks: ``shared`` = one mask per pixel ``(N, 1, H, W)``; ``per-channel`` = ``(N, c_in, H, W)``
(the first partial convolution counts valid inputs over the channels too; its output mask
is channel-shared again). 50 % of the mask is False at random; masked data holds NaN.

Compile time (the first call, which traces and compiles, minus the median step) is reported
separately, per variant; it is not part of the step times. Inductor keeps compiled graphs in
an on-disk cache, so a second run of this script reports a warm compile (seconds);
``--cold`` disables the caches (``torch._inductor.config.force_disable_caches``) to report
a compile from scratch.

Run: python benchmarks/bench_compile.py [--repeats 21] [--threads 1] [--clock cpu]
     [--modes train eval] [--masks shared per-channel] [--n 16] [--size 64] [--c-in 8] [--cold]
     [--constant-filler]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from masknn import Masked
from masknn import nn as mnn

C1, C2, CLASSES = 32, 64, 10


class PlainCNN(nn.Module):
    """The plain twin."""

    def __init__(self, c_in: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, C1, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(C1)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(C1, C2, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(C2)
        self.pool2 = nn.AvgPool2d(2)
        self.head = nn.Linear(C2, CLASSES)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool1(torch.relu(self.bn1(self.conv1(x))))
        x = self.pool2(torch.relu(self.bn2(self.conv2(x))))
        return self.head(x.mean((2, 3)))


class MaskedCNN(nn.Module):
    """The masknn network; parameter and buffer names equal :class:`PlainCNN`'s."""

    def __init__(self, c_in: int) -> None:
        super().__init__()
        self.conv1 = mnn.PartialConv2d(c_in, C1, 3, padding=1)
        self.bn1 = mnn.MaskedBatchNorm2d(C1)
        self.act1 = mnn.Elementwise(nn.ReLU())
        self.pool1 = mnn.MaskedMaxPool2d(2)
        self.conv2 = mnn.PartialConv2d(C1, C2, 3, padding=1)
        self.bn2 = mnn.MaskedBatchNorm2d(C2)
        self.act2 = mnn.Elementwise(nn.ReLU())
        self.pool2 = mnn.MaskedAvgPool2d(2)
        self.gap = mnn.MaskedGlobalAvgPool()
        self.head = mnn.MaskedLinear(C2, CLASSES)

    def forward(self, x: Masked) -> Masked:
        x = self.pool1(self.act1(self.bn1(self.conv1(x))))
        x = self.pool2(self.act2(self.bn2(self.conv2(x))))
        return self.head(self.gap(x))


def _models(c_in: int) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    plain = PlainCNN(c_in)
    masked = MaskedCNN(c_in)
    missing = masked.load_state_dict(plain.state_dict(), strict=False)
    assert not missing.unexpected_keys and not [k for k in missing.missing_keys if "act" not in k]
    return plain, masked


def _inputs(n: int, size: int, c_in: int, per_channel: bool) -> tuple[Tensor, Masked, Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, c_in, size, size, generator=g)
    m = torch.rand(n, c_in if per_channel else 1, size, size, generator=g) > 0.5
    holed = torch.where(m, x, torch.tensor(float("nan")))
    y = torch.randint(0, CLASSES, (n,), generator=g)
    return x, Masked(holed, m), y


def setup(
    mode: str, per_channel: bool, n: int, size: int, c_in: int
) -> tuple[dict[str, Callable[[], None]], dict[str, Callable[[], None]]]:
    """``(eager variants, compiled variants)``: each a no-argument step."""
    plain, masked = _models(c_in)
    x, xm, y = _inputs(n, size, c_in, per_channel)
    train = mode == "train"
    for model in (plain, masked):
        model.train(train)

    def plain_loss(model: nn.Module) -> Callable[[], Tensor]:
        return lambda: F.cross_entropy(model(x), y)

    def masked_loss(model: nn.Module) -> Callable[[], Tensor]:
        return lambda: F.cross_entropy(model(xm).data, y)

    def plain_fwd(model: nn.Module) -> Callable[[], Tensor]:
        return lambda: model(x)

    def masked_fwd(model: nn.Module) -> Callable[[], Tensor]:
        return lambda: model(xm).data

    def runner(fn: Callable[[], Tensor], params: Sequence[Tensor]) -> Callable[[], None]:
        if train:

            def step() -> None:
                for p in params:
                    p.grad = None
                fn().backward()

            return step

        def infer() -> None:
            with torch.no_grad():
                fn()

        return infer

    make_plain, make_masked = (plain_loss, masked_loss) if train else (plain_fwd, masked_fwd)
    pp, mp = list(plain.parameters()), list(masked.parameters())
    eager = {"plain": runner(make_plain(plain), pp), "masked": runner(make_masked(masked), mp)}
    compiled = {
        "plain-compiled": runner(torch.compile(make_plain(plain)), pp),
        "masked-compiled": runner(torch.compile(make_masked(masked)), mp),
    }
    return eager, compiled


def time_mode(
    mode: str, per_channel: bool, repeats: int, n: int, size: int, c_in: int, clock: Callable[[], float]
) -> tuple[dict[str, float], dict[str, float]]:
    """``(median ms per variant, compile seconds per compiled variant)``."""
    torch._dynamo.reset()
    eager, compiled = setup(mode, per_channel, n, size, c_in)
    first: dict[str, float] = {}
    for name, fn in compiled.items():
        t0 = time.perf_counter()
        fn()
        first[name] = time.perf_counter() - t0
    fns = {**eager, **compiled}
    for fn in fns.values():  # warm-up
        for _ in range(2):
            fn()
    names = list(fns)
    times: dict[str, list[float]] = {k: [] for k in names}
    for r in range(repeats):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            t0 = clock()
            fns[name]()
            times[name].append(clock() - t0)
    med = {k: 1e3 * statistics.median(v) for k, v in times.items()}
    # The first call ran the step once too (wall clock): subtract a step's median.
    comp = {k: v - med[k] / 1e3 for k, v in first.items()}
    return med, comp


def _constant_filler() -> None:
    """Make ``masknn.functional._select.fill_value`` a 0-d constant under torch.compile too.

    The filler as it was before it was derived from the mask (``torch.where(m, x, 0.0)``):
    for measuring what the mask-derived filler saves. Patches masknn's module globals; the
    results stay exact (only the filler's graph differs).
    """
    import masknn.functional._select as select_module
    import masknn.functional.pooling as pooling_module

    def constant(m: Tensor, like: Tensor, value: float) -> Tensor:
        return torch.full((), value, dtype=like.dtype, device=like.device)

    select_module.fill_value = constant
    pooling_module.fill_value = constant


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--modes", nargs="*", default=["train", "eval"], choices=["train", "eval"])
    parser.add_argument(
        "--masks", nargs="*", default=["shared", "per-channel"], choices=["shared", "per-channel"]
    )
    parser.add_argument("--n", type=int, default=16, help="batch size")
    parser.add_argument("--size", type=int, default=64, help="image height and width")
    parser.add_argument("--c-in", type=int, default=8, help="input channels")
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="wall: perf_counter; cpu: this thread's CPU time (excludes time descheduled by other load)",
    )
    parser.add_argument(
        "--cold", action="store_true", help="disable inductor's caches (compile from scratch)"
    )
    parser.add_argument(
        "--constant-filler",
        action="store_true",
        help="A/B: compile the masked selects with a 0-d constant filler (masknn before fill_value)",
    )
    args = parser.parse_args()
    if args.constant_filler:
        _constant_filler()
    if args.cold:
        import torch._inductor.config as inductor_config

        inductor_config.force_disable_caches = True
    torch.set_num_threads(args.threads)
    clock = time.perf_counter if args.clock == "wall" else time.thread_time
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, load average {os.getloadavg()}")
    print(
        f"N={args.n}, c_in={args.c_in}, {args.size}x{args.size}, {C1}/{C2} channels, 50 % masked (NaN), "
        f"{args.repeats} repeats, interleaved medians, {args.clock} clock"
        + (", inductor caches disabled" if args.cold else "")
        + (", CONSTANT filler (before fill_value)" if args.constant_filler else "")
    )
    for mask in args.masks:
        for mode in args.modes:
            med, comp = time_mode(
                mode, mask == "per-channel", args.repeats, args.n, args.size, args.c_in, clock
            )
            base = med["plain"]
            cols = "  ".join(f"{k} {v:7.2f} ms ({v / base:4.2f}x)" for k, v in med.items() if k != "plain")
            print(f"{mode:<5} {mask:<11} plain {base:7.2f} ms  {cols}", flush=True)
            mc = med["masked-compiled"]
            print(
                f"      masked-compiled / plain-compiled {mc / med['plain-compiled']:4.2f}x"
                f"   masked-compiled / masked {mc / med['masked']:4.2f}x"
                f"   compile s: " + ", ".join(f"{k} {v:5.1f}" for k, v in comp.items()),
                flush=True,
            )
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
