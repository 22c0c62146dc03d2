"""MaskedSyncBatchNorm across 2 and 3 processes (gloo on 127.0.0.1), its converter and torch's trap.

The distributed checks run in one spawned group per world size (tests/multiprocess.py); each
rank compares itself with a single-process MaskedBatchNorm2d (or a plain float64 reference)
on the concatenated batch of every rank, which it rebuilds from the same seeds.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from masknn import Masked
from masknn import functional as MF
from masknn import nn as mnn
from masknn.functional._select import composable_only
from tests.multiprocess import run_checks, run_ranks

# Distinct sizes (N is 2, 3 or 4 per rank): under torch.compile, dynamo gives equal sizes one
# symbol ("duck sizing"), and C is static, so a coincidence would specialize a size.
C, H, W = 4, 7, 5
TOL = {"atol": 1e-5, "rtol": 1e-5}
NAN = float("nan")


# --------------------------------------------------------------------------- data
def _sizes(ws: int, empty_rank: int | None) -> list[int]:
    return [0 if r == empty_rank else 2 + r for r in range(ws)]


def _batches(
    ws: int,
    seed: int,
    per_channel: bool,
    fill: float,
    empty_rank: int | None = None,
    hw: tuple[int, int] = (H, W),
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Every rank's (data, mask): different distributions per rank (mean 3r + c, std 1 + r), a fully
    masked sample on rank 0, channel 1 with no valid position on rank 1, channel 3 with none on any
    rank (per-channel masks), no valid position at all on rank 2; ``fill`` at masked positions."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for r, n in enumerate(_sizes(ws, empty_rank)):
        x = torch.randn(n, C, *hw, generator=g) * (1 + r) + 3 * r + torch.arange(C).view(1, C, 1, 1)
        m = torch.rand(n, C if per_channel else 1, *hw, generator=g) > 0.35
        if n:
            if r == 0:
                m[0] = False
            if r == 1 and per_channel:
                m[:, 1] = False
            if r == 2:
                m[:] = False
            if per_channel:
                m[:, 3] = False
        out.append((torch.where(m, x, torch.tensor(fill)), m))
    return out


def _cotangents(batches: list[tuple[torch.Tensor, torch.Tensor]], seed: int) -> list[torch.Tensor]:
    """A gradient for each rank's output, NaN at masked positions (it must reach no gradient)."""
    g = torch.Generator().manual_seed(seed + 1000)
    return [
        torch.where(m, torch.randn(x.shape, generator=g).to(m.device), torch.tensor(NAN, device=m.device))
        for x, m in batches
    ]


def _init(bn: nn.Module) -> None:
    with torch.no_grad():
        bn.weight.copy_(torch.linspace(0.5, 1.5, C))
        bn.bias.copy_(torch.linspace(-1.0, 1.0, C))
        bn.running_mean.copy_(torch.arange(C, dtype=torch.float32))
        bn.running_var.fill_(2.0)


@contextmanager
def _no_collectives() -> Iterator[None]:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a collective was called")

    before = dist.all_reduce
    dist.all_reduce = refuse  # type: ignore[assignment]
    try:
        yield
    finally:
        dist.all_reduce = before


@contextmanager
def _path(composable: bool) -> Iterator[None]:
    if composable:
        with composable_only():
            yield
    else:
        yield


