"""masknn.convert meets synchronized batch norm: converted models trained across processes.

Three orders give a converted model whose batch norms synchronize masked statistics:

* (a) ``MaskedSyncBatchNorm.convert_sync_batchnorm(masknn.convert(model))``, under DDP;
* (b) ``masknn.convert(nn.SyncBatchNorm.convert_sync_batchnorm(model))`` (DDP refuses CPU
  models holding ``nn.SyncBatchNorm``: its gradients are averaged by hand here);
* (c) torch's converter applied after masknn.convert, then masknn's.

On 2 processes (gloo, tests/multiprocess.py) each rank's outputs, input gradients,
parameter gradients (averaged over ranks) and running statistics equal one process's
converted model on the concatenated batch; NaN at masked positions changes nothing, bit
for bit. Single-process tests cover what is kept (classes, tensors, state_dict keys) and
what refuses (torch's converter after masknn.convert).
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import pickle
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel as DDP

import masknn
from masknn import Masked
from masknn import nn as mnn
from masknn.convert import ConversionError, is_converted
from masknn.convert._sync import is_synced
from masknn.functional._select import composable_only
from tests.multiprocess import run_checks, run_ranks

NAN = float("nan")
TOL = {"atol": 1e-5, "rtol": 1e-5}
SIZES = (3, 2)  # samples per rank (distinct: a coincidence of sizes would hide a slicing error)
CPU = torch.device("cpu")
HAS_TORCHVISION = importlib.util.find_spec("torchvision") is not None


# ------------------------------------------------------------------------ the model
class FusedBNAct(nn.BatchNorm2d):
    """A batch norm fused with its activation that calls ``F.batch_norm`` itself, as timm's
    ``BatchNormAct2d`` does (torch's converter would replace it by a plain SyncBatchNorm and
    drop the activation)."""

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            self.num_batches_tracked.add_(1)
        y = F.batch_norm(
            x, self.running_mean, self.running_var, self.weight, self.bias, self.training, 0.1, self.eps
        )
        return F.relu(y)


class Net(nn.Module):
    """A plain CNN: conv/BN/ReLU, a residual block (``+=``), a BN with momentum=None, global
    average pooling, a BatchNorm1d on features; with ``fused``, a fused BN+activation."""

    def __init__(self, fused: bool) -> None:
        super().__init__()
        self.stem = nn.Conv2d(2, 6, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(6)
        self.conv1 = nn.Conv2d(6, 6, 3, padding=1, bias=False)
        self.bn1: nn.Module = FusedBNAct(6) if fused else nn.Sequential(nn.BatchNorm2d(6), nn.ReLU())
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(6, momentum=None)
        self.fc1 = nn.Linear(6, 8)
        self.bn3 = nn.BatchNorm1d(8)
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn0(self.stem(x)))
        y = self.bn2(self.conv2(self.bn1(self.conv1(x))))
        y += x
        z = torch.flatten(F.adaptive_avg_pool2d(F.relu(y), 1), 1)
        return self.fc2(F.relu(self.bn3(self.fc1(z))))


def _net(fused: bool = True) -> Net:
    torch.manual_seed(0)
    return Net(fused)


def _batches(
    step: int, fill: float, shape: tuple[int, int, int] = (2, 6, 6)
) -> list[tuple[Tensor, Tensor, Tensor]]:
    """Every rank's (data, mask, cotangent of the logits): different distributions per rank, a
    fully masked sample on rank 0, ``fill`` at masked positions."""
    g = torch.Generator().manual_seed(100 + step)
    out = []
    for r, n in enumerate(SIZES):
        x = torch.randn(n, *shape, generator=g) * (1 + r) + 2 * r
        m = torch.rand(n, 1, *shape[1:], generator=g) > 0.3
        if r == 0:
            m[0] = False
        cot = torch.randn(n, 3, generator=g)
        out.append((torch.where(m, x, torch.tensor(fill)), m, cot))
    return out


def _batch_norms(model: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}


@contextmanager
def _no_collectives() -> Iterator[None]:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a collective was called")

    saved = dist.all_reduce, dist.all_gather
    dist.all_reduce = dist.all_gather = refuse  # type: ignore[assignment]
    try:
        yield
    finally:
        dist.all_reduce, dist.all_gather = saved


@contextmanager
def _path(composable: bool) -> Iterator[None]:
    if composable:
        with composable_only():
            yield
    else:
        yield


# ------------------------------------------------------------------- the orders
def _synced(order: str, net: nn.Module, group: Any = None) -> nn.Module:
    """The converted model with synchronized batch norms, in the given order, over ``group``."""
    if order == "a":  # masknn's converter after masknn.convert, on a container holding the model
        holder = nn.ModuleDict({"net": masknn.convert(net)})
        return mnn.MaskedSyncBatchNorm.convert_sync_batchnorm(holder, group)["net"]
    if order == "b":  # torch's converter before masknn.convert
        return masknn.convert(nn.SyncBatchNorm.convert_sync_batchnorm(net, group))
    if order == "c":  # torch's converter after masknn.convert (which alone refuses), then masknn's
        converted = nn.SyncBatchNorm.convert_sync_batchnorm(masknn.convert(net))
        return mnn.MaskedSyncBatchNorm.convert_sync_batchnorm(converted, group)
    raise AssertionError(order)


def _train_against_reference(
    rank: int,
    ws: int,
    order: str,
    *,
    fill: float = NAN,
    composable: bool = False,
    build: Callable[[], nn.Module] = _net,
    shape: tuple[int, int, int] = (2, 6, 6),
    steps: int = 3,
    tol: dict[str, float] = TOL,
    dtype: torch.dtype = torch.float32,
    device: torch.device = CPU,
) -> list[Tensor]:
    """``steps`` SGD steps of the synchronized converted model on this rank's batch against the
    converted model in one process on the whole batch; returns what this rank computed."""
    # order b: an explicit group of every rank (the group an nn.SyncBatchNorm holds, kept by
    # masknn.convert's copy of the model); the others: the default group
    group = dist.new_group(list(range(ws))) if order == "b" else None
    model = _synced(order, build().to(device, dtype), group)
    for bn in _batch_norms(model).values():
        assert is_synced(bn) or is_converted(bn), "a batch norm is not synchronized"
    ref = masknn.convert(build().to(device, dtype))
    ddp = None
    if device.type == "cuda":
        ddp = DDP(model, device_ids=[device.index])
    elif order == "a":  # DDP refuses CPU models holding nn.SyncBatchNorm (orders b and c)
        ddp = DDP(model)
    run = ddp if ddp is not None else model
    # DDP averages the ranks' parameter gradients (the whole batch's over ws): ws times the rate
    opt = torch.optim.SGD(model.parameters(), lr=0.1 * ws)
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    lo = sum(SIZES[:rank])
    part = slice(lo, lo + SIZES[rank])
    seen: list[Tensor] = []
    for step in range(steps):
        batches = [
            (x.to(device, dtype), m.to(device), c.to(device, dtype))
            for x, m, c in _batches(step, fill, shape)
        ]
        x, m, cot = batches[rank]
        x = x.clone().requires_grad_()
        with _path(composable):
            out = run(Masked(x, m))
            (out.data * cot).sum().backward()
        if ddp is None:
            for p in model.parameters():
                assert p.grad is not None
                dist.all_reduce(p.grad)
                p.grad /= ws
        xf = torch.cat([b[0] for b in batches]).requires_grad_()
        ref_out = ref(Masked(xf, torch.cat([b[1] for b in batches])))
        (ref_out.data * torch.cat([b[2] for b in batches])).sum().backward()
        assert torch.equal(out.mask, ref_out.mask[part])
        torch.testing.assert_close(out.data, ref_out.data[part], **tol)
        assert x.grad is not None and xf.grad is not None
        torch.testing.assert_close(x.grad, xf.grad[part], **tol)
        assert bool((x.grad[~m.expand(x.shape)] == 0).all()) and bool(x.grad.isfinite().all())
        got, want = dict(model.named_parameters()), dict(ref.named_parameters())
        assert got.keys() == want.keys()
        for name, p in got.items():
            assert p.grad is not None
            torch.testing.assert_close(
                p.grad * ws, want[name].grad, **tol, msg=lambda s, k=name: f"{k}.grad: {s}"
            )
        got_b, want_b = dict(model.named_buffers()), dict(ref.named_buffers())
        assert got_b.keys() == want_b.keys()
        for name, t in got_b.items():
            torch.testing.assert_close(t, want_b[name], **tol, msg=lambda s, k=name: f"{k}: {s}")
        seen += [out.data, x.grad, *(p.grad.clone() for p in got.values() if p.grad is not None)]
        seen += [t.clone() for t in got_b.values()]
        opt.step()
        ref_opt.step()
        opt.zero_grad()
        ref_opt.zero_grad()
    # identical parameters and buffers on every rank
    flat = torch.cat([t.detach().reshape(-1).double().cpu() for t in model.state_dict().values()])
    every = [torch.empty_like(flat) for _ in range(ws)]
    dist.all_gather(every, flat)
    assert all(torch.equal(every[0], t) for t in every[1:]), "the ranks ended with different parameters"
    # eval: the running statistics, no communication
    model.eval()
    ref.eval()
    x, m, _ = _batches(99, fill, shape)[rank]
    x, m = x.to(device, dtype), m.to(device)
    with torch.no_grad(), _no_collectives(), _path(composable):
        out = model(Masked(x, m))
    with torch.no_grad():
        want_out = ref(Masked(x, m))
    torch.testing.assert_close(out.data, want_out.data, **tol)
    return seen


def check_order_a(rank: int, ws: int) -> None:
    """Convert, then MaskedSyncBatchNorm.convert_sync_batchnorm, under DDP; masked positions
    inert (NaN and 1e30 give the same bits)."""
    with_nan = _train_against_reference(rank, ws, "a", fill=NAN)
    with_huge = _train_against_reference(rank, ws, "a", fill=1e30)
    assert len(with_nan) == len(with_huge)
    assert all(torch.equal(a, b) for a, b in zip(with_nan, with_huge)), "a masked value changed a result"


def check_order_a_composable(rank: int, ws: int) -> None:
    _train_against_reference(rank, ws, "a", composable=True)


def check_order_b(rank: int, ws: int) -> None:
    """torch's converter, then convert: the nn.SyncBatchNorm layers synchronize masked statistics."""
    build = functools.partial(_net, False)
    for composable in (False, True):
        _train_against_reference(rank, ws, "b", build=build, composable=composable)


