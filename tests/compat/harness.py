"""The compatibility table's row type and one check per capability.

Every check takes a row and runs either the masknn op (``twin=False``) or the row's plain
PyTorch twin (``twin=True``, the evidence for an n/a cell) through the same steps, and
raises (``AssertionError`` or whatever PyTorch raised) when the capability fails.
"""

from __future__ import annotations

import copy
import io
import re
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from torch import Tensor, nn
from torch.utils import _pytree as pytree

from masknn import Masked

CAPABILITIES = ("compile", "export", "onnx", "vmap", "gradgrad", "autocast", "channels_last")

#: Builds a row's positional inputs: ``(n, grow, generator, hole) -> tuple``. ``n`` is the
#: batch size, ``grow`` is added to every spatial/time size (0 = the base size), masked data
#: positions hold ``hole`` (``None``: random finite values, for numerical gradients).
Builder = Callable[[int, int, torch.Generator, "float | None"], tuple[Any, ...]]


@dataclass(frozen=True)
class NA:
    """A cell that is not applicable because PyTorch's own twin cannot do it either.

    Attributes:
        reason: one line for the table.
        match: a substring of the error the twin raises in the same check (the evidence).
    """

    reason: str
    match: str


@dataclass
class CompatInfo:
    """One row of the compatibility table.

    Attributes:
        id: the row's name (test ids, the markdown table).
        covers: the public classes and functions the row runs. A function listed beside a
            Module must be called by that Module's forward (``test_table`` checks it).
        make: builds the layer: the masknn Module, or a plain Module that holds a functional
            op's parameters (the test seeds torch first).
        call: ``(layer, *inputs) -> output``: how the row runs the masknn op.
        inputs: the positional inputs (see :data:`Builder`).
        twin: ``(layer, *inputs) -> output`` of the plain PyTorch twin (same weights, the data
            taken as all valid), for autocast, channels_last and the n/a evidence.
        train: mode for compile, vmap, gradgrad, autocast and channels_last (export and ONNX
            always run in eval mode: deployment).
        backend: torch.compile backend; "inductor" for the main CNN and sequence ops.
        export_strict: export with ``strict=True`` (default: non-strict, torch's default).
        batch_dims: the batch dimension of each input (vmap), default 0 for every input.
        na: capability -> :class:`NA`.
        rtol, atol: float tolerance against eager (float32).
        fullgraph_na: set when the plain twin cannot be compiled with ``fullgraph=True``
            (the reason, and the error the twin raises): the compile cell then allows graph
            breaks, and still requires equal results and no recompilation for a new mask.
        dynamo_config: ``torch._dynamo.config`` settings for the compile cell (the recurrent
            rows set ``allow_rnn=True``, without which dynamo runs any nn.RNNBase eagerly).
        flat_outputs: return the outputs as a flat tuple of tensors (op rows). ``False`` for the
            carrier rows: their ``Masked`` inputs and outputs go through each capability as
            they are (the pytree handling of ``Masked`` is then part of the check).
    """

    id: str
    covers: tuple[Any, ...]
    make: Callable[[], nn.Module]
    call: Callable[..., Any]
    inputs: Builder
    twin: Callable[..., Any]
    train: bool = True
    backend: str = "aot_eager"
    export_strict: bool = False
    batch_dims: tuple[int, ...] | None = None
    na: dict[str, NA] = field(default_factory=dict)
    rtol: float = 1e-4
    atol: float = 1e-5
    flat_outputs: bool = True
    fullgraph_na: NA | None = None
    dynamo_config: dict[str, Any] = field(default_factory=dict)


class Op(nn.Module):
    """Runs a row's ``call`` (or ``twin``) on its layer; the layer's parameters are this Module's."""

    def __init__(self, layer: nn.Module, call: Callable[..., Any], flat: bool = True) -> None:
        super().__init__()
        self.layer = layer
        self._call = call
        self._flat = flat

    def forward(self, *inputs: Any) -> Any:
        out = self._call(self.layer, *inputs)
        return flatten(out) if self._flat else out


def flatten(out: Any) -> tuple[Tensor, ...]:
    """A layer's output as a flat tuple of tensors: ``Masked`` -> (data, mask); None dropped."""
    if out is None:
        return ()
    if isinstance(out, Tensor):
        return (out,)
    if isinstance(out, Masked):
        return (out.data, out.mask)
    if isinstance(out, (tuple, list)):
        flat: tuple[Tensor, ...] = ()
        for o in out:
            flat = flat + flatten(o)
        return flat
    raise TypeError(f"unexpected output type {type(out).__name__}")