# ------------------------------------------------------------------ the checks
def _train_against_reference(
    rank: int,
    ws: int,
    *,
    per_channel: bool,
    momentum: float | None,
    composable: bool,
    fill: float,
    empty_rank: int | None = None,
) -> list[torch.Tensor]:
    """Three DDP training steps of MaskedSyncBatchNorm against MaskedBatchNorm2d on the whole batch;
    returns what this rank computed (to compare runs with different fills bit for bit)."""
    sync = mnn.MaskedSyncBatchNorm(C, momentum=momentum)
    ref = mnn.MaskedBatchNorm2d(C, momentum=momentum)
    _init(sync)
    _init(ref)
    ddp = DDP(sync)
    seen: list[torch.Tensor] = []
    for step in range(3):
        batches = _batches(ws, 10 * step + per_channel, per_channel, fill, empty_rank)
        cots = _cotangents(batches, step)
        x, m = batches[rank]
        x = x.clone().requires_grad_()
        with _path(composable):
            y = ddp(Masked(x, m))
            y.data.backward(cots[rank])
        xf = torch.cat([b[0] for b in batches]).requires_grad_()
        yf = ref(Masked(xf, torch.cat([b[1] for b in batches])))
        yf.data.backward(torch.cat(cots))
        lo = sum(_sizes(ws, empty_rank)[:rank])
        part = slice(lo, lo + x.shape[0])
        assert torch.equal(y.mask, m)
        torch.testing.assert_close(y.data, yf.data[part], **TOL)
        assert x.grad is not None and xf.grad is not None
        torch.testing.assert_close(x.grad, xf.grad[part], **TOL)
        full = m.expand(x.shape)
        assert bool((y.data[~full] == 0).all()) and bool((x.grad[~full] == 0).all())
        for name in ("weight", "bias"):  # DDP averages: the mean over ranks of their local sums
            got, want = getattr(sync, name).grad, getattr(ref, name).grad
            torch.testing.assert_close(got * ws, want, **TOL)
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            torch.testing.assert_close(getattr(sync, name), getattr(ref, name), **TOL)
        seen += [y.data, x.grad, sync.weight.grad.clone(), sync.bias.grad.clone()]
        seen += [sync.running_mean.clone(), sync.running_var.clone()]
        ddp.zero_grad()
        ref.zero_grad()
    if per_channel:  # channel 3 has no valid position on any rank: its running statistics stay
        assert sync.running_mean[3] == 3.0 and sync.running_var[3] == 2.0
    # eval: running statistics, no communication
    sync.eval()
    ref.eval()
    x, m = _batches(ws, 99, per_channel, fill)[rank]
    with _no_collectives(), _path(composable):
        y = sync(Masked(x, m))
    torch.testing.assert_close(y.data, ref(Masked(x, m)).data, **TOL)
    return seen


def check_matches_single_process(rank: int, ws: int) -> None:
    for per_channel in (False, True):
        for momentum in (0.1, None):
            for composable in (False, True):
                run = functools.partial(
                    _train_against_reference,
                    rank,
                    ws,
                    per_channel=per_channel,
                    momentum=momentum,
                    composable=composable,
                )
                with_nan = run(fill=NAN)
                if momentum is None:  # masked positions are inert: bit for bit
                    with_huge = run(fill=-1e30)
                    assert all(torch.equal(a, b) for a, b in zip(with_nan, with_huge))


def check_empty_rank(rank: int, ws: int) -> None:
    for composable in (False, True):
        _train_against_reference(
            rank, ws, per_channel=True, momentum=0.1, composable=composable, fill=NAN, empty_rank=1
        )


def check_momentum_none_skips_empty_global_batches(rank: int, ws: int) -> None:
    # momentum=None is the cumulative average over the batches that hold a valid element on some
    # rank: a global batch with none (every rank fully masked, or empty) is not counted; one where
    # only some ranks are fully masked is. Reference: one process fed the counted batches only.
    for composable in (False, True):
        sync, ref = mnn.MaskedSyncBatchNorm(C, momentum=None), mnn.MaskedBatchNorm2d(C, momentum=None)
        _init(sync)
        _init(ref)
        for step in range(4):
            batches = _batches(ws, 50 + step, False, NAN)
            if step == 1:  # no valid element on any rank
                batches = [(x, torch.zeros_like(m)) for x, m in batches]
            if step == 2:  # rank 0 fully masked, the others not
                batches[0] = (batches[0][0], torch.zeros_like(batches[0][1]))
            x, m = batches[rank]
            with _path(composable):
                sync(Masked(x, m))
            if step != 1:
                ref(Masked(torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])))
        assert int(sync.num_batches_tracked) == 3 == int(ref.num_batches_tracked)
        torch.testing.assert_close(sync.running_mean, ref.running_mean, **TOL)
        torch.testing.assert_close(sync.running_var, ref.running_var, **TOL)