def check_order_c(rank: int, ws: int) -> None:
    _train_against_reference(rank, ws, "c", build=functools.partial(_net, False))


def check_ddp_refuses_cpu_models_with_torch_sync_batch_norm(rank: int, ws: int) -> None:
    """Why order (b) is trained without DDP here: torch's DDP refuses CPU models holding an
    nn.SyncBatchNorm, converted or not (order (a) keeps the plain classes and trains under DDP)."""
    model = _synced("b", _net(False))
    with pytest.raises(ValueError, match="SyncBatchNorm layers only work with GPU modules"):
        DDP(model)


def check_torch_converter_after_convert_refuses(rank: int, ws: int) -> None:
    """On 2 real ranks: torch's converter applied to a converted model refuses at the first
    training forward, before any collective, with masknn's error (not torch's "expected input
    tensor to be on GPU"); masknn's converter then makes the same model work."""
    model = nn.SyncBatchNorm.convert_sync_batchnorm(masknn.convert(_net(False)))
    x, m, _ = _batches(0, NAN)[rank]
    with pytest.raises(ConversionError, match=r"(?s)'bn0'.*MaskedSyncBatchNorm.convert_sync_batchnorm"):
        model(Masked(x, m))
    model = mnn.MaskedSyncBatchNorm.convert_sync_batchnorm(model)
    assert bool(model(Masked(x, m)).data.isfinite().all())