def leaves(tree: Any) -> list[Tensor]:
    """The tensors of a pytree (a ``Masked`` counts as its data and mask)."""
    return [t for t in pytree.tree_leaves(tree) if isinstance(t, Tensor)]


def tmap(fn: Callable[[Tensor], Tensor], tree: Any) -> Any:
    """``fn`` on every tensor of a pytree of tensors, ``Masked`` and tuples."""
    if isinstance(tree, Tensor):
        return fn(tree)
    if isinstance(tree, Masked):
        return Masked(fn(tree.data), fn(tree.mask))
    if isinstance(tree, (tuple, list)):
        return type(tree)(tmap(fn, t) for t in tree)
    return tree


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def build(row: CompatInfo, twin: bool = False) -> Op:
    """The row's op (or twin) as a Module, seeded, in the row's mode."""
    torch.manual_seed(0)
    op = Op(row.make(), row.twin if twin else row.call, flat=row.flat_outputs)
    return op.train(row.train)


def make_inputs(
    row: CompatInfo, n: int = 2, grow: int = 0, seed: int = 0, twin: bool = False, finite: bool = False
) -> tuple[Any, ...]:
    """The row's inputs. Masked data positions hold NaN for the masknn op, random finite values
    for the twin (which takes the data as all valid) and with ``finite`` (numerical gradients)."""
    return row.inputs(n, grow, generator(seed), None if twin or finite else float("nan"))


def weighted_loss(outputs: Sequence[Tensor]) -> Tensor:
    """A scalar that depends on every float output element with distinct weights."""
    total = torch.zeros(())
    for t in outputs:
        if not t.is_floating_point():
            continue
        t = t.float()
        w = torch.arange(t.numel(), dtype=t.dtype, device=t.device).reshape(t.shape).mul(0.37).cos()
        total = total + (t * w).sum() + 0.5 * t.square().sum()
    return total


def assert_same(
    actual: Sequence[Tensor], expected: Sequence[Tensor], rtol: float, atol: float, what: str
) -> None:
    """Same number of tensors, same dtypes and shapes; bool exactly equal, floats close (NaN never)."""
    assert len(actual) == len(expected), f"{what}: {len(actual)} tensors, expected {len(expected)}"
    for i, (a, e) in enumerate(zip(actual, expected)):
        assert a.dtype == e.dtype, f"{what}[{i}]: dtype {a.dtype}, expected {e.dtype}"
        assert a.shape == e.shape, f"{what}[{i}]: shape {tuple(a.shape)}, expected {tuple(e.shape)}"
        if a.dtype == torch.bool or not a.is_floating_point():
            assert torch.equal(a, e), f"{what}[{i}]: {int((a != e).sum())} elements differ"
        else:
            torch.testing.assert_close(
                a, e, rtol=rtol, atol=atol, equal_nan=False, msg=lambda m, i=i: f"{what}[{i}]: {m}"
            )


def _masknn_frame(error: BaseException) -> str | None:
    """The last masknn source line an error names, in its message or its traceback."""
    named = [line.strip() for line in str(error).splitlines() if "masknn/" in line and ".py" in line]
    if named:
        line = re.sub(r'File "[^"]*?(masknn/[^"]+)", line (\d+), in (\w+)', r"\1:\2 in \3", named[-1])
        return re.sub(r"^Caused by: \((?:src/)?(.*)\)$", r"\1", line)
    frames = [f for f in traceback.extract_tb(error.__traceback__) if "/masknn/" in f.filename]
    if frames:
        frame = frames[-1]
        return f"{frame.filename.split('/src/')[-1]}:{frame.lineno} in {frame.name}"
    return None


def describe(error: BaseException) -> str:
    """The innermost cause of an error in one line, with the masknn line it points at."""
    chain = [error]
    while chain[-1].__cause__ is not None:
        chain.append(chain[-1].__cause__)
    root = chain[-1]
    lines = [line.strip() for line in str(root).splitlines() if line.strip()]
    text = f"{type(root).__name__}: {lines[0][:160] if lines else ''}"
    where = next((w for w in map(_masknn_frame, reversed(chain)) if w is not None), None)
    return text + (f" [at {where[:160]}]" if where else "")


@contextmanager
def step(what: str) -> Iterator[None]:
    """Reports an error raised inside as ``AssertionError("<what>: <innermost cause>")``."""
    try:
        yield
    except AssertionError:
        raise
    except Exception as error:
        raise AssertionError(f"{what}: {describe(error)}") from error


def _grads(tensors: Sequence[Tensor]) -> list[Tensor]:
    return [t.grad if t.grad is not None else torch.zeros_like(t) for t in tensors]