def check_groups_of_one_communicate_nothing(rank: int, ws: int) -> None:
    groups = [dist.new_group([r]) for r in range(ws)]  # every rank creates every group
    sync = mnn.MaskedSyncBatchNorm(C, process_group=groups[rank])
    ref = mnn.MaskedBatchNorm2d(C)
    x, m = _batches(ws, 7, True, NAN)[rank]
    with _no_collectives():
        y = sync(Masked(x, m))
    torch.testing.assert_close(y.data, ref(Masked(x, m)).data, **TOL)
    torch.testing.assert_close(sync.running_var, ref.running_var, **TOL)


def check_subgroup(rank: int, ws: int) -> None:
    """Ranks 0 and 1 synchronize with each other only; rank 2 is alone in its group and may not
    use the group of 0 and 1."""
    pair, alone = dist.new_group([0, 1]), dist.new_group([2])
    batches = _batches(ws, 8, True, NAN)
    x, m = batches[rank]
    if rank == 2:
        with pytest.raises(ValueError, match="not a member of the process_group"):
            mnn.MaskedSyncBatchNorm(C, process_group=pair)(Masked(x, m))
        with _no_collectives():
            y = mnn.MaskedSyncBatchNorm(C, process_group=alone)(Masked(x, m))
        torch.testing.assert_close(y.data, mnn.MaskedBatchNorm2d(C)(Masked(x, m)).data, **TOL)
        return
    xs = x.clone().requires_grad_()
    y = mnn.MaskedSyncBatchNorm(C, process_group=pair)(Masked(xs, m))
    y.data.sum().backward()
    xf = torch.cat([batches[0][0], batches[1][0]]).requires_grad_()
    yf = mnn.MaskedBatchNorm2d(C)(Masked(xf, torch.cat([batches[0][1], batches[1][1]])))
    yf.data.sum().backward()
    part = slice(0, 2) if rank == 0 else slice(2, 5)
    torch.testing.assert_close(y.data, yf.data[part], **TOL)
    assert xs.grad is not None and xf.grad is not None
    torch.testing.assert_close(xs.grad, xf.grad[part], **TOL)


def check_half_precision(rank: int, ws: int) -> None:
    """float16 data (float32 parameters): statistics accumulate and are all-reduced in float32."""
    batches = [(x.half(), m) for x, m in _batches(ws, 6, False, NAN)]
    sync, ref = mnn.MaskedSyncBatchNorm(C), mnn.MaskedBatchNorm2d(C)
    x, m = batches[rank]
    x = x.clone().requires_grad_()
    y = sync(Masked(x, m))
    y.data.float().sum().backward()
    xf = torch.cat([b[0] for b in batches]).float().requires_grad_()
    yf = ref(Masked(xf, torch.cat([b[1] for b in batches])))
    yf.data.sum().backward()
    lo = sum(_sizes(ws, None)[:rank])
    part = slice(lo, lo + x.shape[0])
    assert y.data.dtype == torch.float16 and x.grad is not None and xf.grad is not None
    torch.testing.assert_close(y.data.float(), yf.data[part], atol=1e-2, rtol=1e-2)
    torch.testing.assert_close(x.grad.float(), xf.grad[part], atol=1e-2, rtol=1e-2)
    torch.testing.assert_close(sync.running_var, ref.running_var, atol=1e-4, rtol=1e-4)


def check_precision_far_from_zero(rank: int, ws: int) -> None:
    """float32 data with mean 1e4 (+ 10·rank) and std 1: both paths stay within 5e-3 of float64
    (a one-pass Σx² - n·mean², per rank or merged, loses every digit of the variance)."""
    batches = [(x + 1e4 + 10 * r, m) for r, (x, m) in enumerate(_batches(ws, 9, False, NAN))]
    xf = torch.cat([b[0] for b in batches]).double()
    ones, zeros = torch.ones(C, dtype=torch.float64), torch.zeros(C, dtype=torch.float64)
    want = _naive64(xf, torch.cat([b[1] for b in batches]), ones, zeros)
    lo = sum(_sizes(ws, None)[:rank])
    x, m = batches[rank]
    for composable in (False, True):
        with _path(composable):
            y = mnn.MaskedSyncBatchNorm(C)(Masked(x, m))
        torch.testing.assert_close(y.data.double(), want[lo : lo + x.shape[0]], atol=5e-3, rtol=0)


