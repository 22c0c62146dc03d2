"""Masked recurrent layers with Keras semantics, run on PyTorch's fused kernels.

Semantics (Keras ``Masking`` + ``LSTM``/``GRU``/``SimpleRNN``, for *any* step
mask: right padding, left padding, holes): a masked step is skipped and the
state carried over; the output at a masked step is 0 and masked; the final
state ``h_n`` (and ``c_n``) is the state after each sequence's last valid step;
the backward direction of a bidirectional layer walks the valid steps in reverse
order. A sequence with no valid step gives zero outputs and returns the initial
state (zeros, or ``hx``).

How it runs without a Python loop over time:

1. **Compaction.** Each sequence's valid steps are moved, in order, to the front
   (a cumulative sum of the mask gives every step its new position; one row
   gather), into a time-major batch ``(Tm, N, F)``, the kernels' own layout. The
   batch is now right-padded with lengths ``L_i`` (left-padded for LSTM, GRU and the relu RNN, see 3).
2. **One fused kernel call per layer and direction** on that batch
   (``torch._VF.lstm``/``gru``/``rnn_*``, the kernels behind ``nn.LSTM``). The
   outputs at positions ``< L_i`` are exact because padding only follows them.
   The backward direction runs the same kernel on each sequence's valid steps
   reversed in place (another row gather), so it too starts at the last valid
   step and padding again only follows.
3. **Final states.** ``h_n`` is the output at the last valid position (the initial
   state where ``L_i = 0``). The LSTM cell state is the kernel's final ``c``:
   the padded steps carry ``c`` over exactly, by an extra input feature that is
   0 at valid steps and ``v`` at padded steps, with weight ``-v`` into the input
   and output gates and ``+v`` into the forget gate, where ``v`` is the largest
   finite value of the dtype the kernel computes in (the autocast dtype under
   autocast). At a valid step the feature contributes exactly ``0 * v = 0``; at a
   padded step its product ``v * v`` overflows to ``-inf``/``+inf``, whatever the
   weights, biases and states hold (any finite value), so ``sigmoid`` gives
   exactly 0 (input, output) and 1 (forget): ``c`` is carried bit for bit, the
   padded output is exactly 0, and the gradient through padded steps is exactly
   0. No constant depends on the weights, so nothing can stop dominating or
   overflow. For ``nonlinearity='relu'`` the same feature drives the padded steps
   to ``relu(-inf) = 0``, so the state cannot grow to infinity there (its
   gradient would be ``0 * inf = NaN``). For both, the padded steps come *first*
   (each sequence's valid steps end at the last position) and run from ``h = 0``:
   after the last valid step, a padded step would compute ``W_hh h_n``, a product
   the plain layer never forms, which may overflow (``-inf + inf = NaN``, then
   ``0 * NaN`` in the weight gradient; seen in float16 with the relu RNN's
   unbounded state). ``h_0`` enters as an input instead: an extra input block
   holding ``h_0`` at each sequence's first valid step, with weight ``W_hh`` (a
   step reads ``h`` only through ``W_hh``); the LSTM's ``c_0`` is the kernel's
   initial state, which the padded steps carry over exactly. The GRU's padded
   steps come first too (after its last valid step ``h`` kept moving towards the
   new gate, and ``W_hn h`` overflowed float16 into ``r * inf = 0 * inf = NaN``),
   but a GRU step reads ``h`` directly (``h' = (h - n) z + n``), so ``h_0`` cannot
   enter as an input: it is the kernel's initial state, and the padded steps carry
   it bit for bit: the feature ``v`` drives the reset gate to 0 and the update
   gate to 1, so ``h' = (h - n) * 1 + n``, exactly 0 from ``h = 0`` (no ``hx``);
   given ``hx``, a second feature, 1 at padded steps with weight ``-b_in`` into
   the new gate, cancels its bias, so ``n = tanh(0 + 0 * (W_hn h + b_hn)) = 0``
   and ``h' = (h - 0) * 1 + 0 = h``. The padded steps then form ``W_hh h_0``, the
   product the plain layer forms at the first valid step, and, in the backward,
   ``g * h_0`` into the update gate (``g`` the gradient with respect to ``h_0``);
   a sequence for which the first is not finite (the forced gates would meet an
   infinity of the other sign) or with ``|h_0| > 1`` (where the second may
   overflow, then ``inf * 0``) keeps its padding after its valid steps, from
   ``h_0``, unforced (without ``hx``, ``h_0 = 0`` and every sequence pads first;
   a GRU state computed from states in ``[-1, 1]`` stays there). The tanh RNN keeps
   right padding (``tanh`` can neither carry a state exactly nor give an exact 0 from
   a bias): its state is bounded by 1, so ``W_hh h_n`` can only overflow into a NaN
   (``inf - inf`` between partial sums) with recurrent weights near the dtype's
   largest value; an overflow to ``±inf`` alone saturates ``tanh``, with a zero
   gradient. Sequences with no valid step run from a zero state (their result is the
   initial state, selected afterwards), so a huge ``hx`` cannot overflow in steps that
   are discarded anyway. What no padded layout avoids: padded steps that come first
   receive, in the backward, the gradient with respect to the state entering the first
   valid step (``W_hh^T`` times its gate gradients, which the plain layer forms only
   for an ``h_0`` that requires a gradient) and multiply it by their saturated gates'
   zero derivatives: where it overflows, ``inf * 0 = NaN``. Padded steps that follow
   form ``W_hh h_n`` in the forward instead. Only packed sequences run no padded step;
   the static path cannot express them, and their backward is about 1.7x slower on
   CPU.
4. **Back to the original time positions** (one row gather), with exact zeros
   selected at masked steps: a NaN or Inf cotangent there reaches no gradient.

Three paths, one function (tests compare them):

* **eager fast path** on CPU (``masknn.functional._select.fast_path``): the
  kernels run only ``max_i L_i`` steps (fewer than ``T`` when there are holes);
  a batch with no masked step runs the plain multi-layer kernel exactly as
  ``nn.LSTM`` does; GRU and RNN inference (no gradient recorded) run PyTorch's
  packed-sequence kernel on the valid steps alone, which beats the padded form
  there (the LSTM's oneDNN kernel, and every backward, prefer the padded form);
* **static path** under ``torch.compile``, ``torch.export``, ONNX export,
  tracing, dispatch modes and on other devices: the same compaction and kernels
  over all ``T`` steps, with no Python control flow on tensor values, so one
  graph serves every mask and every batch size (PyTorch's RNN decompositions
  specialize the length: a new length recompiles, and export needs a static one);
* **step-by-step path** under ``torch.func`` transforms (``vmap``, ``grad``,
  ``jacrev``; PyTorch has no batching rule for the fused RNN kernels), and for an
  LSTM with ``proj_size`` under export (ONNX's LSTM has no projection): a loop
  over the ``T`` steps with the cell written in plain ops, carrying the state with
  ``torch.where`` at masked steps (which run the cell from a zero state, discarded).

The helpers take ``params`` in the order of ``nn.LSTM._flat_weights`` (per
layer, per direction: ``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``,
and ``weight_hr`` for LSTM with ``proj_size``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from masknn._masked import Masked
from masknn._validation import check_data, shape_str
from masknn.functional._select import fast_path, select, select_into
from masknn.functional._sequence import sequence_step_mask

__all__ = ["masked_gru", "masked_lstm", "masked_recurrent", "masked_rnn"]

_KERNELS = ("GRU", "LSTM", "RNN_RELU", "RNN_TANH")
_KERNEL_FNS = {"GRU": torch._VF.gru, "RNN_TANH": torch._VF.rnn_tanh, "RNN_RELU": torch._VF.rnn_relu}


@dataclass(frozen=True)
class _Config:
    mode: str
    bias: bool
    num_layers: int
    dropout: float
    training: bool
    bidirectional: bool
    per: int  # weight tensors per layer and direction

    @property
    def d(self) -> int:
        return 2 if self.bidirectional else 1


def masked_recurrent(
    mode: str,
    x: Tensor,
    mask: object,
    params: Sequence[Tensor],
    hx: Tensor | tuple[Tensor, Tensor] | None = None,
    *,
    hidden_size: int,
    num_layers: int = 1,
    bias: bool = True,
    batch_first: bool = True,
    dropout: float = 0.0,
    training: bool = False,
    bidirectional: bool = False,
    proj_size: int = 0,
    op: str = "masked_recurrent",
) -> tuple[Masked, Tensor, Tensor | None]:
    """Shared engine of [`masked_lstm`][masknn.functional.masked_lstm],
    [`masked_gru`][masknn.functional.masked_gru] and [`masked_rnn`][masknn.functional.masked_rnn].

    ``mode`` is ``"LSTM"``, ``"GRU"``, ``"RNN_TANH"`` or ``"RNN_RELU"``. Returns
    ``(output, h_n, c_n)`` with ``c_n`` ``None`` except for LSTM.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> gru = nn.GRU(3, 4, batch_first=True)
        >>> out, h, c = masked_recurrent(
        ...     "GRU", torch.randn(2, 5, 3), torch.rand(2, 5) > 0.3, gru._flat_weights, hidden_size=4
        ... )
        >>> out.data.shape, h.shape, c is None
        (torch.Size([2, 5, 4]), torch.Size([1, 2, 4]), True)
    """
    if mode not in _KERNELS:
        raise ValueError(f"{op}: mode must be one of {list(_KERNELS)}, got {mode!r}")
    x = check_data(op, x)
    unbatched = x.dim() == 2
    if unbatched:
        x = x.unsqueeze(1 if not batch_first else 0)
        if isinstance(mask, Tensor) and mask.dim() == 1:
            mask = mask.unsqueeze(-1)
        if isinstance(mask, Tensor) and mask.dim() == 2:
            mask = mask.unsqueeze(1 if not batch_first else 0)
        if isinstance(hx, tuple):
            hx = (hx[0].unsqueeze(1), hx[1].unsqueeze(1))
        elif hx is not None:
            hx = hx.unsqueeze(1)
    valid = sequence_step_mask(op, x, mask, batch_first)  # (N, T)
    data = x if batch_first else x.transpose(0, 1)  # (N, T, F)
    n, t, f = data.shape
    d = 2 if bidirectional else 1
    h_out = proj_size if proj_size > 0 else hidden_size
    per = 2 + 2 * int(bias) + int(proj_size > 0 and mode == "LSTM")
    if len(params) != num_layers * d * per:
        raise ValueError(f"{op}: expected {num_layers * d * per} weight tensors, got {len(params)}")
    if params[0].dtype != x.dtype or params[0].device != x.device:
        raise TypeError(
            f"{op}: weights ({params[0].dtype} on {params[0].device}) and data {shape_str(x.shape)} "
            f"({x.dtype} on {x.device}) must share dtype and device"
        )
    w_in = params[0].shape[1]
    if f != w_in:
        raise ValueError(
            f"{op}: expected input with {w_in} features (input_size), got data {shape_str(x.shape)}"
        )

    # Initial state.
    h0: Tensor
    c0: Tensor | None = None
    if hx is None:
        h0 = torch.zeros(num_layers * d, n, h_out, dtype=data.dtype, device=data.device)
        if mode == "LSTM":
            c0 = torch.zeros(num_layers * d, n, hidden_size, dtype=data.dtype, device=data.device)
    else:
        if mode == "LSTM":
            if not (isinstance(hx, tuple) and len(hx) == 2):
                raise TypeError(f"{op}: expected hx as a tuple (h_0, c_0) for LSTM, got {type(hx).__name__}")
            h0, c0 = hx
            _check_state(op, "c_0", c0, (num_layers * d, n, hidden_size), unbatched, data.dtype, data.device)
        else:
            if not isinstance(hx, Tensor):
                raise TypeError(f"{op}: expected hx as a tensor h_0, got {type(hx).__name__}")
            h0 = hx
        _check_state(op, "h_0", h0, (num_layers * d, n, h_out), unbatched, data.dtype, data.device)

    # A symbolic length: a SymInt in non-strict export; under Dynamo (strict export) sizes pass
    # isinstance(int), and hasattr on them is a hard tracing error, which refuses the export too.
    if torch.compiler.is_exporting() and (not isinstance(t, int) or hasattr(t, "node")):
        raise ValueError(
            f"{op}: torch.export and ONNX export (dynamo=True) need a static number of timesteps "
            f"for recurrent layers, got a dynamic one ({t}): PyTorch's decompositions of the fused "
            "RNN kernels unroll over time (torch.nn.LSTM/GRU/RNN cannot export a dynamic length "
            "either). Export with a fixed length (pad to the longest sequence; the mask handles the "
            "padding) and keep the batch dimension dynamic."
        )
    cfg = _Config(mode, bias, num_layers, float(dropout), training, bidirectional, per)
    out_full: Tensor
    if (
        n == 0
        or t == 0
        or (torch._C._are_functorch_transforms_active() or (proj_size > 0 and torch.compiler.is_exporting()))
    ):
        # torch.func has no batching rule for the fused kernels; ONNX's LSTM has no projection
        # (nn.LSTM with proj_size exports to a model that onnxruntime rejects): plain ops instead.
        run = _empty if n == 0 or t == 0 else _stepwise
        out_full, h_n, c_n = run(cfg, data, valid, params, h0, c0)
        if not batch_first:
            out_full = out_full.transpose(0, 1)
    elif fast_path(x, valid, h0, c0, *params):
        if bool(valid.all()):
            # Nothing masked: exactly the plain layer (one multi-layer kernel call, its own dropout).
            out_full, h_n, c_n = _plain(cfg, x, batch_first, params, h0, c0)
        elif mode != "LSTM" and not _needs_grad(x, h0, c0, params):
            # Inference with PyTorch's own GRU/RNN kernels (no oneDNN path): packed sequences,
            # which run only the valid steps (the padded form wins in training, the LSTM's
            # oneDNN kernel always).
            out_full, h_n = _packed(cfg, x, batch_first, valid, params, h0)
            c_n = None
        else:
            tm = max(1, int(valid.sum(1).max()))  # the kernels run only as far as the longest sequence
            out_full, h_n, c_n = _compacted(cfg, x, batch_first, valid, params, h0, c0, hx is not None, tm)
    else:
        out_full, h_n, c_n = _compacted(cfg, x, batch_first, valid, params, h0, c0, hx is not None, None)
    out_mask = valid.unsqueeze(-1)
    if not batch_first:
        out_mask = out_mask.transpose(0, 1)
    if unbatched:
        b = 0 if batch_first else 1
        out_full, out_mask = out_full.squeeze(b), out_mask.squeeze(b)
        h_n = h_n.squeeze(1)
        c_n = c_n.squeeze(1) if c_n is not None else None
    return Masked(out_full, out_mask), h_n, c_n


def _empty(
    cfg: _Config, data: Tensor, valid: Tensor, params: Sequence[Tensor], h0: Tensor, c0: Tensor | None
) -> tuple[Tensor, Tensor, Tensor | None]:
    """No sample or no step: zero outputs, and the initial state as the final state."""
    n, t, _ = data.shape
    out = torch.zeros(n, t, cfg.d * h0.shape[-1], dtype=data.dtype, device=data.device)
    return out, h0.clone(), None if c0 is None else c0.clone()


def _plain(
    cfg: _Config, x: Tensor, batch_first: bool, params: Sequence[Tensor], h0: Tensor, c0: Tensor | None
) -> tuple[Tensor, Tensor, Tensor | None]:
    """The plain multi-layer kernel on a batch with no masked step, exactly as ``nn.LSTM`` runs it."""
    args = (list(params), cfg.bias, cfg.num_layers, cfg.dropout, cfg.training, cfg.bidirectional, batch_first)
    if cfg.mode == "LSTM":
        assert c0 is not None
        out, h, c = torch._VF.lstm(x, (h0, c0), *args)
        return out, h, c
    out, h = _KERNEL_FNS[cfg.mode](x, h0, *args)
    return out, h, None


def _packed(
    cfg: _Config, x: Tensor, batch_first: bool, valid: Tensor, params: Sequence[Tensor], h0: Tensor
) -> tuple[Tensor, Tensor]:
    """Eager fast path, GRU and RNN inference: the valid steps as a packed sequence, one call.

    The packed kernel runs every layer and direction (its own dropout between layers) and
    returns each sequence's state after its last valid step; sequences with no valid step
    are left out and keep ``h_0``. Returns the output in the caller's layout and ``h_n``.
    """
    n, t = valid.shape
    dev = x.device
    csum = valid.cumsum(1)
    lengths = csum[:, -1]
    order = torch.argsort(lengths, descending=True, stable=True)  # the longest first, as packing needs
    sorted_len = lengths[order]
    active = int((sorted_len > 0).sum())
    if active == 0:  # no valid step at all (the packed kernel would crash on an empty batch)
        shape = (n, t) if batch_first else (t, n)
        return x.new_zeros(*shape, cfg.d * h0.shape[-1]), h0.clone()
    tm = int(sorted_len[0])
    batch_sizes = (sorted_len[:active].unsqueeze(0) > torch.arange(tm, device=dev).unsqueeze(1)).sum(1)
    ends = batch_sizes.cumsum(0)
    total = int(ends[-1])
    rank = torch.empty_like(order)
    rank[order] = torch.arange(n, device=dev)
    # The packed row of every step of x (sequence i, its k-th valid step: the rows of step k
    # start at ends[k] - batch_sizes[k], sequence i is the rank[i]-th among them), and the
    # spare index ``total`` at masked steps. Dense over (N, T): no ``nonzero``.
    k = (csum - 1).clamp_min_(0)
    row = (ends - batch_sizes)[k].add_(rank.unsqueeze(1))
    reads = torch.where(valid, row, total)
    if not batch_first:
        reads = reads.t()
    reads = reads.reshape(-1)  # the packed row that each row of x (and of the output) reads
    # The row of x that each packed row reads: the inverse of ``reads`` on the valid steps
    # (the masked ones all write the spare last slot, which is dropped).
    source = torch.empty(total + 1, dtype=reads.dtype, device=dev)
    source.scatter_(0, reads, torch.arange(n * t, device=dev))
    source = source[:total]
    f = x.shape[-1]
    data = x.reshape(-1, f).index_select(0, source)
    hx = h0.index_select(1, order[:active])
    args = (list(params), cfg.bias, cfg.num_layers, cfg.dropout, cfg.training, cfg.bidirectional)
    out_p, h_s = _KERNEL_FNS[cfg.mode](data, batch_sizes.cpu(), hx, *args)
    if active == n:  # back to the batch order: one gather
        h_n = h_s.index_select(1, rank)
    else:  # sequences with no valid step keep h_0
        h_n = h0.to(h_s.dtype).index_copy(1, order[:active], h_s)  # h_s may be in the autocast dtype
    # Laid out as x: one gather (masked steps read packed row 0), then exact zeros selected at
    # the masked steps (faster than gathering from the output with a zero row appended, which
    # copies it, or than zero-filling an output and scattering the packed rows into it).
    out = out_p.index_select(0, reads.clamp_max_(total - 1))
    shape = (n, t) if batch_first else (t, n)
    keep = valid if batch_first else valid.t()
    select_into(out.view(*shape, -1), keep.unsqueeze(-1), out=out.view(*shape, -1))
    return out.view(*shape, out.shape[-1]), h_n


def _max_power_of_two(dtype: torch.dtype) -> float:
    return math.ldexp(1.0, math.frexp(torch.finfo(dtype).max)[1] - 1)


def _saturating_value(dtype: torch.dtype, device_type: str) -> float:
    """The largest power of two of the dtype the kernel computes in (so ``v * v`` overflows).

    A power of two, not the dtype's largest value: kernels may round their float32
    operands to fewer mantissa bits (TF32 in cuDNN and cuBLAS on NVIDIA GPUs, on by
    default for cuDNN's recurrent kernels), which turns ``finfo(float32).max`` into
    ``inf``, and then ``0 * inf`` gives NaN at every valid step. A power of two is exact in
    every such format. Under autocast a float32 kernel may run in the autocast dtype:
    ``v`` must stay finite after that cast too.
    """
    v = _max_power_of_two(dtype)
    if dtype == torch.float32 and torch.is_autocast_enabled(device_type):
        v = min(v, _max_power_of_two(torch.get_autocast_dtype(device_type)))
    return v


def _gru_pads_first(cfg: _Config, params: Sequence[Tensor], h0: Tensor) -> Tensor:
    """(N,) bool: the GRU sequences whose padded steps may run first, from ``h_0``.

    A padded step from ``h_0`` forms ``W_hh h_0 + b_hh``, the product the plain layer forms
    at the first valid step; its gates are forced by infinities (``r = 0``, ``z = 1``), so a
    product that overflows there would give ``-inf + inf``. In the backward it forms
    ``g * h_0`` (``g`` the gradient with respect to ``h_0``) into the update gate, whose
    derivative is an exact 0: finite for ``|h_0| <= 1`` (every state a GRU computes from such
    a state is), ``inf * 0 = NaN`` where it overflows. Where any layer's and direction's
    product is not finite or ``|h_0| > 1``, the sequence keeps its valid steps first (right
    padding, from ``h_0``: its first step is then exactly the plain layer's first step).
    """
    ok: Tensor | None = None
    for k in range(h0.shape[0]):
        w = params[k * cfg.per : (k + 1) * cfg.per]
        gh = F.linear(h0[k], w[1], w[3] if cfg.bias else None)
        fin = gh.isfinite().all(-1) & (h0[k].abs() <= 1).all(-1)
        ok = fin if ok is None else ok & fin
    assert ok is not None
    return ok


def _run_direction(
    cfg: _Config,
    x: Tensor,
    pad_feature: Tensor | None,
    feed: Tensor | None,
    w: Sequence[Tensor],
    h0: Tensor,
    c0: Tensor | None,
    v: float,
    anchor: bool,
    cancel_bias: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """One unidirectional single-layer kernel call on a compacted time-major batch ``x`` (Tm, N, F).

    ``pad_feature`` (Tm, N, 1) is 0 at valid steps and ``v`` at the padded steps that
    come first (LSTM, GRU and relu RNN); with ``cancel_bias`` (a GRU given ``h_0``, with
    biases) it is (Tm, N, 2), its second feature 1 there. It is appended to ``x`` here;
    None when ``x`` already ends with it.
    ``feed`` (Tm, N, H_out), LSTM and relu RNN only, holds ``h_0`` at each sequence's first
    valid position and 0 elsewhere; it is appended to the input with weight ``W_hh``, so
    that the kernel runs from a zero state (None when ``h_0`` is zero).
    ``anchor`` is set on the static path (see the work-around below). Returns the
    outputs (Tm, N, H_out) and, for LSTM, the kernel's final cell state (N, H): the
    state after each sequence's last valid step, since padded steps carry ``c`` over
    exactly (and give the output 0: the output gate is closed too).
    """
    # `train` only picks the kernel's variant here (a single-layer call has no dropout): the
    # training one, which keeps what a backward needs, exactly when a gradient may be asked for;
    # the faster inference one otherwise (also in train mode under torch.no_grad()).
    train = torch.is_grad_enabled() and any(
        t.requires_grad for t in (x, h0, *w, *(() if c0 is None else (c0,)))
    )
    args = (cfg.bias, 1, 0.0, train, False, False)  # time-major
    if cfg.mode == "RNN_TANH":
        out, _ = _KERNEL_FNS[cfg.mode](x, h0.unsqueeze(0), list(w), *args)
        return out, None
    w_ih = w[0]
    gates = w_ih.shape[0]
    if cfg.mode == "GRU":
        hidden = gates // 3
        # Gate order r, z, n: padded steps get -inf into the reset gate and +inf into the update
        # gate, so h' = (h - n) * 1 + n: h = 0 is carried exactly whatever n is; a nonzero h_0
        # needs n = 0 too: -b_in through the second feature, n = tanh(0 + 0 * (W_hn h + b_hn)).
        # b_in is a constant here (detached).
        full = [torch.full((hidden, 1), u, dtype=w_ih.dtype, device=w_ih.device) for u in (-v, v, 0.0)]
        col = torch.cat(full)
        if cancel_bias:
            zeros = torch.zeros(2 * hidden, 1, dtype=w_ih.dtype, device=w_ih.device)
            col = torch.cat([col, torch.cat([zeros, -w[2].detach()[2 * hidden :].unsqueeze(1)])], 1)
    elif cfg.mode == "LSTM":
        hidden = gates // 4
        # Gate order i, f, g, o: padded steps get -inf into the input and output gates, +inf into
        # the forget gate: c is carried over, and h is exactly 0 there.
        full = [torch.full((hidden, 1), u, dtype=w_ih.dtype, device=w_ih.device) for u in (-v, v, 0.0, -v)]
        col = torch.cat(full)
    else:
        col = torch.full((gates, 1), -v, dtype=w_ih.dtype, device=w_ih.device)
    if feed is not None:  # W_hh h_0 enters through the input at the first valid step
        col = torch.cat([col, w[1]], 1)
    params = [torch.cat([w_ih, col], 1), *w[1:]]
    if pad_feature is not None and anchor and not x.requires_grad and not torch.compiler.is_exporting():
        # Work-around for a PyTorch bug: compiled (aot_eager, inductor) oneDNN LSTM layers fail in
        # the forward when their input needs no gradient but a weight or state does ("expected all
        # tensors_saved_with_vc_check to be Tensors"). Make the input depend on one such tensor
        # through an exact 0 (a select, never a product, so Inf/NaN there cannot leak).
        need = [t for t in (*w, h0, *(() if c0 is None else (c0,))) if t.requires_grad]
        if need:
            first = need[0].reshape(-1)[0]
            off = torch.zeros((), dtype=torch.bool, device=x.device)
            pad_feature = pad_feature + torch.where(off, first, torch.zeros_like(first))
    x_aug = x if pad_feature is None else torch.cat([x, pad_feature], -1)
    if feed is not None:
        x_aug = torch.cat([x_aug, feed.to(x_aug.dtype)], -1)
    if cfg.mode == "LSTM":
        assert c0 is not None
        out, _, c_n = torch._VF.lstm(x_aug, (h0.unsqueeze(0), c0.unsqueeze(0)), params, *args)
        return out, c_n[0]
    out, _ = _KERNEL_FNS[cfg.mode](x_aug, h0.unsqueeze(0), params, *args)
    return out, None


def _gather(x3: Tensor, first: Tensor, second: Tensor, fast: bool) -> Tensor:
    """``x3[first, second]``: rows of a 3-d tensor picked by two broadcasting integer indices.

    The fast path reads them with one ``index_select`` over the rows (3-4x faster than
    advanced indexing on CPU); elsewhere it is advanced indexing, which tracers follow
    without guards on strides.
    """
    if not fast:
        return x3[first, second]
    shape = torch.broadcast_shapes(first.shape, second.shape)
    rows = (first * x3.shape[1] + second).expand(shape).reshape(-1)
    width = x3.shape[-1]
    return x3.reshape(x3.shape[0] * x3.shape[1], width).index_select(0, rows).view(*shape, width)


def _zero_where_not(x: Tensor, keep: Tensor, fast: bool) -> Tensor:
    """``x`` (A, B, W) with exact zeros where ``keep`` (A, B) is False; a select, never a product.

    On the fast path the zeros are written in place into ``x`` (a fresh gather), and only
    into the rows to drop; elsewhere it is ``select`` (``torch.where``).
    """
    if not fast:
        return select(x, keep.unsqueeze(-1))
    a, b, w = x.shape
    drop = (~keep).reshape(a * b).nonzero().squeeze(1)
    return x.view(a * b, w).index_fill_(0, drop, 0).view(a, b, w)


def _compacted(
    cfg: _Config,
    x: Tensor,
    batch_first: bool,
    valid: Tensor,
    params: Sequence[Tensor],
    h0: Tensor,
    c0: Tensor | None,
    hx_given: bool,
    steps_run: int | None,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Compact, run each layer and direction once over ``Tm`` steps, put back.

    ``x`` is in the caller's layout (``batch_first`` or not), ``valid`` is (N, T).
    ``hx_given`` is False when ``h0`` is all zeros by construction (no ``hx``).
    ``steps_run`` is the longest sequence's number of valid steps on the eager fast
    path (``Tm``), and None on the static path (all ``T`` steps). The compacted batch
    is built time-major, ``(Tm, N, F)``, the kernels' native layout, so that they copy
    nothing. The output comes back in the caller's layout. No Python branch on tensor
    values.
    """
    n, t = valid.shape
    fast = steps_run is not None
    tm = t if steps_run is None else steps_run
    dev = x.device
    counts = valid.long()  # ONNX has no CumSum of bool (the legacy exporter would emit one)
    lengths = counts.sum(1)  # (N,)
    csum = counts.cumsum(1)
    steps_t = torch.arange(t, device=dev)
    # dest[i, s]: the compacted position of step s (valid steps first, in order, then the masked ones).
    dest = torch.where(valid, csum - 1, lengths.unsqueeze(1) + steps_t - csum)
    # The LSTM's and relu RNN's valid steps end at position Tm - 1 instead (padding first): the
    # same order rotated by Tm - L_i, so that their padded steps never see a sequence's state h.
    # The GRU's too, where its padded steps can carry h_0 exactly (see _gru_pads_first).
    left = cfg.mode in ("LSTM", "RNN_RELU", "GRU")
    first = (tm - lengths).unsqueeze(1) if left else torch.zeros_like(lengths).unsqueeze(1)  # (N, 1)
    mixed = cfg.mode == "GRU" and hx_given  # some sequences may keep right padding
    if mixed:
        first = torch.where(_gru_pads_first(cfg, params, h0).unsqueeze(1), first, 0)
    if left:
        dest = dest + first
        dest = torch.where(dest >= t, dest - t, dest)
    # src[i, k]: the step at compacted position k (dest inverted).
    src = torch.zeros_like(dest).scatter(1, dest, steps_t.expand(n, t))[:, :tm]
    steps = torch.arange(tm, device=dev)
    # (N, Tm): compacted positions holding a valid step, [first_i, first_i + L_i)
    inside = (steps >= first) & (steps < first + lengths.unsqueeze(1))
    inside_tm = inside.t()  # (Tm, N)
    batch = torch.arange(n, device=dev)
    has_any = (lengths > 0).unsqueeze(1)  # (N, 1)
    last = (first[:, 0] + lengths - 1).clamp(min=0)  # (N,): the position of the last valid step
    rev: Tensor | None = None
    if cfg.bidirectional:  # position first + k <-> first + L_i - 1 - k inside each sequence, padding in place
        rev = torch.where(inside, 2 * first + lengths.unsqueeze(1) - 1 - steps, steps).t()  # (Tm, N)
    # Their h_0 enters as an input (the padded steps run from h = 0): h_0 at each sequence's
    # first valid position, 0 elsewhere, with weight W_hh (see _run_direction). The LSTM's c_0
    # is the kernel's initial state, carried exactly through the padded steps.
    feed_at: Tensor | None = None
    fed = cfg.mode in ("LSTM", "RNN_RELU")
    if fed and hx_given:
        feed_at = (steps == first).t().unsqueeze(-1)  # (Tm, N, 1)
    pad_feature: Tensor | None = None
    v = 0.0
    zero = torch.zeros((), dtype=x.dtype, device=dev)
    augment = cfg.mode != "RNN_TANH"
    # Only the padded steps that come first are forced: a GRU sequence padded after its valid
    # steps (see _gru_pads_first) runs them unforced, its results discarded, since there the
    # forced gates could meet an overflowed W_hh h_n of the other sign.
    forced_tm = (steps < first).t()  # (Tm, N): every padded step but for those GRU sequences
    pad_row: tuple[float, ...] = ()
    if augment:
        v = _saturating_value(x.dtype, dev.type)
        # A GRU given h_0: the second feature (1 at padded steps) cancels b_in (new gate 0 there).
        pad_row = (v, 1.0) if mixed and cfg.bias else (v,)
        pad_feature = torch.where(
            forced_tm.unsqueeze(-1), torch.tensor(pad_row, dtype=x.dtype, device=dev), zero
        )
    # Sequences with no valid step run from a zero state (their final state is selected below),
    # and h runs from zero in every LSTM and relu sequence (h_0 is an input, fed at the first valid step).
    h0_run = torch.zeros_like(h0) if fed else torch.where(has_any.unsqueeze(0), h0, zero)
    c0_run = None if c0 is None else torch.where(has_any.unsqueeze(0), c0, zero)
    src_tm = src.t()  # (Tm, N): the step read at each compacted (time-major) position
    source: Tensor | None = None
    if fast and augment:
        # The input rows with the padded-step features appended, and one extra row for padded
        # positions: (0, ..., 0, v[, 1]). One gather then builds the kernel's input, no zeroing.
        # A GRU given h_0 also has a zero row, for the padded steps that follow valid ones.
        f = x.shape[-1]
        source = x.new_empty(n * t + 1 + int(mixed), f + len(pad_row))
        source[: n * t, :f] = x.reshape(n * t, f)
        source[: n * t, f:] = 0
        source[n * t :] = 0
        source[n * t, f:] = torch.tensor(pad_row, dtype=x.dtype)

    def gather_input(step: Tensor) -> Tensor:
        if source is not None:
            rows = step * n + batch if not batch_first else batch * t + step
            pad_rows = torch.where(forced_tm, n * t, n * t + 1) if mixed else n * t
            rows = torch.where(inside_tm, rows, pad_rows)
            return source.index_select(0, rows.reshape(-1)).view(tm, n, source.shape[-1])
        # Padded positions read a masked step of their own sequence, zeroed here (NaN-safe).
        picked = _gather(x, batch, step, fast) if batch_first else _gather(x, step, batch, fast)
        return _zero_where_not(picked, inside_tm, fast)

    layer_in = gather_input(src_tm)  # (Tm, N, F)
    h_list: list[Tensor] = []
    c_list: list[Tensor] = []
    for layer in range(cfg.num_layers):
        outs = []
        for direction in range(cfg.d):
            k = layer * cfg.d + direction
            w = params[k * cfg.per : (k + 1) * cfg.per]
            xin = layer_in
            if direction == 1:
                assert rev is not None
                if layer == 0:
                    xin = gather_input(src_tm.gather(0, rev))
                else:
                    xin = _gather(layer_in, rev, batch, fast)
            c0k = None if c0_run is None else c0_run[k]
            feature = None if layer == 0 and source is not None else pad_feature
            feed = None if feed_at is None else torch.where(feed_at, h0[k], zero)
            out, c_last = _run_direction(
                cfg, xin, feature, feed, w, h0_run[k], c0k, v, not fast, len(pad_row) == 2
            )
            h_last = _gather(out, last, batch, fast)  # (N, H_out)
            h_list.append(torch.where(has_any, h_last, h0[k].to(h_last.dtype)))
            if c_last is not None:
                assert c0 is not None
                c_list.append(torch.where(has_any, c_last, c0[k].to(c_last.dtype)))
            if direction == 1:
                assert rev is not None
                out = _gather(out, rev, batch, fast)
            outs.append(out)
        layer_in = outs[0] if cfg.d == 1 else torch.cat(outs, -1)
        if layer < cfg.num_layers - 1 and cfg.dropout > 0 and cfg.training:
            layer_in = F.dropout(layer_in, cfg.dropout, True)
    h_n = torch.stack(h_list)
    c_n = torch.stack(c_list) if c_list else None
    # Back to the original time positions; masked steps read some row and are zeroed.
    if fast and cfg.mode == "LSTM" and not _needs_grad(x, h0, c0, params):
        # Inference: padded LSTM outputs are exact zeros (closed output gate); masked steps read
        # one of them (the shortest sequence's first position), when there is one, instead of
        # being zeroed in a second pass.
        shortest = int(lengths.argmin())
        if int(lengths[shortest]) < tm:
            rows = torch.where(valid, dest * n + batch.unsqueeze(1), shortest)
            rows = rows if batch_first else rows.t()
            width = layer_in.shape[-1]
            flat_out = layer_in.reshape(tm * n, width)
            return flat_out.index_select(0, rows.reshape(-1)).view(*rows.shape, width), h_n, c_n
    out_step = dest if not fast else torch.where(valid, dest, 0)  # dest < Tm at valid steps
    if batch_first:
        out_full = _zero_where_not(_gather(layer_in, out_step, batch.unsqueeze(1), fast), valid, fast)
    else:
        out_full = _zero_where_not(_gather(layer_in, out_step.t(), batch, fast), valid.t(), fast)
    return out_full, h_n, c_n


def _needs_grad(x: Tensor, h0: Tensor, c0: Tensor | None, params: Sequence[Tensor]) -> bool:
    """Whether autograd records this call (a backward may follow)."""
    if not torch.is_grad_enabled():
        return False
    return any(t is not None and t.requires_grad for t in (x, h0, c0, *params))


def _cell(
    mode: str, x: Tensor, h: Tensor, c: Tensor | None, w: Sequence[Tensor], bias: bool
) -> tuple[Tensor, Tensor | None]:
    """One step of the cell in plain ops (the step-by-step path)."""
    gi = F.linear(x, w[0], w[2] if bias else None)
    gh = F.linear(h, w[1], w[3] if bias else None)
    if mode == "LSTM":
        assert c is not None
        i, f, g, o = (gi + gh).chunk(4, -1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        if len(w) == 2 + 2 * int(bias) + 1:
            h = F.linear(h, w[-1])
        return h, c
    if mode == "GRU":
        ir, iz, in_ = gi.chunk(3, -1)
        hr, hz, hn = gh.chunk(3, -1)
        r = torch.sigmoid(ir + hr)
        z = torch.sigmoid(iz + hz)
        cand = torch.tanh(in_ + r * hn)
        return cand + z * (h - cand), None
    return (torch.tanh if mode == "RNN_TANH" else torch.relu)(gi + gh), None


def _stepwise(
    cfg: _Config, data: Tensor, valid: Tensor, params: Sequence[Tensor], h0: Tensor, c0: Tensor | None
) -> tuple[Tensor, Tensor, Tensor | None]:
    """A loop over the T steps in plain ops, state carried with ``torch.where`` (for ``torch.func``);
    masked steps run the cell from a zero state and are discarded."""
    t = data.shape[1]
    zero = torch.zeros((), dtype=data.dtype, device=data.device)
    layer_in = torch.where(valid.unsqueeze(-1), data, zero)
    h_list: list[Tensor] = []
    c_list: list[Tensor] = []
    for layer in range(cfg.num_layers):
        outs = []
        for direction in range(cfg.d):
            k = layer * cfg.d + direction
            w = params[k * cfg.per : (k + 1) * cfg.per]
            h = h0[k]
            c = None if c0 is None else c0[k]
            step_out: list[Tensor] = [zero] * t
            for s in reversed(range(t)) if direction else range(t):
                m = valid[:, s : s + 1]
                # A masked step runs from a zero state: its result is discarded, and from the
                # carried state it would form W_hh h, which may overflow (then 0 * NaN in the
                # backward) where the plain layer forms nothing.
                h_in = torch.where(m, h, zero)
                c_in = None if c is None else torch.where(m, c, zero)
                h_new, c_new = _cell(cfg.mode, layer_in[:, s], h_in, c_in, w, cfg.bias)
                h = torch.where(m, h_new, h)
                if c is not None and c_new is not None:
                    c = torch.where(m, c_new, c)
                step_out[s] = torch.where(m, h_new, zero)
            h_list.append(h)
            if c is not None:
                c_list.append(c)
            outs.append(torch.stack(step_out, 1))
        layer_in = outs[0] if cfg.d == 1 else torch.cat(outs, -1)
        if layer < cfg.num_layers - 1 and cfg.dropout > 0 and cfg.training:
            layer_in = torch.where(valid.unsqueeze(-1), F.dropout(layer_in, cfg.dropout, True), zero)
    return layer_in, torch.stack(h_list), torch.stack(c_list) if c_list else None


def _check_state(
    op: str,
    name: str,
    s: Tensor,
    expected: tuple[int, int, int],
    unbatched: bool,
    dtype: torch.dtype,
    device: torch.device,
) -> None:
    if not isinstance(s, Tensor):
        raise TypeError(f"{op}: expected {name} as a tensor, got {type(s).__name__}")
    if tuple(s.shape) != expected:
        exp = expected if not unbatched else (expected[0], expected[2])
        got = tuple(s.shape) if not unbatched else (s.shape[0],) + tuple(s.shape[2:])
        raise ValueError(f"{op}: expected {name} of shape {shape_str(exp)}, got {shape_str(got)}")
    if s.dtype != dtype or s.device != device:
        raise TypeError(
            f"{op}: {name} {shape_str(s.shape)} is {s.dtype} on {s.device}; expected {dtype} on {device} "
            "like the data"
        )


def masked_lstm(
    x: Tensor,
    mask: object,
    params: Sequence[Tensor],
    hx: tuple[Tensor, Tensor] | None = None,
    *,
    hidden_size: int,
    num_layers: int = 1,
    bias: bool = True,
    batch_first: bool = True,
    dropout: float = 0.0,
    training: bool = False,
    bidirectional: bool = False,
    proj_size: int = 0,
) -> tuple[Masked, tuple[Tensor, Tensor]]:
    """Masked LSTM with Keras semantics (see the module docstring); no Python loop over time.

    Args:
        x: ``(N, T, F)`` (``(T, N, F)`` with ``batch_first=False``), or unbatched ``(T, F)``.
        mask: per-step mask, ``(N, T)`` or ``(N, T, 1)``, True = valid.
        params: weights in ``nn.LSTM._flat_weights`` order.
        hx: optional ``(h_0, c_0)``, shapes as for ``nn.LSTM``.

    Returns:
        ``(Masked output, (h_n, c_n))``: the output is 0 and masked at masked
        steps; ``h_n``/``c_n`` hold the state after each sequence's last valid step.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> lstm = nn.LSTM(3, 4, batch_first=True)
        >>> x = torch.randn(2, 5, 3)
        >>> mask = torch.tensor([[1, 1, 0, 1, 0], [0, 0, 0, 0, 0]], dtype=torch.bool)
        >>> out, (h, c) = masked_lstm(x, mask, lstm._flat_weights, hidden_size=4)
        >>> out.data.shape, h.shape
        (torch.Size([2, 5, 4]), torch.Size([1, 2, 4]))
        >>> bool((out.data[0, 3] == h[0, 0]).all()), bool((h[0, 1] == 0).all())
        (True, True)
    """
    out, h, c = masked_recurrent(
        "LSTM",
        x,
        mask,
        params,
        hx,
        hidden_size=hidden_size,
        num_layers=num_layers,
        bias=bias,
        batch_first=batch_first,
        dropout=dropout,
        training=training,
        bidirectional=bidirectional,
        proj_size=proj_size,
        op="masked_lstm",
    )
    assert c is not None
    return out, (h, c)


def masked_gru(
    x: Tensor,
    mask: object,
    params: Sequence[Tensor],
    hx: Tensor | None = None,
    *,
    hidden_size: int,
    num_layers: int = 1,
    bias: bool = True,
    batch_first: bool = True,
    dropout: float = 0.0,
    training: bool = False,
    bidirectional: bool = False,
) -> tuple[Masked, Tensor]:
    """Masked GRU with Keras semantics; arguments as [`masked_lstm`][masknn.functional.masked_lstm],
    ``params`` as ``nn.GRU``.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> gru = nn.GRU(3, 4)
        >>> x = torch.randn(5, 2, 3)  # time first
        >>> m = torch.rand(5, 2) > 0.3
        >>> out, h = masked_gru(x, m, gru._flat_weights, hidden_size=4, batch_first=False)
        >>> out.data.shape, out.mask.shape, h.shape
        (torch.Size([5, 2, 4]), torch.Size([5, 2, 1]), torch.Size([1, 2, 4]))
    """
    out, h, _ = masked_recurrent(
        "GRU",
        x,
        mask,
        params,
        hx,
        hidden_size=hidden_size,
        num_layers=num_layers,
        bias=bias,
        batch_first=batch_first,
        dropout=dropout,
        training=training,
        bidirectional=bidirectional,
        op="masked_gru",
    )
    return out, h


def masked_rnn(
    x: Tensor,
    mask: object,
    params: Sequence[Tensor],
    hx: Tensor | None = None,
    *,
    hidden_size: int,
    nonlinearity: str = "tanh",
    num_layers: int = 1,
    bias: bool = True,
    batch_first: bool = True,
    dropout: float = 0.0,
    training: bool = False,
    bidirectional: bool = False,
) -> tuple[Masked, Tensor]:
    """Masked Elman RNN (``tanh`` or ``relu``) with Keras semantics; ``params`` as ``nn.RNN``.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> rnn = nn.RNN(3, 4, batch_first=True)
        >>> out, h = masked_rnn(torch.randn(2, 5, 3), torch.ones(2, 5), rnn._flat_weights, hidden_size=4)
        >>> out.data.shape
        torch.Size([2, 5, 4])
    """
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"masked_rnn: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    out, h, _ = masked_recurrent(
        "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU",
        x,
        mask,
        params,
        hx,
        hidden_size=hidden_size,
        num_layers=num_layers,
        bias=bias,
        batch_first=batch_first,
        dropout=dropout,
        training=training,
        bidirectional=bidirectional,
        op="masked_rnn",
    )
    return out, h