def _with_grad(inputs: tuple[Any, ...]) -> tuple[tuple[Any, ...], list[Tensor]]:
    """A copy of the inputs whose float tensors require grad, and those tensors."""
    copied = tmap(lambda t: t.detach().clone().requires_grad_(t.is_floating_point()), inputs)
    return copied, [t for t in leaves(copied) if t.requires_grad]


# ------------------------------------------------------------------------------- compile
#: (batch size, grow) of the compile check: a base size, a larger size, another batch size.
COMPILE_SIZES = ((2, 0), (2, 2), (3, 0))


def check_fullgraph(row: CompatInfo, twin: bool = False) -> None:
    """torch.compile(fullgraph=True) traces the op (or twin) in one graph (backend "eager")."""
    torch._dynamo.reset()
    compiled = torch.compile(build(row, twin), backend="eager", dynamic=True, fullgraph=True)
    with torch._dynamo.config.patch(**row.dynamo_config):
        compiled(*make_inputs(row, twin=twin))


def check_compile(row: CompatInfo, twin: bool = False) -> None:
    """torch.compile(dynamic=True, fullgraph=True) equals eager on three shapes; a new mask
    of an already seen shape compiles nothing new. Rows with ``fullgraph_na`` compile
    without ``fullgraph`` (graph breaks allowed, as for their twin)."""
    from torch._dynamo.testing import CompileCounterWithBackend

    torch._dynamo.reset()
    eager = build(row, twin)
    compiled_op = copy.deepcopy(eager)
    counter = CompileCounterWithBackend(row.backend)
    fullgraph = row.fullgraph_na is None
    compiled = torch.compile(compiled_op, backend=counter, dynamic=True, fullgraph=fullgraph)

    def step(n: int, grow: int, seed: int) -> None:
        inputs = make_inputs(row, n, grow, seed, twin)
        what = f"compile n={n} grow={grow} seed={seed}"
        ins_c, req_c = _with_grad(inputs)
        ins_e, req_e = _with_grad(inputs)
        for p in (*eager.parameters(), *compiled_op.parameters()):
            p.grad = None
        out_c = leaves(compiled(*ins_c))
        out_e = leaves(eager(*ins_e))
        assert_same(out_c, out_e, row.rtol, row.atol, f"{what}: outputs")
        assert_same(
            list(compiled_op.buffers()), list(eager.buffers()), row.rtol, row.atol, f"{what}: buffers"
        )
        loss_c, loss_e = weighted_loss(out_c), weighted_loss(out_e)
        if loss_e.requires_grad:
            assert loss_c.requires_grad, f"{what}: the compiled output does not require grad"
            loss_c.backward()
            loss_e.backward()
            assert_same(_grads(req_c), _grads(req_e), row.rtol, row.atol, f"{what}: input gradients")
            assert_same(
                _grads(list(compiled_op.parameters())),
                _grads(list(eager.parameters())),
                row.rtol,
                row.atol,
                f"{what}: parameter gradients",
            )

    with torch._dynamo.config.patch(**row.dynamo_config):
        for seed, (n, grow) in enumerate(COMPILE_SIZES):
            step(n, grow, seed)
        frames = counter.frame_count
        n, grow = COMPILE_SIZES[0]
        step(n, grow, 10)  # the first shape again with another mask and data
    assert counter.frame_count == frames, (
        f"a new mask of a seen shape recompiled ({frames} -> {counter.frame_count} graphs): "
        "the mask is treated as a guard, not as data"
    )


# -------------------------------------------------------------------------------- export
def check_export(row: CompatInfo, twin: bool = False) -> None:
    """torch.export in eval mode, saved and loaded, rerun on another mask and data equals eager."""
    op = build(row, twin).eval()
    inputs = make_inputs(row, seed=0, twin=twin)
    mode = "strict" if row.export_strict else "non-strict"
    with step(f"torch.export ({mode})"):
        program = torch.export.export(op, inputs, strict=row.export_strict)
    buf = io.BytesIO()
    with step("torch.export.save/load"):
        torch.export.save(program, buf)
        buf.seek(0)
        loaded = torch.export.load(buf).module()
    other = make_inputs(row, seed=1, twin=twin)
    with torch.no_grad():
        got, expected = leaves(loaded(*other)), leaves(op(*other))
    assert_same(got, expected, row.rtol, row.atol, "export: outputs on another mask")