def check_resnet18(rank: int, ws: int) -> None:
    """torchvision's resnet18 (random weights), converted and synchronized, 32x32, under DDP.

    In float64: at 32x32 its last stage has 1x1 maps, so those batch norms take statistics over
    3 values (one sample is fully masked), which amplifies rounding differences between the
    merged per-rank statistics and the single-process ones about 1e9-fold (float32: up to 6 %
    in conv1's weight gradient; float64: 3e-7)."""
    from tests.convert import _torchvision_shim

    _torchvision_shim.install()
    from torchvision.models import resnet18

    def build() -> nn.Module:
        torch.manual_seed(0)
        return resnet18(num_classes=3)

    _train_against_reference(
        rank,
        ws,
        "a",
        build=build,
        shape=(3, 32, 32),
        steps=1,
        tol={"atol": 1e-6, "rtol": 1e-5},
        dtype=torch.float64,
    )


def _worker(rank: int, ws: int) -> dict[str, str | None]:
    checks: dict[str, Callable[[], None]] = {
        "order_a": lambda: check_order_a(rank, ws),
        "order_a_composable": lambda: check_order_a_composable(rank, ws),
        "order_b": lambda: check_order_b(rank, ws),
        "order_c": lambda: check_order_c(rank, ws),
        "ddp_refuses_torch_sync_bn_on_cpu": lambda: check_ddp_refuses_cpu_models_with_torch_sync_batch_norm(
            rank, ws
        ),
        "torch_converter_after_refuses": lambda: check_torch_converter_after_convert_refuses(rank, ws),
    }
    if HAS_TORCHVISION:
        checks["resnet18"] = lambda: check_resnet18(rank, ws)
    return run_checks(checks)


