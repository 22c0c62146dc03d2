"""What synchronizing the batch norms of a converted model costs: DDP training steps of a converted
torchvision model across processes (gloo, CPU), synchronized against unsynchronized, in the same run.

Each of ``--ranks`` processes (spawned, gloo on 127.0.0.1, one thread each) runs DDP training steps
(forward, cross-entropy, backward with DDP's gradient all-reduce, SGD) of

* ``plain``: the original model (per-rank batch-norm statistics; torch's ``nn.SyncBatchNorm``
  refuses CPU tensors, so there is no plain synchronized twin on CPU);
* ``converted``: ``masknn.convert(model)``, per-rank masked statistics;
* ``converted + synced``: ``MaskedSyncBatchNorm.convert_sync_batchnorm(masknn.convert(model))``,
  masked statistics over every rank's valid positions (1 all-gather forward and 1 all-reduce
  backward per batch norm: 20 batch norms in ResNet-18).

Every rank runs the same interleaved sequence (round-robin, rotating which variant goes first,
a barrier before each step); the times are rank 0's, so they include waiting for the slowest
rank. Ratios are medians of per-repeat ratios. The masked variants get ``--valid`` of the
pixels valid (cloud masks) and NaN in the holes; the plain one zeros there.

Needs the ``models`` extra (torchvision; the tests' shim declares its missing operators).

Run: python benchmarks/bench_convert_sync.py [--model resnet18] [--ranks 2] [--batch 8]
     [--size 64] [--repeats 15]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

ROOT = Path(__file__).resolve().parents[1]


def _models(name: str) -> dict[str, nn.Module]:
    sys.path.insert(0, str(ROOT / "tests" / "convert"))
    import _torchvision_shim

    _torchvision_shim.install()
    import torchvision.models as tvm

    import masknn
    from masknn import nn as mnn

    def build() -> nn.Module:
        torch.manual_seed(0)
        model: nn.Module = getattr(tvm, name)(num_classes=10)
        return model

    return {
        "plain": build(),
        "converted": masknn.convert(build()),
        "converted + synced": mnn.MaskedSyncBatchNorm.convert_sync_batchnorm(masknn.convert(build())),
    }


def _worker(rank: int, ranks: int, port: int, args: argparse.Namespace, out: str) -> None:
    torch.set_num_threads(1)
    store = dist.TCPStore("127.0.0.1", port, is_master=False, timeout=timedelta(seconds=300))
    dist.init_process_group("gloo", store=store, rank=rank, world_size=ranks)
    from masknn import Masked, masks

    g = torch.Generator().manual_seed(rank)
    x = torch.randn(args.batch, 3, args.size, args.size, generator=g)
    valid = masks.cloud_mask((args.batch, 1, args.size, args.size), coverage=1 - args.valid, seed=rank)
    labels = torch.randint(0, 10, (args.batch,), generator=g)
    masked_in = Masked(x.masked_fill(~valid, float("nan")), valid)
    plain_in = x.masked_fill(~valid, 0.0)

    steps: dict[str, Callable[[], None]] = {}
    for name, model in _models(args.model).items():
        ddp = DDP(model.train())
        opt = torch.optim.SGD(ddp.parameters(), lr=0.01)
        masked = name != "plain"

        def step(ddp: nn.Module = ddp, opt: torch.optim.Optimizer = opt, masked: bool = masked) -> None:
            opt.zero_grad(set_to_none=True)
            y = ddp(masked_in if masked else plain_in)
            loss = nn.functional.cross_entropy(y.data if masked else y, labels)
            loss.backward()
            opt.step()

        steps[name] = step
    names = list(steps)
    for _ in range(args.warmup):
        for fn in steps.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in names}
    for r in range(args.repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            dist.barrier()
            t = time.perf_counter()
            steps[name]()
            times[name].append(time.perf_counter() - t)
    if rank == 0:
        res = {}
        for name in names:
            res[name] = {
                "ms": statistics.median(times[name]) * 1e3,
                "vs plain": statistics.median(a / b for a, b in zip(times[name], times["plain"])),
                "vs converted": statistics.median(a / b for a, b in zip(times[name], times["converted"])),
            }
        Path(out).write_text(json.dumps(res))
    del steps
    import gc

    gc.collect()  # the DDP objects (in reference cycles) before the process group
    dist.destroy_process_group()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet18")
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--batch", type=int, default=8, help="samples per rank")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--valid", type=float, default=0.7)
    args = p.parse_args()
    store = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "results.json")
        mp.start_processes(
            _worker, args=(args.ranks, store.port, args, out), nprocs=args.ranks, start_method="spawn"
        )
        res = json.loads(Path(out).read_text())
    print(
        f"torch {torch.__version__}, {args.model}, {args.ranks} ranks on gloo, 1 thread each, "
        f"batch {args.batch}/rank, {args.size}x{args.size}, {args.valid:.0%} valid, {args.repeats} repeats; "
        "rank 0's median step and median per-repeat ratios"
    )
    print(f"| {'variant':20s} | {'ms/step':>8s} | {'vs plain':>8s} | {'vs converted':>12s} |")
    print(f"|{'-' * 22}|{'-' * 9}:|{'-' * 9}:|{'-' * 13}:|")
    for name, row in res.items():
        print(f"| {name:20s} | {row['ms']:8.1f} | {row['vs plain']:7.2f}x | {row['vs converted']:11.2f}x |")


if __name__ == "__main__":
    main()