def _naive64(x: torch.Tensor, m: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Float64 masked batch norm in plain ops (twice differentiable), eps 1e-5."""
    mf = m.expand(x.shape)
    zero = torch.zeros((), dtype=x.dtype)
    xz = torch.where(mf, x, zero)
    n = mf.sum((0, 2, 3), keepdim=True).to(x.dtype).clamp_min(1)
    mean = xz.sum((0, 2, 3), keepdim=True) / n
    var = torch.where(mf, xz - mean, zero).square().sum((0, 2, 3), keepdim=True) / n
    y = (xz - mean) / (var + 1e-5).sqrt() * w.view(1, -1, 1, 1) + b.view(1, -1, 1, 1)
    return torch.where(mf, y, zero)


def check_double_backward(rank: int, ws: int) -> None:
    """A gradient penalty through the synchronized statistics: d/dx and d/dw of Σ_ranks |∂L/∂x|²
    equal the single-process ones, on the fast node (its backward re-derived with create_graph)
    and on the composable path."""
    batches = [(x.double(), m) for x, m in _batches(ws, 5, True, NAN)]
    cots = [torch.nan_to_num(c).double() for c in _cotangents(batches, 5)]
    xf = torch.cat([b[0] for b in batches]).requires_grad_()
    wf = torch.linspace(0.5, 1.5, C, dtype=torch.float64, requires_grad=True)
    bf = torch.zeros(C, dtype=torch.float64, requires_grad=True)
    yf = _naive64(xf, torch.cat([b[1] for b in batches]), wf, bf)
    (gf,) = torch.autograd.grad(yf, xf, torch.cat(cots), create_graph=True)
    gf.square().sum().backward()
    lo = sum(_sizes(ws, None)[:rank])
    part = slice(lo, lo + batches[rank][0].shape[0])
    for composable in (False, True):
        bn = mnn.MaskedSyncBatchNorm(C, dtype=torch.float64)
        with torch.no_grad():
            bn.weight.copy_(wf)
        x, m = batches[rank]
        x = x.clone().requires_grad_()
        with _path(composable):
            y = bn(Masked(x, m))
            (g,) = torch.autograd.grad(y.data, x, cots[rank], create_graph=True)
            g.square().sum().backward()
        assert x.grad is not None and bn.weight.grad is not None
        torch.testing.assert_close(x.grad, xf.grad[part], atol=1e-9, rtol=1e-9)
        dist.all_reduce(bn.weight.grad)  # the local parts of d/dw
        assert wf.grad is not None
        torch.testing.assert_close(bn.weight.grad, wf.grad, atol=1e-9, rtol=1e-9)


def _cnn() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        mnn.PartialConv2d(2, 4, 3, padding=1),
        mnn.MaskedBatchNorm2d(4),
        mnn.Elementwise(nn.ReLU()),
        mnn.PartialConv2d(4, 6, 3, padding=1),
        mnn.MaskedBatchNorm2d(6, momentum=None),
        mnn.Elementwise(nn.ReLU()),
        mnn.MaskedGlobalAvgPool(),
        mnn.Unwrap(),
        nn.Linear(6, 3),
    )


def _cnn_batch(ws: int, step: int) -> list[tuple[Masked, torch.Tensor]]:
    g = torch.Generator().manual_seed(100 + step)
    out = []
    for r in range(ws):
        x = torch.randn(4, 2, 6, 6, generator=g) * (1 + r) + 2 * r
        m = torch.rand(4, 1, 6, 6, generator=g) > 0.3
        if r == 0:
            m[1] = False  # a fully masked image
        labels = torch.randint(0, 3, (4,), generator=g)
        out.append((Masked(torch.where(m, x, torch.tensor(NAN)), m), labels))
    return out


def _train_cnn(model: nn.Module, batches: Callable[[int], tuple[Masked, torch.Tensor]]) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for step in range(5):
        x, labels = batches(step)
        loss = F.cross_entropy(model(x), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()


def check_ddp_training(rank: int, ws: int) -> None:
    """5 DDP steps of a masked CNN: identical parameters and buffers on every rank, equal to one
    process trained on the whole batch (equal local batch sizes: DDP's mean of the local mean
    losses is the mean loss of the whole batch)."""
    model = DDP(mnn.MaskedSyncBatchNorm.convert_sync_batchnorm(_cnn()))
    _train_cnn(model, lambda step: _cnn_batch(ws, step)[rank])
    ref = _cnn()
    _train_cnn(ref, lambda step: _whole_cnn_batch(ws, step))
    state, want = model.module.state_dict(), ref.state_dict()
    assert state.keys() == want.keys()
    for key in state:
        torch.testing.assert_close(state[key], want[key], **TOL, msg=lambda s, k=key: f"{k}: {s}")
    flat = torch.cat([t.reshape(-1).double() for t in state.values()])
    every = [torch.empty_like(flat) for _ in range(ws)]
    dist.all_gather(every, flat)
    assert all(torch.equal(every[0], t) for t in every[1:]), "the ranks ended with different parameters"


def _whole_cnn_batch(ws: int, step: int) -> tuple[Masked, torch.Tensor]:
    parts = _cnn_batch(ws, step)
    x = Masked(torch.cat([p[0].data for p in parts]), torch.cat([p[0].mask for p in parts]))
    return x, torch.cat([p[1] for p in parts])


def check_fsdp_training(rank: int, ws: int) -> None:
    """FSDP2 (fully_shard, parameters sharded over a CPU device mesh) trains the same masked CNN with
    MaskedSyncBatchNorm on gloo: the gathered parameters equal the single-process run."""
    import warnings

    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh("cpu", (ws,))
    model = mnn.MaskedSyncBatchNorm.convert_sync_batchnorm(_cnn())
    for layer in model:
        if any(True for _ in layer.parameters(recurse=False)):
            fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    with warnings.catch_warnings():
        # FSDP warns that PartialConv2d's output data is a view (in-place ops on it would skip
        # FSDP's hook); nothing here modifies it in place.
        warnings.filterwarnings("ignore", message=".*returned a view tensor")
        _train_cnn(model, lambda step: _cnn_batch(ws, step)[rank])
    ref = _cnn()
    _train_cnn(ref, lambda step: _whole_cnn_batch(ws, step))
    want = ref.state_dict()
    for key, t in model.state_dict().items():
        full = t.full_tensor() if hasattr(t, "full_tensor") else t  # DTensor shards: gather
        torch.testing.assert_close(full, want[key], **TOL, msg=lambda s, k=key: f"{k}: {s}")


def _worker(rank: int, ws: int) -> dict[str, str | None]:
    checks: dict[str, Callable[[], None]] = {
        "matches_single_process": lambda: check_matches_single_process(rank, ws),
        "empty_rank": lambda: check_empty_rank(rank, ws),
        "momentum_none": lambda: check_momentum_none_skips_empty_global_batches(rank, ws),
        "groups_of_one": lambda: check_groups_of_one_communicate_nothing(rank, ws),
        "half_precision": lambda: check_half_precision(rank, ws),
        "precision": lambda: check_precision_far_from_zero(rank, ws),
        "double_backward": lambda: check_double_backward(rank, ws),
        "ddp_training": lambda: check_ddp_training(rank, ws),
        "fsdp_training": lambda: check_fsdp_training(rank, ws),
    }
    if ws == 3:
        checks["subgroup"] = lambda: check_subgroup(rank, ws)
    return run_checks(checks)


@pytest.fixture(scope="module", params=[2, 3], ids=["2-ranks", "3-ranks"])
def ranks(request: pytest.FixtureRequest) -> tuple[int, dict[str, list[str | None]]]:
    ws: int = request.param
    return ws, run_ranks(_worker, ws)


@pytest.mark.parametrize(
    "check",
    [
        "matches_single_process",
        "empty_rank",
        "momentum_none",
        "groups_of_one",
        "half_precision",
        "precision",
        "double_backward",
        "ddp_training",
        "fsdp_training",
        "subgroup",
    ],
)
def test_distributed(ranks: tuple[int, dict[str, list[str | None]]], check: str) -> None:
    ws, results = ranks
    if check not in results:
        assert check == "subgroup" and ws == 2
        return
    failures = [f"rank {r}:\n{err}" for r, err in enumerate(results[check]) if err is not None]
    assert not failures, "\n".join(failures)


def _compile_worker(rank: int, ws: int) -> dict[str, str | None]:
    def check() -> None:
        """torch.compile(dynamic=True) traces MaskedSyncBatchNorm with its collectives (dynamo turns
        them into functional collectives): equal to eager in outputs, gradients and running
        statistics, and no recompilation for a new mask or another image size."""
        from torch._dynamo.testing import CompileCounterWithBackend

        counter = CompileCounterWithBackend("aot_eager")
        eager, compiled = mnn.MaskedSyncBatchNorm(C), mnn.MaskedSyncBatchNorm(C)
        _init(eager)
        _init(compiled)
        run = torch.compile(compiled, backend=counter, dynamic=True)
        first = 0
        for seed, hw in ((1, (H, W)), (2, (H, W)), (3, (9, 11))):
            x, m = _batches(ws, seed, True, NAN, hw=hw)[rank]
            xe, xc = x.clone().requires_grad_(), x.clone().requires_grad_()
            ye, yc = eager(Masked(xe, m)), run(Masked(xc, m))
            ye.data.sum().backward()
            yc.data.sum().backward()
            torch.testing.assert_close(yc.data, ye.data, **TOL)
            assert xe.grad is not None and xc.grad is not None
            torch.testing.assert_close(xc.grad, xe.grad, **TOL)
            torch.testing.assert_close(compiled.running_var, eager.running_var, **TOL)
            # (the first compile may call the backend twice: dynamo restarts once to specialize
            # a Python float)
            first = first or counter.frame_count
        assert counter.frame_count == first, f"recompiled: {counter.frame_count} compiles, {first} at first"

    return run_checks({"compile": check})


@pytest.mark.compile
def test_compiled_across_ranks() -> None:
    results = run_ranks(_compile_worker, 2)
    failures = [f"rank {r}:\n{err}" for r, err in enumerate(results["compile"]) if err is not None]
    assert not failures, "\n".join(failures)


def _cuda_worker(rank: int, ws: int) -> dict[str, str | None]:
    def check() -> None:
        """On CUDA (the composable path: plain ops, gloo all-reduces of CUDA tensors; both ranks
        share the one GPU, which NCCL would refuse): DDP training steps equal one process's
        MaskedBatchNorm2d on the whole batch."""
        dev = torch.device("cuda", 0)
        torch.cuda.set_device(dev)
        sync, ref = mnn.MaskedSyncBatchNorm(C).to(dev), mnn.MaskedBatchNorm2d(C).to(dev)
        _init(sync)
        _init(ref)
        ddp = DDP(sync, device_ids=[0])
        for step in range(3):
            batches = [(x.to(dev), m.to(dev)) for x, m in _batches(ws, step, True, NAN)]
            cots = [c.to(dev) for c in _cotangents(batches, step)]
            x, m = batches[rank]
            x = x.clone().requires_grad_()
            y = ddp(Masked(x, m))
            y.data.backward(cots[rank])
            xf = torch.cat([b[0] for b in batches]).requires_grad_()
            yf = ref(Masked(xf, torch.cat([b[1] for b in batches])))
            yf.data.backward(torch.cat(cots))
            lo = sum(_sizes(ws, None)[:rank])
            part = slice(lo, lo + x.shape[0])
            assert y.data.is_cuda and x.grad is not None and xf.grad is not None
            torch.testing.assert_close(y.data, yf.data[part], **TOL)
            torch.testing.assert_close(x.grad, xf.grad[part], **TOL)
            torch.testing.assert_close(sync.weight.grad * ws, ref.weight.grad, **TOL)
            torch.testing.assert_close(sync.running_var, ref.running_var, **TOL)
            ddp.zero_grad()
            ref.zero_grad()

    return run_checks({"cuda": check})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_across_ranks() -> None:
    results = run_ranks(_cuda_worker, 2)
    failures = [f"rank {r}:\n{err}" for r, err in enumerate(results["cuda"]) if err is not None]
    assert not failures, "\n".join(failures)


# ------------------------------------------------------------ single process
def test_without_a_process_group_it_is_masked_batch_norm() -> None:
    assert not dist.is_initialized()
    torch.manual_seed(0)
    sync, ref = mnn.MaskedSyncBatchNorm(C, momentum=None), mnn.MaskedBatchNorm2d(C, momentum=None)
    _init(sync)
    _init(ref)
    for step in range(2):
        x, m = _batches(1, step, True, NAN)[0]
        assert torch.equal(sync(Masked(x, m)).data, ref(Masked(x, m)).data)
    assert torch.equal(sync.running_var, ref.running_var) and sync.num_batches_tracked == 2
    sync.eval()
    ref.eval()
    assert torch.equal(sync(Masked(x, m)).data, ref(Masked(x, m)).data)
    y = mnn.MaskedSyncBatchNorm(3)(Masked(torch.randn(5, 3), torch.rand(5, 3) > 0.3))  # (N, C) too
    assert y.data.shape == (5, 3)


def test_errors_name_the_layer() -> None:
    bn = mnn.MaskedSyncBatchNorm(3)
    with pytest.raises(ValueError, match=r"MaskedSyncBatchNorm: expected data \(N, 3, \*\).*\(2, 4, 5\)"):
        bn(Masked(torch.randn(2, 4, 5)))
    with pytest.raises(ValueError, match=r"MaskedSyncBatchNorm: expected data \(N, 3, \*\).*\(3,\)"):
        bn(torch.randn(3))
    with pytest.raises(TypeError, match="MaskedSyncBatchNorm: data .* is torch.float64"):
        bn(torch.randn(2, 3, 4, dtype=torch.float64))
    with pytest.raises(TypeError, match="MaskedSyncBatchNorm: expected data as a torch.Tensor"):
        bn("x")
    with pytest.raises(ValueError, match="MaskedSyncBatchNorm: expected num_features as an int >= 1"):
        mnn.MaskedSyncBatchNorm(0)
    with pytest.raises(TypeError, match=r"MaskedSyncBatchNorm: expected process_group .* got list"):
        mnn.MaskedSyncBatchNorm(3, process_group=[0, 1])
    with pytest.raises(TypeError, match=r"masked_sync_batch_norm: expected process_group .* got str"):
        MF.masked_sync_batch_norm(torch.randn(2, 3), torch.ones(2, 3, dtype=torch.bool), process_group="all")


def _masked_model() -> nn.Sequential:
    torch.manual_seed(0)
    inner = nn.Sequential(mnn.PartialConv2d(4, 4, 3, padding=1), mnn.MaskedBatchNorm3d(4))
    return nn.Sequential(
        mnn.PartialConv2d(2, 4, 3, padding=1),
        mnn.MaskedBatchNorm2d(4, eps=1e-3, momentum=None),
        nn.ModuleDict({"block": inner, "norm1d": mnn.MaskedBatchNorm1d(4, affine=False)}),
        mnn.MaskedBatchNorm2d(4, track_running_stats=False),
        nn.BatchNorm2d(4),  # plain: left alone
    )


@pytest.fixture
def solo_group() -> Iterator[Any]:
    """A gloo process group of this one process (an in-memory store), destroyed afterwards."""
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        yield dist.group.WORLD
    finally:
        dist.destroy_process_group()


def test_convert_sync_batchnorm_keeps_tensors_config_and_state_dict(solo_group: Any) -> None:
    model = _masked_model()
    model[:2](Masked(torch.randn(2, 2, 5, 5), torch.rand(2, 1, 5, 5) > 0.3))  # non-default buffers
    model[1].eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    old = {n: (m, dict(m.named_parameters()), dict(m.named_buffers())) for n, m in model.named_modules()}
    group = solo_group
    converted = mnn.MaskedSyncBatchNorm.convert_sync_batchnorm(model, process_group=group)
    assert converted is model
    kinds = {name: type(m).__name__ for name, m in converted.named_modules()}
    for name in ("1", "2.block.1", "2.norm1d", "3"):
        assert kinds[name] == "MaskedSyncBatchNorm", name
        new = converted.get_submodule(name)
        was, params, buffers = old[name]
        assert new.process_group is group
        for attr in ("num_features", "eps", "momentum", "affine", "track_running_stats", "training"):
            assert getattr(new, attr) == getattr(was, attr), (name, attr)
        for key, t in [*params.items(), *buffers.items()]:
            assert getattr(new, key) is t, (name, key)  # the very tensors: optimizers keep working
    assert kinds["4"] == "BatchNorm2d" and kinds["0"] == "PartialConv2d"
    assert converted[1].training is False and converted[3].training is True
    state = converted.state_dict()
    assert state.keys() == before.keys() and all(torch.equal(state[k], before[k]) for k in state)
    _masked_model().load_state_dict(state)  # and back
    converted.load_state_dict(_masked_model().state_dict())
    single = mnn.MaskedSyncBatchNorm.convert_sync_batchnorm(mnn.MaskedBatchNorm1d(3))
    assert isinstance(single, mnn.MaskedSyncBatchNorm)


def test_converted_model_matches_the_original_without_a_process_group() -> None:
    x = Masked(torch.randn(3, 2, 5, 5), torch.rand(3, 1, 5, 5) > 0.3)
    original = nn.Sequential(_masked_model()[0], _masked_model()[1])
    converted = mnn.MaskedSyncBatchNorm.convert_sync_batchnorm(_masked_model()[:2])
    for _ in range(2):
        assert torch.equal(converted(x).data, original(x).data)


def test_torch_converter_on_a_masknn_model_fails_at_first_forward_naming_ours() -> None:
    # torch's converter matches every _BatchNorm subclass, ours included, and builds an unmasked
    # nn.SyncBatchNorm: the Masked it then receives refuses with a message pointing to our converter.
    for model in (_masked_model()[:2], mnn.MaskedSyncBatchNorm.convert_sync_batchnorm(_masked_model()[:2])):
        trapped = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        assert type(trapped[1]) is nn.SyncBatchNorm
        x = Masked(torch.randn(2, 2, 5, 5), torch.rand(2, 1, 5, 5) > 0.3)
        for mode in (trapped.train, trapped.eval):
            mode()
            with pytest.raises(AttributeError, match=r"nn\.MaskedSyncBatchNorm\.convert_sync_batchnorm"):
                trapped(x)


def test_masked_refuses_tensor_attributes_with_a_hint() -> None:
    x = Masked(torch.randn(2, 3), torch.rand(2, 3) > 0.5)
    assert not hasattr(x, "dim") and not hasattr(x, "no_such_thing")
    with pytest.raises(AttributeError, match=r"'Masked' object has no attribute 'dim': .*\.filled"):
        x.dim()
    with pytest.raises(AttributeError, match=r"the plain layer LayerNormish was given one"):

        class LayerNormish(nn.Module):
            def forward(self, t: Any) -> Any:
                return t.softmax(-1)

        LayerNormish()(x)
    with pytest.raises(AttributeError, match=r"^'Masked' object has no attribute 'no_such_thing'$"):
        x.no_such_thing  # noqa: B018
