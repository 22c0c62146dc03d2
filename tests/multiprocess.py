"""Run checks in several processes joined by a gloo process group on 127.0.0.1 (CPU only).

``run_ranks(target, world_size)`` spawns ``world_size`` fresh interpreters
(``torch.multiprocessing``, start method ``spawn``), joins them into one gloo
process group and calls ``target(rank, world_size)`` in each; ``target`` returns
``{check name: None (passed) or the failure's traceback}``, usually through
:func:`run_checks`. The parent returns ``{check name: [result of rank 0, rank 1, ...]}``.

No port is guessed: the parent opens the rendezvous ``TCPStore`` on port 0 (the
kernel picks a free one) and hands the port to the children, which connect to it as
clients. Nothing is left behind on failure: the collectives time out
(``gloo_timeout``), the whole run has a deadline (``timeout``) after which every
child is terminated, then killed; a child whose parent disappears exits by itself,
and the children are daemonic (the parent's exit ends them).
"""

from __future__ import annotations

import gc
import json
import os
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

Target = Callable[[int, int], dict[str, str | None]]


def _watch_parent(parent: int) -> None:
    """Exit this child as soon as its parent is gone (no orphans, even if the parent is killed)."""
    while True:
        if os.getppid() != parent:
            os._exit(3)
        time.sleep(0.5)


def _entry(
    rank: int, target: Target, world_size: int, port: int, outdir: str, gloo_timeout: float, parent: int
) -> None:
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    torch.set_num_threads(1)
    store = dist.TCPStore("127.0.0.1", port, is_master=False, timeout=timedelta(seconds=gloo_timeout))
    dist.init_process_group(
        "gloo", store=store, rank=rank, world_size=world_size, timeout=timedelta(seconds=gloo_timeout)
    )
    try:
        results = target(rank, world_size)
    finally:
        # A DistributedDataParallel object that outlives the process group aborts the process
        # when it is finally freed ("terminate called without an active exception", gloo). One
        # caught in a reference cycle (a converted model's forward refers to the model) is freed
        # by the cycle collector only: run it while the group still exists.
        gc.collect()
        dist.destroy_process_group()
    Path(outdir, f"rank{rank}.json").write_text(json.dumps(results))


def run_ranks(
    target: Target, world_size: int, *, timeout: float = 240.0, gloo_timeout: float = 60.0
) -> dict[str, list[str | None]]:
    """Run ``target(rank, world_size)`` in ``world_size`` processes; collect their results by check."""
    store = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
    with tempfile.TemporaryDirectory() as outdir:
        context = mp.start_processes(
            _entry,
            args=(target, world_size, store.port, outdir, gloo_timeout, os.getpid()),
            nprocs=world_size,
            join=False,
            daemon=True,
            start_method="spawn",
        )
        deadline = time.monotonic() + timeout
        try:
            while not context.join(timeout=0.2):  # raises if a child failed (and ends the others)
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{world_size} ranks did not finish within {timeout:.0f} s")
        finally:
            for p in context.processes:
                if p.is_alive():
                    p.terminate()
            for p in context.processes:
                p.join(5)
                if p.is_alive():
                    p.kill()
                    p.join()
        per_rank = [json.loads(Path(outdir, f"rank{r}.json").read_text()) for r in range(world_size)]
    del store
    return {name: [res[name] for res in per_rank] for name in per_rank[0]}


def run_checks(checks: dict[str, Callable[[], None]]) -> dict[str, str | None]:
    """Run ``checks`` in order in this rank; after each, agree with the other ranks whether all
    passed. After the first failure on any rank the rest are not run (their collectives
    would no longer pair up)."""
    results: dict[str, str | None] = {}
    stopped = ""
    for name, check in checks.items():
        if stopped:
            results[name] = f"not run: check {stopped!r} failed on some rank"
            continue
        try:
            check()
            results[name] = None
        except Exception:
            results[name] = traceback.format_exc()
        failed = torch.tensor([results[name] is not None], dtype=torch.float64)
        try:
            dist.all_reduce(failed)
        except Exception:
            failed.fill_(1)
        if failed.item() > 0:
            stopped = name
    return results