def _cuda_worker(rank: int, ws: int) -> dict[str, str | None]:
    """On CUDA, under DDP in both orders (DDP accepts nn.SyncBatchNorm on GPUs): the composable
    path, gloo all-reduces of CUDA tensors (both ranks share the one GPU, which NCCL refuses)."""
    dev = torch.device("cuda", 0)
    torch.cuda.set_device(dev)
    tol = {"atol": 1e-4, "rtol": 1e-4}  # CUDA reductions round in run-dependent order

    def order_a() -> None:
        _train_against_reference(rank, ws, "a", device=dev, tol=tol)

    def order_b() -> None:
        _train_against_reference(rank, ws, "b", build=functools.partial(_net, False), device=dev, tol=tol)

    return run_checks({"cuda_a": order_a, "cuda_b": order_b})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_converted_models_across_ranks() -> None:
    results = run_ranks(_cuda_worker, 2)
    failures = [
        f"{name}, rank {r}:\n{err}" for name, errs in results.items() for r, err in enumerate(errs) if err
    ]
    assert not failures, "\n".join(failures)


@pytest.fixture(scope="module")
def two_ranks() -> dict[str, list[str | None]]:
    return run_ranks(_worker, 2)


@pytest.mark.parametrize(
    "check",
    [
        "order_a",
        "order_a_composable",
        "order_b",
        "order_c",
        "ddp_refuses_torch_sync_bn_on_cpu",
        "torch_converter_after_refuses",
        "resnet18",
    ],
)
def test_across_two_ranks(two_ranks: dict[str, list[str | None]], check: str) -> None:
    if check == "resnet18" and not HAS_TORCHVISION:
        pytest.skip("torchvision is not installed (the models extra)")
    failures = [f"rank {r}:\n{err}" for r, err in enumerate(two_ranks[check]) if err is not None]
    assert not failures, "\n".join(failures)


