"""The select primitive every masknn op uses, and the rule for when a fast kernel may run.

``select(x, m)`` is ``torch.where(m, x, 0)``: exact (valid values keep every bit),
NaN/Inf-safe (masked values become +0.0 whatever they hold; nothing is multiplied by
the mask), differentiable any number of times (its backward is the same select of
the incoming gradient), and visible to every tracer and transform as a plain
``torch.where`` (an ONNX ``Where``).

Two implementations, one meaning:

* the **composable path**, ``torch.where``: taken under ``torch.compile``,
  ``torch.export``, ``torch.jit.trace`` (the legacy ONNX exporter), fx proxies, fake
  and other tensor subclasses, any ``torch.func`` transform (vmap, grad, jacrev, ...),
  any active Python dispatch or function mode, and on devices other than the CPU;
* the **eager fast path** on CPU: the float's bits, viewed as integers of the same
  width, multiplied by the bool mask (``v · 1 = v``, ``v · 0 = 0`` for every bit pattern:
  exact, NaN and Inf included), 2.7-5.5x faster than a boolean ``where`` on CPU. It
  runs as an ``torch.autograd.Function`` whose backward calls ``select`` again, so double
  (and higher) backward work on it too.

``fast_path`` is the one predicate that decides; the fused nodes of the other
ops (partial convolution, batch norm, pooling) use it the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor
from torch.utils._python_dispatch import _get_current_dispatch_mode

__all__ = [
    "composable_only",
    "differentiable_backward",
    "fast_path",
    "fill_value",
    "mask_bits",
    "select",
    "select_into",
    "zero",
]

#: Integer dtype of the same width, for selecting floats bit by bit.
_BITS = {
    torch.float32: torch.int32,
    torch.float64: torch.int64,
    torch.float16: torch.int16,
    torch.bfloat16: torch.int16,
}

_PLAIN = (Tensor, torch.nn.Parameter)
_FORCED = [False]


@contextmanager
def composable_only() -> Iterator[None]:
    """Within this block every op takes its composable path (plain differentiable ops), even
    in eager mode on CPU: for tests that compare the two paths and benchmarks that cost them."""
    before = _FORCED[0]
    _FORCED[0] = True
    try:
        yield
    finally:
        _FORCED[0] = before


def fast_path(*tensors: Tensor | None) -> bool:
    """True when masknn's eager fast kernels may run on ``tensors``.

    False under any tracer, compiler, exporter or ``torch.func`` transform, for tensor
    subclasses (fake, functional, batched, proxies, user subclasses), under an active
    Python dispatch or function mode, and for tensors off the CPU. The fast kernels are
    only ever an eager-CPU optimisation of the same function; everything else sees the
    plain differentiable ops.
    """
    if (
        _FORCED[0]
        or torch.jit.is_tracing()
        or torch.jit.is_scripting()
        or torch.compiler.is_compiling()
        or torch._C._are_functorch_transforms_active()
        or torch._C._is_torch_function_mode_enabled()
        or _get_current_dispatch_mode() is not None
    ):
        return False
    for t in tensors:
        if t is None:
            continue
        if type(t) not in _PLAIN or not t.is_cpu or t.layout != torch.strided:
            return False
    return True


def zero(x: Tensor) -> Tensor:
    """A 0-d zero of ``x``'s dtype and device (for ``torch.where``)."""
    return torch.zeros((), dtype=x.dtype, device=x.device)


def _compiling() -> bool:
    """True while torch.compile traces (dynamo), but not while torch.export does."""
    return torch.compiler.is_compiling() and not torch.compiler.is_exporting()


def fill_value(m: Tensor, like: Tensor, value: float) -> Tensor:
    """The third operand of ``torch.where(m, like, value)``: ``value`` (in ``like``'s dtype) wherever
    ``m`` is False; what it holds where ``m`` is True is never read.

    Outside ``torch.compile`` a 0-d tensor. Under ``torch.compile`` it is derived from the mask
    itself (``m`` as 0/1 for a zero, its reciprocal for an infinity), which inductor fuses into
    the ``where`` at no cost. A 0-d constant is one graph node that AOTAutograd's CSE shares
    between every ``where`` of the model, and its min-cut partitioner then bans recomputing
    every ``where`` beyond the model's first convolution (the ``ban_recompute_used_far_apart``
    heuristic): the backward then keeps full-size selected tensors and boolean masks instead
    of recomputing them from what a plain network keeps, and inductor's CPU kernels store and
    load them as extra passes. A masked CNN's compiled training step took 2.71x the compiled
    plain CNN's time with the constant and 1.24x with this filler (``benchmarks/bench_compile.py``,
    ``--constant-filler``; see RESULTS.md).

    Examples:
        >>> import torch
        >>> m = torch.tensor([True, False])
        >>> torch.where(m, torch.tensor([1.0, float("nan")]), fill_value(m, torch.ones(2), -float("inf")))
        tensor([1., -inf])
    """
    if not _compiling():
        return torch.full((), value, dtype=like.dtype, device=like.device)
    mf = m.to(like.dtype)
    if value == 0.0:
        return mf  # +0.0 where masked
    if math.isinf(value):
        return mf.reciprocal() if value > 0 else mf.reciprocal().neg()  # 1 / 0 = inf where masked
    return (1 - mf) * value


