"""What synchronizing masked batch-norm statistics costs: MaskedSyncBatchNorm across processes on gloo
(CPU) against the unsynchronized layers, measured in the same run.

Each of ``--ranks`` processes (spawned, gloo on 127.0.0.1, one thread each) runs forward + backward
(input, weight and bias gradients, a fixed random cotangent) of

* ``nn.BatchNorm2d``: plain, per-rank statistics (torch's ``nn.SyncBatchNorm`` refuses CPU tensors);
* ``MaskedBatchNorm2d``: masked, per-rank statistics;
* ``MaskedSyncBatchNorm``: masked, global statistics (eager fast node: 2 all-reduces forward, 1 backward);
* ``MaskedSyncBatchNorm`` under ``composable_only()``: the plain-op path (2 + 2 all-reduces);
* one bare ``all_reduce`` of 2C floats: the latency floor of one collective.

Every rank runs the same interleaved sequence (round-robin, rotating which variant goes first); the
times are rank 0's, so they include waiting for the slowest rank. Ratios are medians over
``--repeats`` of per-repeat ratios to ``nn.BatchNorm2d``.

Run: python benchmarks/bench_sync_bn.py [--ranks 2] [--repeats 41]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from masknn import Masked
from masknn import nn as mnn
from masknn.functional._select import composable_only

C = 64
CASES = {"small (N=8/rank, 16x16)": (8, 16), "large (N=16/rank, 64x64)": (16, 64)}


def _variants(n: int, size: int, rank: int) -> dict[str, Callable[[], None]]:
    torch.manual_seed(rank)
    x = (torch.randn(n, C, size, size) * (1 + rank) + rank).requires_grad_()
    mask = torch.rand(n, 1, size, size) > 0.5
    grad = torch.randn(n, C, size, size)
    plain, masked, sync = nn.BatchNorm2d(C), mnn.MaskedBatchNorm2d(C), mnn.MaskedSyncBatchNorm(C)
    flat = torch.zeros(2 * C)

    def run(layer: nn.Module, composable: bool = False) -> Callable[[], None]:
        def step() -> None:
            if composable:
                with composable_only():
                    out = layer(Masked(x, mask)).data
                    out.backward(grad)
            else:
                y = layer(x) if layer is plain else layer(Masked(x, mask)).data
                y.backward(grad)
            x.grad = None

        return step

    return {
        "nn.BatchNorm2d": run(plain),
        "MaskedBatchNorm2d": run(masked),
        "MaskedSyncBatchNorm": run(sync),
        "MaskedSyncBatchNorm (composable)": run(sync, composable=True),
        "all_reduce 2C": lambda: dist.all_reduce(flat),
    }


def _worker(rank: int, ranks: int, port: int, repeats: int, out: str) -> None:
    torch.set_num_threads(1)
    store = dist.TCPStore("127.0.0.1", port, is_master=False, timeout=timedelta(seconds=120))
    dist.init_process_group("gloo", store=store, rank=rank, world_size=ranks)
    results: dict[str, dict[str, float]] = {}
    for case, (n, size) in CASES.items():
        runs = _variants(n, size, rank)
        names = list(runs)
        for fn in runs.values():  # warm-up
            fn()
        times: dict[str, list[float]] = {k: [] for k in names}
        for r in range(repeats):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                dist.barrier()
                t = time.perf_counter()
                runs[name]()
                times[name].append(time.perf_counter() - t)
        base = times["nn.BatchNorm2d"]
        results[case] = {}
        for name in names:
            med = statistics.median(times[name]) * 1e3
            ratio = statistics.median(a / b for a, b in zip(times[name], base))
            results[case][name] = med
            results[case][name + " ratio"] = ratio
    if rank == 0:
        Path(out).write_text(json.dumps(results))
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=41)
    args = parser.parse_args()
    store = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "results.json")
        mp.start_processes(
            _worker, args=(args.ranks, store.port, args.repeats, out), nprocs=args.ranks, start_method="spawn"
        )
        results = json.loads(Path(out).read_text())
    print(
        f"torch {torch.__version__}, {args.ranks} ranks on gloo, 1 thread each, C={C}, 50 % masked, "
        f"{args.repeats} repeats; rank 0's median ms and median ratio to nn.BatchNorm2d"
    )
    for case, row in results.items():
        print(f"\n{case}")
        print(f"| {'variant':34s} | {'ms':>8s} | {'ratio':>6s} |")
        print(f"|{'-' * 36}|{'-' * 10}:|{'-' * 7}:|")
        for name in [k for k in row if not k.endswith(" ratio")]:
            print(f"| {name:34s} | {row[name]:8.3f} | {row[name + ' ratio']:5.2f}x |")


if __name__ == "__main__":
    main()
