"""The per-call cost of the argument and input checks: masknn on this tree against masknn at a base
revision (``--base``, before the checks) and the plain PyTorch twin, in the same run.

The checks (errors that name the layer, ranges of dims, windows, sizes, class targets and token
ids) run on every call, so they are timed where they weigh most: on *small* inputs, where a
layer's fixed per-call cost dominates. Every case runs its candidates round-robin (the order
rotates every repeat), one thread; each number is a median; a ratio is over the plain twin's
median in the same run.

The base revision is extracted with ``git archive`` into a temporary folder and imported as the
package ``masknn_base`` (every ``masknn`` name in its sources renamed), so both versions run in
one process.

Run: python benchmarks/bench_checks.py [--base 81d8b84] [--repeats 301] [--clock cpu]
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

import masknn

ROOT = Path(__file__).resolve().parents[1]


def load_base(rev: str) -> ModuleType:
    """masknn at ``rev`` as the package ``masknn_base``."""
    tmp = Path(tempfile.mkdtemp(prefix="masknn_base_"))
    archive = tmp / "src.tar"
    subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(archive), rev, "src/masknn"], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(tmp, filter="data")
    pkg = tmp / "src" / "masknn_base"
    (tmp / "src" / "masknn").rename(pkg)
    for path in pkg.rglob("*.py"):
        text = path.read_text()
        path.write_text(re.sub(r"\bmasknn\b", "masknn_base", text))
    sys.path.insert(0, str(tmp / "src"))
    return importlib.import_module("masknn_base")


def cases(mk: Any) -> dict[str, tuple[Callable[[], Any], Callable[[], Any], Callable[[], Any]]]:
    """case -> (plain call, masknn call, masknn_base call); small inputs, eval mode, no grad."""
    torch.manual_seed(0)
    out: dict[str, tuple[Callable[[], Any], Callable[[], Any], Callable[[], Any]]] = {}
    mods = (masknn, mk)

    def img(c: int, s: int, n: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.randn(n, c, s, s), torch.rand(n, 1, s, s) > 0.3

    x, m = img(16, 32)
    plain = nn.Conv2d(16, 16, 3, padding=1).eval()
    conv = [lib.nn.PartialConv2d(16, 16, 3, padding=1).eval() for lib in mods]
    mx = [lib.Masked(x, m) for lib in mods]
    out["PartialConv2d"] = (lambda: plain(x), lambda: conv[0](mx[0]), lambda: conv[1](mx[1]))
    pool = [lib.nn.MaskedMaxPool2d(2) for lib in mods]
    out["MaskedMaxPool2d"] = (
        lambda: nn.functional.max_pool2d(x, 2),
        lambda: pool[0](mx[0]),
        lambda: pool[1](mx[1]),
    )
    avg = [lib.nn.MaskedAvgPool2d(3, 1, 1) for lib in mods]
    out["MaskedAvgPool2d"] = (
        lambda: nn.functional.avg_pool2d(x, 3, 1, 1),
        lambda: avg[0](mx[0]),
        lambda: avg[1](mx[1]),
    )
    ada = [lib.nn.MaskedAdaptiveAvgPool2d(4) for lib in mods]
    out["MaskedAdaptiveAvgPool2d"] = (
        lambda: nn.functional.adaptive_avg_pool2d(x, 4),
        lambda: ada[0](mx[0]),
        lambda: ada[1](mx[1]),
    )
    bn = [lib.nn.MaskedBatchNorm2d(16).train() for lib in mods]
    pbn = nn.BatchNorm2d(16).train()
    out["MaskedBatchNorm2d-train"] = (lambda: pbn(x), lambda: bn[0](mx[0]), lambda: bn[1](mx[1]))
    up = [lib.nn.MaskedUpsample(scale_factor=2, mode="bilinear") for lib in mods]
    out["MaskedUpsample"] = (
        lambda: nn.functional.interpolate(x, scale_factor=2, mode="bilinear"),
        lambda: up[0](mx[0]),
        lambda: up[1](mx[1]),
    )
    cat = [lib.nn.MaskedCat(1) for lib in mods]
    out["MaskedCat"] = (
        lambda: torch.cat([x, x], 1),
        lambda: cat[0](mx[0], mx[0]),
        lambda: cat[1](mx[1], mx[1]),
    )
    flat = [lib.nn.MaskedFlatten() for lib in mods]
    out["MaskedFlatten"] = (lambda: torch.flatten(x, 1), lambda: flat[0](mx[0]), lambda: flat[1](mx[1]))
    s, sm = torch.randn(8, 20, 32), torch.rand(8, 20, 1) > 0.3
    ms = [lib.Masked(s, sm) for lib in mods]
    lin = [lib.nn.MaskedLinear(32, 32) for lib in mods]
    plin = nn.Linear(32, 32)
    out["MaskedLinear"] = (lambda: plin(s), lambda: lin[0](ms[0]), lambda: lin[1](ms[1]))
    logits, target, valid = torch.randn(64, 10), torch.randint(0, 10, (64,)), torch.rand(64) > 0.2
    ce = [lib.nn.MaskedCrossEntropyLoss() for lib in mods]
    out["MaskedCrossEntropyLoss"] = (
        lambda: nn.functional.cross_entropy(logits, target),
        lambda: ce[0](logits, target, valid),
        lambda: ce[1](logits, target, valid),
    )
    ids = torch.randint(1, 100, (8, 20))
    emb = [lib.nn.MaskedEmbedding(100, 32, mask_zero=True) for lib in mods]
    pemb = nn.Embedding(100, 32)
    out["MaskedEmbedding"] = (lambda: pemb(ids), lambda: emb[0](ids), lambda: emb[1](ids))
    mha = [lib.nn.MaskedMultiheadAttention(32, 4, batch_first=True).eval() for lib in mods]
    pmha = nn.MultiheadAttention(32, 4, batch_first=True).eval()
    kpm = ~sm[..., 0]
    out["MaskedMultiheadAttention"] = (
        lambda: pmha(s, s, s, key_padding_mask=kpm),
        lambda: mha[0](ms[0]),
        lambda: mha[1](ms[1]),
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base", default="81d8b84", help="the revision before the checks")
    parser.add_argument("--repeats", type=int, default=301)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clock", choices=["wall", "cpu"], default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clock = time.perf_counter if args.clock == "wall" else time.thread_time
    base = load_base(args.base)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, load average {os.getloadavg()}")
    print(f"this tree vs base {args.base}, {args.repeats} repeats, interleaved medians, {args.clock} clock")
    head = ["plain us", "masknn us", "base us", "masknn/plain", "base/plain", "masknn-base us"]
    print(f"{'case (no grad)':<26} " + " ".join(f"{h:>{max(9, len(h))}}" for h in head))
    with torch.no_grad():
        for name, fns in cases(base).items():
            for fn in fns:
                for _ in range(10):
                    fn()
            times: list[list[float]] = [[], [], []]
            for r in range(args.repeats):
                for k in [(r + i) % 3 for i in range(3)]:
                    t0 = clock()
                    fns[k]()
                    times[k].append(clock() - t0)
            p, new, old = (1e6 * statistics.median(t) for t in times)
            cols = [p, new, old, new / p, old / p, new - old]
            fmt = [".1f", ".1f", ".1f", ".2f", ".2f", ".1f"]
            line = " ".join(f"{v:>{max(9, len(h))}{f}}" for v, h, f in zip(cols, head, fmt))
            print(f"{name:<26} {line}", flush=True)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