# ---------------------------------------------------------------------------------- onnx
def check_onnx(row: CompatInfo, twin: bool = False) -> None:
    """torch.onnx.export(dynamo=True) run by onnxruntime on another mask and data equals eager."""
    import warnings

    reason = "the ONNX cells need the test extra (onnx, onnxscript, onnxruntime)"
    pytest.importorskip("onnxscript", reason=reason)
    ort = pytest.importorskip("onnxruntime", reason=reason)

    op = build(row, twin).eval()
    inputs = make_inputs(row, seed=0, twin=twin)
    with torch.no_grad(), warnings.catch_warnings(), step("torch.onnx.export(dynamo=True)"):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(op, inputs, dynamo=True, verbose=False)
    assert program is not None
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(
        program.model_proto.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    other = make_inputs(row, seed=1, twin=twin)
    feeds = leaves(other)
    names = [i.name for i in session.get_inputs()]
    assert len(names) == len(feeds), f"onnx: the model takes {len(names)} inputs, expected {len(feeds)}"
    got = session.run(None, {name: t.numpy() for name, t in zip(names, feeds)})
    with torch.no_grad():
        expected = leaves(op(*other))
    assert_same(
        [torch.from_numpy(g) for g in got], expected, row.rtol, row.atol, "onnx: outputs on another mask"
    )


# ---------------------------------------------------------------------------------- vmap
VMAP_BATCH = 3


def check_vmap(row: CompatInfo, twin: bool = False) -> None:
    """vmap over the batch equals a loop over samples; so do per-sample gradients
    (``vmap(grad(functional_call))`` against ``torch.autograd.grad`` one sample at a time)."""
    from torch.func import functional_call, grad, vmap

    op = build(row, twin)
    inputs = make_inputs(row, VMAP_BATCH, twin=twin)
    dims = row.batch_dims or (0,) * len(inputs)
    params = {k: v.detach() for k, v in op.named_parameters()}
    buffers = {k: v.detach().clone() for k, v in op.named_buffers()}
    loop_buffers = {k: v.detach().clone() for k, v in op.named_buffers()}
    positions = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.is_floating_point()]

    def one(sample: Sequence[Any]) -> tuple[Any, ...]:
        return tuple(tmap(lambda t, d=d: t.unsqueeze(d), s) for s, d in zip(sample, dims))

    def sample_of(i: int) -> tuple[Any, ...]:
        return tuple(tmap(lambda t, d=d: t.select(d, i), x) for x, d in zip(inputs, dims))

    def f(p: dict[str, Tensor], *sample: Any) -> tuple[Tensor, ...]:
        return tuple(leaves(functional_call(op, (p, buffers), one(sample))))

    def loss(p: dict[str, Tensor], *sample: Any) -> Tensor:
        return weighted_loss(f(p, *sample))

    batched = vmap(f, in_dims=(None, *dims))(params, *inputs)
    looped = [
        leaves(functional_call(op, (params, loop_buffers), one(sample_of(i)))) for i in range(VMAP_BATCH)
    ]
    expected = [torch.stack([out[j] for out in looped]) for j in range(len(looped[0]))]
    assert_same(list(batched), expected, row.rtol, row.atol, "vmap: outputs")

    argnums = (0, *(1 + i for i in positions))
    per_sample = vmap(grad(loss, argnums=argnums), in_dims=(None, *dims))(params, *inputs)
    got = [*per_sample[0].values(), *per_sample[1:]]
    rows: list[list[Tensor]] = []
    for i in range(VMAP_BATCH):
        p = {k: v.clone().requires_grad_() for k, v in params.items()}
        sample = list(sample_of(i))
        wrt = list(p.values())
        for j in positions:
            sample[j] = sample[j].clone().requires_grad_()
            wrt.append(sample[j])
        total = weighted_loss(leaves(functional_call(op, (p, loop_buffers), one(sample))))
        gs = torch.autograd.grad(total, wrt, allow_unused=True) if total.requires_grad else [None] * len(wrt)
        rows.append([g if g is not None else torch.zeros_like(w) for g, w in zip(gs, wrt)])
    expected_g = [torch.stack([r[j] for r in rows]) for j in range(len(got))]
    assert_same(list(got), expected_g, row.rtol, row.atol, "vmap: per-sample gradients")