# ------------------------------------------------------------------- one process
def _x(seed: int = 0, fill: float = NAN) -> Masked:
    x, m, _ = _batches(seed, fill)[0]
    return Masked(x, m)


@pytest.fixture
def solo_group() -> Iterator[Any]:
    """A gloo process group of this one process (an in-memory store), destroyed afterwards."""
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        yield dist.group.WORLD
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("order", ["a", "b", "c"])
def test_each_order_keeps_classes_tensors_and_state_dict(order: str) -> None:
    fused = order == "a"  # torch's converter (orders b and c) would drop FusedBNAct's activation
    net = _net(fused)
    converted = masknn.convert(net)
    model = _synced(order, net)
    assert is_converted(model) and type(model) is Net
    kinds = {name: type(m) for name, m in _batch_norms(model).items()}
    if order == "a":
        assert kinds == {
            "bn0": nn.BatchNorm2d,
            "bn1": FusedBNAct,
            "bn2": nn.BatchNorm2d,
            "bn3": nn.BatchNorm1d,
        }
    else:
        assert set(kinds.values()) == {nn.SyncBatchNorm}
    assert all(is_synced(bn) for bn in _batch_norms(model).values())
    assert list(model.state_dict()) == list(net.state_dict())
    model.load_state_dict(net.state_dict())
    net.load_state_dict(model.state_dict())
    # without a process group there is nothing to synchronize: the converted model, exactly
    for step in range(2):
        x = _x(step)
        assert torch.equal(model(x).data, converted(x).data)
    for key, t in model.state_dict().items():
        assert torch.equal(t, converted.state_dict()[key]), key


def test_in_place_on_the_converted_model() -> None:
    converted = masknn.convert(_net())
    params = dict(converted.named_parameters())
    out = mnn.MaskedSyncBatchNorm.convert_sync_batchnorm(converted)
    assert out is converted and all(p is params[n] for n, p in out.named_parameters())
    assert is_synced(out.bn1) and not is_synced(out.stem)


def test_synchronizing_again_replaces_the_group(solo_group: Any) -> None:
    other = dist.new_group([0])
    model = mnn.MaskedSyncBatchNorm.convert_sync_batchnorm(masknn.convert(_net()))
    mnn.MaskedSyncBatchNorm.convert_sync_batchnorm(model, process_group=other)
    fwd = model.bn0.forward
    assert isinstance(fwd, functools.partial) and fwd.args[1] is other and fwd.args[2] is None
    with _no_collectives():  # a group of one process: nothing to communicate
        assert torch.equal(model(_x()).data, masknn.convert(_net())(_x()).data)
    with pytest.raises(
        TypeError, match=r"MaskedSyncBatchNorm.convert_sync_batchnorm: expected process_group"
    ):
        mnn.MaskedSyncBatchNorm.convert_sync_batchnorm(model, process_group=[0])


def test_convert_shares_the_process_groups_it_cannot_copy(solo_group: Any) -> None:
    """masknn.convert copies the model, but a process group cannot be copied (copy.deepcopy of
    an nn.SyncBatchNorm holding one fails): the copy shares it."""
    group = dist.new_group([0])
    net = nn.SyncBatchNorm.convert_sync_batchnorm(_net(False), process_group=group)
    with pytest.raises(TypeError, match="pickle"):
        copy.deepcopy(net)
    model = masknn.convert(net)
    assert model.bn0.process_group is group and model.bn0 is not net.bn0
    with _no_collectives():
        assert torch.equal(model(_x()).data, masknn.convert(_net(False))(_x()).data)


@pytest.mark.parametrize("order", ["a", "b"])
def test_a_group_of_one_process_is_the_masked_batch_norm(order: str, solo_group: Any) -> None:
    model, ref = _synced(order, _net(False)), masknn.convert(_net(False))
    with _no_collectives():
        for step in range(2):
            x = _x(step)
            assert torch.equal(model(x).data, ref(x).data)
    model.eval()
    ref.eval()
    assert torch.equal(model(_x(5)).data, ref(_x(5)).data)


