"""The leakage contract checker (DESIGN section 3), public so users can check their own models.

[`assert_no_leakage`][masknn.testing.assert_no_leakage] runs a module (or any callable) on ``Masked`` inputs
whose masked positions hold random values, 0, +/-1e30, NaN and +/-Inf, and asserts
that

1. every valid output value, every output mask, every other output tensor and
   every buffer (running statistics) is identical to the run with random values;
2. the gradient with respect to every masked input position is exactly 0, all
   input and parameter gradients are finite, and they do not depend on the
   masked values either;
2b. NaN and +/-Inf cotangents (incoming gradients) at masked output positions reach
   no gradient: every input and parameter gradient equals the one obtained with
   zero cotangents there, and is finite (a backward must select, not multiply by
   the mask: ``NaN * 0 = NaN``);
3. outputs hold exactly 0 at masked output positions (canonical form);
4. a fully masked sample gives finite output, zeros, and an all-False mask;

in train and in eval mode. On failure it raises [`LeakageError`][masknn.testing.LeakageError] naming the
check, the mode, the perturbation and the first offending index.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from masknn._masked import Masked

__all__ = ["COTANGENTS", "DEFAULT_PERTURBATIONS", "LeakageError", "assert_no_leakage"]

DEFAULT_PERTURBATIONS: tuple[str | float, ...] = (
    "random",
    0.0,
    1e30,
    -1e30,
    math.nan,
    math.inf,
    -math.inf,
)
"""Values written at masked input positions. ``"random"`` draws standard normals."""


class LeakageError(AssertionError):
    """Raised by [`assert_no_leakage`][masknn.testing.assert_no_leakage] when a masked value reaches a valid
    output."""


COTANGENTS: tuple[float, ...] = (0.0, math.nan, math.inf, -math.inf)
"""Cotangents written at masked output positions by the cotangent check; the first is the reference (a
masked output is constant 0, so its cotangent must not matter)."""


@dataclass
class _Grads:
    inputs: list[Tensor | None]
    params: dict[str, Tensor | None]


@dataclass
class _Run:
    outputs: list[tuple[str, Tensor, Tensor | None]]  # (name, value, mask or None)
    buffers: dict[str, Tensor]
    input_grads: list[Tensor | None]
    param_grads: dict[str, Tensor | None]
    #: gradients with each of COTANGENTS at masked output positions (when asked for)
    cotangent_grads: dict[float, _Grads] = field(default_factory=dict)


def _flatten(obj: Any, name: str = "output") -> Iterator[tuple[str, Tensor, Tensor | None]]:
    if isinstance(obj, Masked):
        yield name, obj.data, obj.mask
    elif isinstance(obj, Tensor):
        yield name, obj, None
    elif isinstance(obj, (tuple, list)):
        for i, item in enumerate(obj):
            yield from _flatten(item, f"{name}[{i}]")
    elif isinstance(obj, dict):
        for k, item in obj.items():
            yield from _flatten(item, f"{name}[{k!r}]")


def _perturb(m: Masked, value: str | float, gen: torch.Generator) -> Tensor:
    data = m.data
    if not data.is_floating_point():
        return data.clone()
    if value == "random":
        noise = torch.randn(data.shape, generator=gen, dtype=torch.float32).to(data)
        fill = noise
    else:
        v = float(value)
        if math.isfinite(v):
            # 1e30 overflows float16 (max 65504): use the largest finite value of the dtype instead.
            big = torch.finfo(data.dtype).max
            v = max(-big, min(big, v))
        fill = torch.full_like(data, v)
    return torch.where(m.mask, data, fill)


def _first_index(bad: Tensor) -> tuple[int, ...]:
    return tuple(int(i) for i in bad.nonzero()[0]) if bad.dim() else ()


def _fmt(x: Tensor, idx: tuple[int, ...]) -> str:
    return repr(float(x[idx])) if x.dim() else repr(float(x))


def _differs(a: Tensor, b: Tensor, rtol: float, atol: float) -> Tensor:
    if a.dtype == torch.bool or not a.is_floating_point():
        return a != b
    a64, b64 = a.double(), b.double()
    same = (a64 == b64) | (torch.isnan(a64) & torch.isnan(b64))
    close = (a64 - b64).abs() <= atol + rtol * b64.abs()
    return ~(same | close)


def _run(
    fn: Callable[..., Any],
    module: nn.Module | None,
    inputs: Sequence[Any],
    value: str | float,
    seed: int,
    grad: bool,
    cotangents: Sequence[float] = (),
) -> _Run:
    gen = torch.Generator().manual_seed(seed + 1)
    args: list[Any] = []
    leaves: list[Tensor | None] = []
    for item in inputs:
        if isinstance(item, Masked):
            data = _perturb(item, value, gen)
            if grad and data.is_floating_point():
                data = data.detach().requires_grad_(True)
                leaves.append(data)
            else:
                leaves.append(None)
            args.append(Masked(data, item.mask))
        else:
            args.append(item)
    torch.manual_seed(seed)
    out = fn(*args)
    outputs = [(n, v, m) for n, v, m in _flatten(out)]
    buffers = {k: b.detach().clone() for k, b in module.named_buffers()} if module is not None else {}
    input_grads: list[Tensor | None] = [None] * len(leaves)
    param_grads: dict[str, Tensor | None] = {}
    cotangent_grads: dict[float, _Grads] = {}
    if grad:
        params = (
            [(k, p) for k, p in module.named_parameters() if p.requires_grad] if module is not None else []
        )
        cot_gen = torch.Generator().manual_seed(seed + 2)
        # (output, its random cotangent, its mask expanded to its shape or None)
        diff: list[tuple[Tensor, Tensor, Tensor | None]] = []
        for _, v, m in outputs:
            if v.requires_grad and v.is_floating_point():
                g = torch.randn(v.shape, generator=cot_gen, dtype=torch.float32).to(v)
                diff.append((v, g, m.expand(v.shape) if m is not None else None))
        wrt = [t for t in leaves if t is not None] + [p for _, p in params]
        if diff and wrt:

            def backward(at_masked: float | None, retain: bool) -> _Grads:
                # at_masked: the cotangent at masked output positions (None: the random one).
                cots = [
                    g.clone()
                    if at_masked is None or m is None
                    else torch.where(m, g, torch.full_like(g, at_masked))
                    for _, g, m in diff
                ]
                got = torch.autograd.grad(
                    [v for v, _, _ in diff], wrt, cots, retain_graph=retain, allow_unused=True
                )
                it = iter(got)
                return _Grads(
                    [next(it) if t is not None else None for t in leaves], {k: next(it) for k, _ in params}
                )

            masked_outputs = any(m is not None and not bool(m.all()) for _, _, m in diff)
            extra = list(cotangents) if masked_outputs else []
            main = backward(None, retain=bool(extra))
            input_grads, param_grads = main.inputs, main.params
            for i, c in enumerate(extra):
                cotangent_grads[c] = backward(c, retain=i < len(extra) - 1)
    detached = [(n, v.detach(), m) for n, v, m in outputs]
    return _Run(detached, buffers, input_grads, param_grads, cotangent_grads)


def _set_mode(module: nn.Module | None, mode: str) -> None:
    if module is not None:
        module.train(mode == "train")


def _fully_masked_inputs(inputs: Sequence[Any], batch_dim: int) -> list[Any]:
    out: list[Any] = []
    for item in inputs:
        if isinstance(item, Masked) and item.data.dim() > batch_dim:
            full = item.full_mask().clone() if item.mask.shape[batch_dim] == 1 else item.mask.clone()
            full.select(batch_dim, 0).fill_(False)
            out.append(Masked(item.data, full))
        else:
            out.append(item)
    return out


def assert_no_leakage(
    module: Callable[..., Any],
    *inputs: Any,
    perturbations: Sequence[str | float] = DEFAULT_PERTURBATIONS,
    modes: Sequence[str] = ("train", "eval"),
    rtol: float = 0.0,
    atol: float = 0.0,
    check_grad: bool = True,
    check_cotangents: bool = True,
    check_canonical: bool = True,
    check_fully_masked: bool = True,
    fully_masked_zero: bool = True,
    batch_dim: int = 0,
    seed: int = 0,
) -> None:
    """Assert that values at masked positions cannot reach a valid output (DESIGN section 3).

    Args:
        module: an ``nn.Module`` or any callable. Modules are deep-copied for
            every run, so running statistics start equal and are compared after
            the forward pass; they are checked in each of ``modes``.
        *inputs: positional arguments. Each ``Masked`` among them is perturbed at
            its masked positions; anything else is passed as it is.
        perturbations: values written at masked positions; ``"random"`` draws
            normals. The first entry is the reference run.
        modes: ``"train"`` and/or ``"eval"`` (ignored for plain callables).
        rtol: relative tolerance of the comparison of valid outputs, buffers and
            gradients between runs; the default is exact equality.
        atol: absolute tolerance of the same comparison.
        check_grad: check input and parameter gradients.
        check_cotangents: with ``check_grad``, also backpropagate NaN, +Inf and -Inf
            cotangents at the masked positions of every ``Masked`` output (in the run
            with the first perturbation) and require every input and parameter
            gradient to equal the one with zero cotangents there, and to be finite.
            A masked output is exactly 0 whatever the inputs, so what flows back
            into it must be dropped by a select, never multiplied by the mask.
        check_canonical: require exactly 0 at masked output positions.
        check_fully_masked: also run with sample 0 fully masked (NaN at every
            position) and require finite outputs and gradients.
        fully_masked_zero: with ``check_fully_masked``, also require that sample 0
            of every ``Masked`` output is all 0 with an all-False mask (turn off
            for fills, whose output is valid everywhere by design).
        batch_dim: the batch dimension of ``Masked`` inputs and outputs.
        seed: seeds the random perturbation, the gradient weights, and
            ``torch.manual_seed`` before each forward (so dropout repeats).

    Raises:
        LeakageError: naming the failed check, the mode, the perturbation and
            the first offending index.

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> from masknn.nn import LearnedFill
        >>> from masknn.testing import assert_no_leakage
        >>> x = Masked(torch.randn(2, 3, 4, 4), torch.rand(2, 1, 4, 4) > 0.5)
        >>> assert_no_leakage(LearnedFill(3), x, fully_masked_zero=False)
    """
    if not any(isinstance(i, Masked) for i in inputs):
        raise TypeError("assert_no_leakage: expected at least one masknn.Masked input")
    base_module = module if isinstance(module, nn.Module) else None
    run_modes = list(modes) if base_module is not None else ["call"]
    name = type(module).__name__ if base_module is not None else getattr(module, "__name__", "fn")

    for mode in run_modes:

        def fresh(mode: str = mode) -> tuple[Callable[..., Any], nn.Module | None]:
            if base_module is None:
                return module, None
            m = copy.deepcopy(base_module)
            _set_mode(m, mode)
            return m, m

        runs: list[tuple[str | float, _Run]] = []
        for n_run, value in enumerate(perturbations):
            fn, mod = fresh()
            cots = COTANGENTS if check_cotangents and n_run == 0 else ()
            runs.append((value, _run(fn, mod, inputs, value, seed, check_grad, cots)))
        ref_value, ref = runs[0]
        where = f"{name} ({mode} mode)"

        for value, run in runs:
            tag = f"{where}, masked inputs = {value!r}"
            if len(run.outputs) != len(ref.outputs):
                raise LeakageError(f"{tag}: the number of outputs changed")
            for (oname, v, m), (_, rv, rm) in zip(run.outputs, ref.outputs):
                if m is not None and rm is not None:
                    if m.shape != rm.shape or bool((m != rm).any()):
                        idx = _first_index(m != rm) if m.shape == rm.shape else ()
                        raise LeakageError(f"{tag}: {oname}.mask changed at index {idx}")
                    valid = m.expand(v.shape)
                    if check_canonical and v.is_floating_point():
                        nz = (~valid) & (v != 0)
                        if bool(nz.any()):
                            idx = _first_index(nz)
                            raise LeakageError(
                                f"{tag}: {oname}.data at masked output index {idx} is "
                                f"{_fmt(v, idx)}, expected exactly 0 (canonical form)"
                            )
                    bad = valid & _differs(v, rv, rtol, atol)
                    if v.is_floating_point():
                        bad = bad | (valid & ~torch.isfinite(v) & torch.isfinite(rv))
                    label = f"{oname}.data"
                else:
                    bad = _differs(v, rv, rtol, atol)
                    label = oname
                if bool(bad.any()):
                    idx = _first_index(bad)
                    raise LeakageError(
                        f"{tag}: {label} at valid index {idx} is {_fmt(v, idx)}, "
                        f"{_fmt(rv, idx)} with masked inputs = {ref_value!r}"
                    )
            for k, b in run.buffers.items():
                rb = ref.buffers[k]
                bad = _differs(b, rb, rtol, atol)
                if b.is_floating_point():
                    bad = bad | ~torch.isfinite(b)
                if bool(bad.any()):
                    idx = _first_index(bad)
                    raise LeakageError(
                        f"{tag}: buffer {k!r} at index {idx} is {_fmt(b, idx)}, "
                        f"{_fmt(rb, idx)} with masked inputs = {ref_value!r}"
                    )
        for value, run in runs if check_grad else []:
            tag = f"{where}, masked inputs = {value!r}"
            for i, (g, rg, item) in enumerate(
                zip(run.input_grads, ref.input_grads, [x for x in inputs if isinstance(x, Masked)])
            ):
                if g is None:
                    continue
                masked = ~item.mask.expand(g.shape)
                nz = masked & (g != 0)
                if bool(nz.any()):
                    idx = _first_index(nz)
                    raise LeakageError(
                        f"{tag}: gradient of input {i} at masked index {idx} is "
                        f"{_fmt(g, idx)}, expected exactly 0"
                    )
                bad = ~torch.isfinite(g)
                if rg is not None:
                    bad = bad | _differs(g, rg, rtol, atol)
                if bool(bad.any()):
                    idx = _first_index(bad)
                    raise LeakageError(
                        f"{tag}: gradient of input {i} at valid index {idx} is {_fmt(g, idx)}"
                        + (f", {_fmt(rg, idx)} with masked inputs = {ref_value!r}" if rg is not None else "")
                    )
            for k, g in run.param_grads.items():
                rg = ref.param_grads.get(k)
                if g is None:
                    continue
                bad = ~torch.isfinite(g)
                if rg is not None:
                    bad = bad | _differs(g, rg, rtol, atol)
                if bool(bad.any()):
                    idx = _first_index(bad)
                    raise LeakageError(
                        f"{tag}: gradient of parameter {k!r} at index {idx} is {_fmt(g, idx)}"
                        + (f", {_fmt(rg, idx)} with masked inputs = {ref_value!r}" if rg is not None else "")
                    )

        if ref.cotangent_grads:
            _check_cotangents(f"{where}, masked inputs = {ref_value!r}", ref, rtol, atol)

        if check_fully_masked:
            full_inputs = _fully_masked_inputs(inputs, batch_dim)
            fn, mod = fresh()
            cots = COTANGENTS if check_cotangents else ()
            run = _run(fn, mod, full_inputs, math.nan, seed, check_grad, cots)
            tag = f"{where}, sample {batch_dim}:0 fully masked (NaN)"
            for oname, v, m in run.outputs:
                if v.is_floating_point() and not bool(torch.isfinite(v).all()):
                    idx = _first_index(~torch.isfinite(v))
                    raise LeakageError(f"{tag}: {oname} at index {idx} is {_fmt(v, idx)}")
                if fully_masked_zero and m is not None and v.dim() > batch_dim:
                    if m.shape[batch_dim] == v.shape[batch_dim] or v.shape[batch_dim] == 1:
                        s_v = v.select(batch_dim, 0)
                        s_m = m.select(batch_dim, 0)
                        if bool(s_m.any()):
                            raise LeakageError(f"{tag}: {oname}.mask of sample 0 is not all False")
                        if bool((s_v != 0).any()):
                            idx = _first_index(s_v != 0)
                            raise LeakageError(
                                f"{tag}: {oname}.data of sample 0 at index {idx} is "
                                f"{_fmt(s_v, idx)}, expected 0"
                            )
            for k, b in run.buffers.items():
                if b.is_floating_point() and not bool(torch.isfinite(b).all()):
                    raise LeakageError(f"{tag}: buffer {k!r} is not finite")
            masked_items = [x for x in full_inputs if isinstance(x, Masked)]
            for i, (g, item) in enumerate(zip(run.input_grads, masked_items)):
                if g is None:
                    continue
                if not bool(torch.isfinite(g).all()):
                    raise LeakageError(f"{tag}: gradient of input {i} is not finite")
                nz = ~item.mask.expand(g.shape) & (g != 0)
                if bool(nz.any()):
                    idx = _first_index(nz)
                    raise LeakageError(
                        f"{tag}: gradient of input {i} at masked index {idx} is "
                        f"{_fmt(g, idx)}, expected exactly 0"
                    )
            for k, g in run.param_grads.items():
                if g is not None and not bool(torch.isfinite(g).all()):
                    raise LeakageError(f"{tag}: gradient of parameter {k!r} is not finite")
            if run.cotangent_grads:
                _check_cotangents(tag, run, rtol, atol)


def _check_cotangents(where: str, run: _Run, rtol: float, atol: float) -> None:
    """NaN/Inf cotangents at masked outputs must leave every gradient as with zero there."""
    base = run.cotangent_grads[COTANGENTS[0]]
    for c in COTANGENTS[1:]:
        got = run.cotangent_grads[c]
        tag = (
            f"{where}, cotangent {c!r} at masked output positions "
            "(a backward that multiplies by the mask instead of selecting?)"
        )
        named: list[tuple[str, Tensor | None, Tensor | None]] = [
            (f"input {i}", g, b) for i, (g, b) in enumerate(zip(got.inputs, base.inputs))
        ]
        named += [(f"parameter {k!r}", g, base.params.get(k)) for k, g in got.params.items()]
        for label, g, b in named:
            if g is None:
                continue
            bad = ~torch.isfinite(g)
            if b is not None:
                bad = bad | _differs(g, b, rtol, atol)
            if bool(bad.any()):
                idx = _first_index(bad)
                ref = f", {_fmt(b, idx)} with zero cotangent there" if b is not None else ""
                raise LeakageError(f"{tag}: gradient of {label} at index {idx} is {_fmt(g, idx)}{ref}")