# ------------------------------------------------------------------------------ gradgrad
def check_gradgrad(row: CompatInfo, twin: bool = False) -> None:
    """gradgradcheck in float64 over the float inputs and the parameters."""
    from torch.func import functional_call

    op = build(row, twin).double()
    inputs = tmap(lambda t: t.double() if t.is_floating_point() else t, make_inputs(row, finite=True))
    flat_inputs, spec = pytree.tree_flatten(inputs)
    names = [k for k, _ in op.named_parameters()]
    params = [p.detach().clone().requires_grad_() for _, p in op.named_parameters()]
    float_at = [i for i, t in enumerate(flat_inputs) if isinstance(t, Tensor) and t.is_floating_point()]
    buffers = dict(op.named_buffers())

    def fn(*args: Tensor) -> tuple[Tensor, ...]:
        ps, xs = args[: len(params)], args[len(params) :]
        flat = list(flat_inputs)
        for i, x in zip(float_at, xs):
            flat[i] = x
        out = functional_call(
            op, ({**dict(zip(names, ps)), **buffers}), tuple(pytree.tree_unflatten(flat, spec))
        )
        return tuple(t for t in leaves(out) if t.is_floating_point())

    args = (*params, *(flat_inputs[i].detach().clone().requires_grad_() for i in float_at))
    assert torch.autograd.gradgradcheck(fn, args, fast_mode=True)


# ------------------------------------------------------------------------------ autocast
def check_autocast(row: CompatInfo, twin: bool = False) -> None:
    """Under autocast(cpu, bfloat16) the float outputs have the plain twin's dtypes (both run
    with gradients: some of torch's layers take another kernel without, e.g. the fused
    inference kernel of nn.TransformerEncoderLayer), a backward runs, and inference
    (``torch.no_grad``) gives the same dtypes."""
    del twin  # the twin is the reference here
    op = build(row)
    ref = build(row, twin=True)
    inputs, req = _with_grad(make_inputs(row))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = [t for t in leaves(op(*inputs)) if t.is_floating_point()]
        twin_inputs, _ = _with_grad(make_inputs(row, twin=True))
        expected = [t for t in leaves(ref(*twin_inputs)) if t.is_floating_point()]
        with torch.no_grad():
            inference = [t for t in leaves(build(row)(*make_inputs(row))) if t.is_floating_point()]
    got = [t.dtype for t in out]
    want = [t.dtype for t in expected]
    assert got == want, f"autocast: output dtypes {got}, the plain twin gives {want}"
    no_grad = [t.dtype for t in inference]
    assert no_grad == got, f"autocast: output dtypes {no_grad} without gradients, {got} with"
    loss = weighted_loss(out)
    if loss.requires_grad:
        loss.backward()
        for t in (*req, *op.parameters()):
            assert t.grad is None or bool(t.grad.isfinite().all()), "autocast: non-finite gradient"


# ------------------------------------------------------------------------- channels_last
def _channels_last(t: Tensor) -> Tensor:
    if t.dim() == 4:
        return t.contiguous(memory_format=torch.channels_last)
    if t.dim() == 5:
        return t.contiguous(memory_format=torch.channels_last_3d)
    return t


def keeps_channels_last(t: Tensor) -> bool:
    """True when ``t`` is channels_last (3d) and not also plain contiguous."""
    fmt = torch.channels_last if t.dim() == 4 else torch.channels_last_3d
    return t.dim() in (4, 5) and t.is_contiguous(memory_format=fmt) and not t.is_contiguous()


def has_channels_last_input(row: CompatInfo) -> bool:
    return any(t.dim() in (4, 5) and t.is_floating_point() for t in leaves(make_inputs(row)))


def twin_keeps_channels_last(row: CompatInfo) -> bool:
    """Whether the plain twin's first float output is channels_last for channels_last inputs."""
    cl = tmap(_channels_last, make_inputs(row, twin=True))
    with torch.no_grad():
        out = next(t for t in leaves(build(row, twin=True)(*cl)) if t.is_floating_point())
    return keeps_channels_last(out)


def check_channels_last(row: CompatInfo, twin: bool = False, layout: bool = True) -> None:
    """channels_last inputs give the values of contiguous inputs, and (with ``layout``) a
    channels_last first float output. With ``twin=True``: the twin keeps channels_last."""
    if twin:
        assert twin_keeps_channels_last(row), "the plain twin's output is not channels_last"
        return
    inputs = make_inputs(row)
    a, b = build(row), build(row)
    out = leaves(a(*tmap(_channels_last, inputs)))
    ref = leaves(b(*inputs))
    assert_same([t.contiguous() for t in out], ref, row.rtol, row.atol, "channels_last: values")
    first = next(t for t in out if t.is_floating_point())
    assert not layout or keeps_channels_last(first), (
        f"channels_last input gives strides {tuple(first.stride())} for shape {tuple(first.shape)}, "
        "where the plain twin keeps channels_last"
    )


CHECKS: dict[str, Callable[..., None]] = {
    "compile": check_compile,
    "export": check_export,
    "onnx": check_onnx,
    "vmap": check_vmap,
    "gradgrad": check_gradgrad,
    "autocast": check_autocast,
    "channels_last": check_channels_last,
}
