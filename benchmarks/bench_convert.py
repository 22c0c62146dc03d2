"""Training-step time of a converted torchvision model against the original, in the same run.

One step = forward, cross-entropy loss (the masked model's logits as they are: a fully
valid batch), backward, SGD update. Both models start from the same weights; the
converted one gets ``Masked`` input with a cloud mask (``--valid`` of the pixels valid)
and NaN in the holes, the original the same images with zeros in the holes. Steps are
interleaved (plain, converted, alternating which goes first) so that load from other
processes hits both alike; reported: the median step time of each and the median of
the per-repeat ratios.

Needs the ``models`` extra (torchvision); torchvision's C++ extension is not needed (the
shim of the tests declares its missing operators).

Run: OMP_NUM_THREADS=1 python benchmarks/bench_convert.py [--model resnet18] [--batch 8]
     [--size 64] [--repeats 15] [--threads 1] [--valid 0.7] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "convert"))

import _torchvision_shim  # noqa: E402

_torchvision_shim.install()

import torchvision.models as tvm  # noqa: E402

from masknn import Masked, masks  # noqa: E402
from masknn.convert import convert  # noqa: E402


def _step(model: nn.Module, opt: torch.optim.Optimizer, x: object, y: torch.Tensor, masked: bool) -> float:
    t0 = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    out = model(x)
    logits = out.data if masked else out
    loss = nn.functional.cross_entropy(logits, y)
    loss.backward()
    opt.step()
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet18")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--valid", type=float, default=0.7)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    plain = getattr(tvm, a.model)(num_classes=10).train()
    masked = convert(plain)
    masked.load_state_dict(plain.state_dict())
    opt_p = torch.optim.SGD(plain.parameters(), lr=1e-3)
    opt_m = torch.optim.SGD(masked.parameters(), lr=1e-3)
    n, s = a.batch, a.size
    valid = masks.cloud_mask((n, 1, s, s), coverage=1 - a.valid, seed=0)
    img = torch.randn(n, 3, s, s)
    x_plain = torch.where(valid, img, 0.0)
    x_masked = Masked(torch.where(valid, img, float("nan")), valid)
    y = torch.randint(0, 10, (n,))
    for _ in range(a.warmup):
        _step(plain, opt_p, x_plain, y, False)
        _step(masked, opt_m, x_masked, y, True)
    tp, tm, ratios = [], [], []
    for r in range(a.repeats):
        if r % 2 == 0:
            p_t = _step(plain, opt_p, x_plain, y, False)
            m_t = _step(masked, opt_m, x_masked, y, True)
        else:
            m_t = _step(masked, opt_m, x_masked, y, True)
            p_t = _step(plain, opt_p, x_plain, y, False)
        tp.append(p_t)
        tm.append(m_t)
        ratios.append(m_t / p_t)
    res = {
        "model": a.model,
        "batch": n,
        "size": s,
        "threads": a.threads,
        "valid_fraction": float(valid.float().mean()),
        "plain_ms": 1e3 * statistics.median(tp),
        "converted_ms": 1e3 * statistics.median(tm),
        "ratio_of_medians": statistics.median(tm) / statistics.median(tp),
        "median_ratio": statistics.median(ratios),
        "ratio_range": [min(ratios), max(ratios)],
    }
    if a.json:
        print(json.dumps(res))
        return
    print(
        f"{a.model} training step, batch {n}, {s}x{s}, {a.threads} thread(s), "
        f"{100 * res['valid_fraction']:.0f} % valid, {a.repeats} interleaved repeats\n"
        f"  plain     {res['plain_ms']:8.1f} ms (median)\n"
        f"  converted {res['converted_ms']:8.1f} ms (median)\n"
        f"  ratio     {res['median_ratio']:.2f}x (median of per-repeat ratios; "
        f"{res['ratio_of_medians']:.2f}x of medians; range {min(ratios):.2f}-{max(ratios):.2f})"
    )


if __name__ == "__main__":
    main()