def test_the_model_itself_a_batch_norm() -> None:
    x = Masked(torch.randn(4, 3, 2, 2), torch.rand(4, 1, 2, 2) > 0.3)
    ref = masknn.convert(nn.BatchNorm2d(3))(x).data
    for model in (
        mnn.MaskedSyncBatchNorm.convert_sync_batchnorm(masknn.convert(nn.BatchNorm2d(3))),
        masknn.convert(nn.SyncBatchNorm(3)),
    ):
        fwd = model.forward
        assert isinstance(fwd, functools.partial) and is_converted(model)
        assert fwd.args[2].func.__name__ == "synced_forward"  # inside the converted forward
        assert torch.equal(model(x).data, ref)


def test_a_batch_norm_called_with_plain_tensors_runs_as_it_is() -> None:
    for order in ("a", "b"):
        model = _synced(order, _net(False))
        x = torch.randn(3, 6, 4, 4)
        y = model.bn0(x)
        assert type(y) is Tensor
        torch.testing.assert_close(y, nn.BatchNorm2d(6)(x))


def test_copies_stay_synchronized() -> None:
    model = _synced("a", _net())
    for twin in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        fwd = twin.bn1.forward
        assert is_synced(twin.bn1) and isinstance(fwd, functools.partial) and fwd.args[0] is twin.bn1
        assert torch.equal(twin(_x()).data, _synced("a", _net())(_x()).data)


class SyncBatchNormAct(nn.SyncBatchNorm):
    """As timm's SyncBatchNormAct: a forward of its own around torch's."""

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(super().forward(x))


def _as_on_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on nn.SyncBatchNorm takes its synchronized path on CPU: the device check accepts
    "cpu" and the group counts 2 processes (what a GPU run with 2 ranks does; the first
    statistics call comes before any communication)."""
    monkeypatch.setattr(torch._C, "_get_privateuse1_backend_name", lambda: "cpu")
    monkeypatch.setattr(dist, "get_world_size", lambda group=None: 2)


def test_torch_converter_after_convert_is_masked_or_refuses(solo_group: Any) -> None:
    """torch's converter on a converted model replaces the batch norms by nn.SyncBatchNorm
    layers that masknn.convert never saw: they compute masked statistics where they do not
    synchronize and refuse where they would, never an unmasked result."""
    x = _x(fill=NAN)
    trapped = nn.SyncBatchNorm.convert_sync_batchnorm(masknn.convert(_net(False)))
    ref = masknn.convert(_net(False)).eval()
    assert not any(is_synced(bn) for bn in _batch_norms(trapped).values())
    trapped.eval()  # no synchronization in eval: the masked batch norm
    out = trapped(x)
    assert bool(out.data.isfinite().all())
    torch.testing.assert_close(out.data, ref(x).data)
    trapped.train()  # torch's own refusal of CPU tensors (DDP refuses such a CPU model earlier)
    with pytest.raises(ValueError, match="SyncBatchNorm expected input tensor to be on GPU"):
        trapped(x)


def test_torch_sync_path_refuses_naming_the_fix(solo_group: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where torch would synchronize (training, a group of 2 processes), an nn.SyncBatchNorm that
    masknn did not set up refuses before the model runs, naming the layer and the fix."""
    models = {
        "bn0": nn.SyncBatchNorm.convert_sync_batchnorm(masknn.convert(_net(False))),  # torch's after
        "1": masknn.convert(nn.Sequential(nn.Conv2d(2, 4, 3), SyncBatchNormAct(4))),  # own forward
        "": nn.SyncBatchNorm.convert_sync_batchnorm(masknn.convert(nn.BatchNorm2d(2))),  # not converted
    }
    assert not is_synced(models["1"][1])
    x = _x()
    _as_on_gpu(monkeypatch)
    for name, model in models.items():
        if not is_converted(model):  # torch's converter replaced the root: a plain layer again
            assert type(model) is nn.SyncBatchNorm
            continue
        before = {k: t.clone() for k, t in model.state_dict().items()}
        where = "added after masknn.convert" if name == "bn0" else "has a forward of its own"
        with pytest.raises(
            ConversionError,
            match=rf"(?s)module '{name}' .*{where}.*MaskedSyncBatchNorm.convert_sync_batchnorm",
        ):
            model(x)
        after = model.state_dict()
        assert all(torch.equal(t, after[k]) for k, t in before.items()), "it ran before refusing"
        model.eval()  # eval mode never synchronizes: the masked batch norm, no refusal
        assert bool(model(x).data.isfinite().all())
    # order (c): masknn's converter takes the layers over, and the check passes
    fixed = mnn.MaskedSyncBatchNorm.convert_sync_batchnorm(models["bn0"].train())
    with _no_collectives(), pytest.raises(AssertionError, match="a collective was called"):
        fixed(x)  # it reached the synchronized statistics (2 processes claimed, 1 present)