# Above this many elements a full-size mask is applied one slice of the batch at a time.
_SLICED = 1 << 21


def mask_bits(m: Tensor, dtype: torch.dtype) -> Tensor:
    """The bool mask as all-ones (valid) / all-zeros integers as wide as ``dtype``."""
    return m.to(_BITS[dtype]).neg_()


class _SelectZero(torch.autograd.Function):
    """The eager-CPU select as one autograd node; its backward is ``select`` of the gradient."""

    @staticmethod
    def forward(x: Tensor, m: Tensor) -> Tensor:
        return select_into(x, m)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, Tensor], output: Tensor) -> None:
        ctx.save_for_backward(inputs[1])

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (m,) = ctx.saved_tensors
        return select(grad, m), None


def select(x: Tensor, m: Tensor) -> Tensor:
    """``torch.where(m, x, 0)`` with ``m`` (bool) broadcasting to ``x``: exact, NaN-safe, composable.

    The mask may have fewer elements than ``x`` (size-1 dimensions), never more: the
    result has ``x``'s shape.
    """
    if (
        x.dtype in _BITS
        and m.dim() <= x.dim()
        and tuple(torch.broadcast_shapes(x.shape, m.shape)) == tuple(x.shape)
        and fast_path(x, m)
    ):
        out: Tensor = _SelectZero.apply(x, m)
        return out
    return torch.where(m, x, fill_value(m, x, 0.0))


def select_into(src: Tensor, mask: Tensor, out: Tensor | None = None) -> Tensor:
    """Fast-path only: ``torch.where(mask, src, 0)`` bit by bit into ``out`` (new, or ``src`` itself).

    Not differentiable and not traceable: for use inside the eager fast kernels (the
    ``forward``/``backward`` of a fused autograd node) once ``fast_path`` allowed
    them. ``mask`` is ``(N or 1, C or 1, *spatial)``. The select is an integer
    multiplication of the data's bits by the bool mask (``v · 1 = v`` and ``v · 0 = 0``
    for every bit pattern ``v``: exact, NaN and Inf included), broadcast by the kernel
    itself, so no integer mask is ever allocated. Inputs of more than ``_SLICED`` elements
    with a full-size mask go a slice of the batch at a time (measured faster there).
    """
    itype = _BITS[src.dtype]
    src = src.resolve_neg()  # a dtype view of a tensor with the negative bit set raises
    if out is None:
        out = torch.empty_like(src)  # src's layout (channels-last stays channels-last)
    n = src.shape[0] if src.dim() else 1
    if mask.dim() < 2 or mask.shape[1] == 1 or mask.shape[0] == 1 or n == 1 or src.numel() <= _SLICED:
        torch.mul(src.view(itype), mask, out=out.view(itype))
        return out
    step = max(1, n // 8)
    for i in range(0, n, step):
        torch.mul(src[i : i + step].view(itype), mask[i : i + step], out=out[i : i + step].view(itype))
    return out


def differentiable_backward(
    composite: Callable[..., Tensor | Sequence[Tensor]],
    inputs: Sequence[Any],
    grads: Sequence[Tensor | None],
    needs: Sequence[bool],
) -> tuple[Tensor | None, ...]:
    """The backward of a fused node when a graph of the backward is asked for (double backward).

    A fused node's fast backward writes in place and is not itself differentiable. When
    autograd runs the backward with ``create_graph=True`` (``torch.is_grad_enabled()`` is
    then true inside ``backward``), call this instead: it re-runs ``composite`` (the same
    function written with plain differentiable ops) on the saved ``inputs``, which are
    still connected to the caller's graph, and differentiates it with ``create_graph``.
    Returns one gradient per input (``None`` where ``needs`` is false or the input is
    not a tensor).
    """
    with torch.enable_grad():
        outs = composite(*inputs)
    outs_t = [outs] if isinstance(outs, Tensor) else list(outs)
    pairs = [(o, g) for o, g in zip(outs_t, grads) if g is not None and o.requires_grad]
    wrt = [i for i, (t, need) in enumerate(zip(inputs, needs)) if need and isinstance(t, Tensor)]
    result: list[Tensor | None] = [None] * len(inputs)
    if not pairs or not wrt:
        return tuple(result)
    got = torch.autograd.grad(
        [o for o, _ in pairs],
        [inputs[i] for i in wrt],
        [g for _, g in pairs],
        create_graph=True,
        allow_unused=True,
    )
    for i, g in zip(wrt, got):
        result[i] = g if g is not None else torch.zeros_like(inputs[i])
    return tuple(result)
