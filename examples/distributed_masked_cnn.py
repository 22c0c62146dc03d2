"""Train a masked CNN on several processes: DistributedDataParallel + MaskedSyncBatchNorm.

Launch with torchrun (one process per GPU, or per CPU share):

    torchrun --standalone --nproc-per-node=2 examples/distributed_masked_cnn.py

Run as ``python examples/distributed_masked_cnn.py`` (no torchrun variables set), it
launches itself that way: 2 processes on this machine, gloo on CPU.

The task: 16x16 images with a bright blob in one of four quadrants (the class), 30 %
hidden under clouds holding NaN. Each rank draws its own batches; the batch-norm
statistics are those of the valid pixels of all ranks together.
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from masknn import Masked, masks
from masknn import nn as mnn


def build_model() -> nn.Module:
    """An ordinary masked CNN, written with MaskedBatchNorm2d as for one process."""
    return nn.Sequential(
        mnn.PartialConv2d(1, 8, 3, padding=1),
        mnn.MaskedBatchNorm2d(8),
        mnn.Elementwise(nn.ReLU()),
        mnn.MaskedMaxPool2d(2),
        mnn.PartialConv2d(8, 16, 3, padding=1),
        mnn.MaskedBatchNorm2d(16),
        mnn.Elementwise(nn.ReLU()),
        mnn.MaskedAdaptiveAvgPool2d(2),  # one cell per quadrant
        mnn.MaskedFlatten(),
        mnn.Unwrap(),
        nn.Linear(16 * 4, 4),
    )


def batch(gen: torch.Generator, n: int = 32) -> tuple[Masked, torch.Tensor]:
    labels = torch.randint(0, 4, (n,), generator=gen)
    x = 0.3 * torch.randn(n, 1, 16, 16, generator=gen)
    for i, k in enumerate(labels.tolist()):
        r, c = divmod(k, 2)
        x[i, 0, 8 * r + 2 : 8 * r + 6, 8 * c + 2 : 8 * c + 6] += 2.0
    seed = int(torch.randint(0, 2**31, (1,), generator=gen))
    valid = masks.cloud_mask((n, 1, 16, 16), coverage=0.3, seed=seed)
    return Masked.from_nan(torch.where(valid, x, torch.tensor(float("nan")))), labels


def train(steps: int = 30) -> None:
    cuda = torch.cuda.is_available()
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda", int(os.environ["LOCAL_RANK"])) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)

    torch.manual_seed(0)  # the same initial weights everywhere (DDP also broadcasts rank 0's)
    model = mnn.MaskedSyncBatchNorm.convert_sync_batchnorm(build_model()).to(device)
    model = DDP(model, device_ids=[device.index] if cuda else None)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(1000 + rank)  # each rank its own data

    losses = []
    for _ in range(steps):
        x, labels = batch(gen)
        loss = F.cross_entropy(model(x.to(device)), labels.to(device))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())

    # Synchronized statistics: every rank holds the same running mean (no broadcast needed).
    norm = model.module[1]
    every = [torch.empty_like(norm.running_mean) for _ in range(world)]
    dist.all_gather(every, norm.running_mean)
    same = all(torch.equal(every[0], t) for t in every)
    print(
        f"rank {rank}/{world}: loss {sum(losses[:5]) / 5:.3f} -> {sum(losses[-5:]) / 5:.3f}, "
        f"{type(norm).__name__} running statistics identical on all ranks: {same}",
        flush=True,
    )


def launch(nproc: int = 2) -> None:
    """What ``torchrun --standalone --nproc-per-node=2`` does, for a run without torchrun."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # A session of its own, so that a timeout ends torchrun and its workers together.
    proc = subprocess.Popen([*cmd, __file__], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, start_new_session=True)  # fmt: skip
    try:
        out, err = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    print(out, end="")
    if proc.returncode:
        raise SystemExit(f"torchrun failed ({proc.returncode}):\n{err}")


if __name__ == "__main__":
    if "RANK" in os.environ:  # started by torchrun
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")  # torchrun's variables
        train()
        # DDP's reducer can sit in a reference cycle after train() returns: collect it, so that
        # no gloo work outlives the process group (otherwise the process can abort at exit,
        # "terminate called without an active exception"), and let every rank finish first.
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()
    else:
        launch()