def test_a_registered_handler_is_not_refused(solo_group: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fix the refusal suggests for a forward of its own: register a conversion for the class.
    The check then leaves that module (and what it holds) to the handler."""
    from masknn.convert import register_module, unregister
    from masknn.functional import masked_sync_batch_norm

    def handler(module: SyncBatchNormAct, x: Masked) -> Masked:
        y = masked_sync_batch_norm(
            x.data, x.mask, module.running_mean, module.running_var, module.weight, module.bias,
            0.1, module.eps, module.process_group,
        )  # fmt: skip
        return Masked(F.relu(y.data), y.mask)

    register_module(SyncBatchNormAct, handler)
    try:
        model = masknn.convert(nn.Sequential(nn.Conv2d(2, 4, 3), SyncBatchNormAct(4)))
    finally:
        unregister(SyncBatchNormAct)
    _as_on_gpu(monkeypatch)
    with _no_collectives(), pytest.raises(AssertionError, match="a collective was called"):
        model(_x())  # past the check, into the handler's synchronized statistics


def test_the_op_level_hint_when_the_check_is_bypassed(
    solo_group: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under torch.compile the check does not run; torch's statistics kernel then meets the
    carrier and refuses with a hint naming the fix (never an unmasked result)."""
    from masknn.convert import _sync

    model = nn.SyncBatchNorm.convert_sync_batchnorm(masknn.convert(_net(False)))
    _as_on_gpu(monkeypatch)
    monkeypatch.setattr(_sync, "check_followed", lambda root: None)
    with pytest.raises(
        ConversionError, match=r"(?s)batch_norm_stats.*MaskedSyncBatchNorm.convert_sync_batchnorm"
    ):
        model(_x())


@pytest.mark.compile
@pytest.mark.parametrize("order", ["a", "b"])
def test_compiles_to_one_graph(order: str) -> None:
    import torch._dynamo.utils as dyn

    def build() -> nn.Module:
        net = _net(False)
        # momentum=None computes 1 / num_batches_tracked from a tensor: torch.compile cannot
        # capture that in one graph, for the plain nn.BatchNorm2d either
        net.bn2.momentum = 0.1
        return _synced(order, net)

    torch._dynamo.reset()
    dyn.counters.clear()
    eager, compiled = build(), build()
    run = torch.compile(compiled, backend="eager", fullgraph=True)
    for step in range(3):
        a, b = eager(_x(step)), run(_x(step))
        torch.testing.assert_close(b.data, a.data)
        b.data.sum().backward()
    torch.testing.assert_close(compiled.bn2.running_var, eager.bn2.running_var)
    assert dyn.counters["stats"]["unique_graphs"] == 1
    assert sum(dyn.counters["graph_break"].values()) == 0
