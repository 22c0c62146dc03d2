"""Masked recurrent layers with Keras semantics, run on PyTorch's fused kernels.

Semantics (Keras ``Masking`` + ``LSTM``/``GRU``/``SimpleRNN``, for *any* step
mask: right padding, left padding, holes): a masked step is skipped and the
state carried over; the output at a masked step is 0 and masked; the final
state ``h_n`` (and ``c_n``) is the state after each sequence's last valid step;
the backward direction of a bidirectional layer walks the valid steps in
reverse order. A sequence with no valid step gives zero outputs and returns the
initial state (zeros, or ``hx``).

How it runs without a Python loop over time:

1. **Compaction.** A stable sort of each sequence's step mask moves its valid
   steps, in order, to the front (one ``gather``). The batch is now
   right-padded with lengths ``L_i``, and the kernel only runs
   ``max_i L_i`` steps (fewer than ``T`` when there are holes). A batch that is
   already right-padded skips the sort and gather; a batch with no masked step
   at all runs the plain multi-layer kernel exactly as ``nn.LSTM`` does.
2. **One fused kernel call per layer and direction** on that padded batch
   (``torch._VF.lstm``/``gru``/``rnn_*``, the kernels behind ``nn.LSTM``). The
   outputs at positions ``< L_i`` are exact because padding only follows them.
   The backward direction runs the same kernel on each sequence's valid steps
   flipped in place (a per-sample ``gather``), so it also starts at the last
   valid step and padding again only follows.
3. **Final states.** ``h_n`` is the output at position ``L_i - 1``. For the
   LSTM cell state, the padded steps are made exact no-ops for ``c``: the
   kernel gets one extra input feature, 1 at padded steps and 0 at valid steps,
   whose weight column adds a large constant to the forget gate and subtracts
   it from the input gate. At valid steps it contributes exactly ``0``; at
   padded steps ``sigmoid`` saturates to exactly 1 (forget) and 0 (input), so
   ``c`` is carried unchanged to the kernel's final ``c_n``, and every gradient
   through the padded steps is exactly 0. The constant is chosen from the
   weights and ``hx`` so it dominates every other term of the gate.
4. **Scatter** the compacted outputs back to their original time positions.

The helpers take ``params`` in the order of ``nn.LSTM._flat_weights`` (per
layer, per direction: ``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``,
and ``weight_hr`` for LSTM with ``proj_size``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from masknn._masked import Masked
from masknn._validation import check_data, shape_str
from masknn.functional._sequence import sequence_step_mask

__all__ = ["masked_gru", "masked_lstm", "masked_recurrent", "masked_rnn"]

_KERNELS = {"LSTM", "GRU", "RNN_TANH", "RNN_RELU"}
_KERNEL_FNS = {"GRU": torch._VF.gru, "RNN_TANH": torch._VF.rnn_tanh, "RNN_RELU": torch._VF.rnn_relu}


def _big(w_hh: Tensor, biases: Sequence[Tensor], w_hr: Tensor | None, h0: Tensor) -> Tensor:
    """A constant that dominates every gate pre-activation at a padded step (input there is 0)."""
    with torch.no_grad():
        h_bound = torch.ones((), dtype=torch.float32, device=w_hh.device)
        if w_hr is not None:
            h_bound = torch.maximum(h_bound, w_hr.detach().float().abs().sum(1).max())
        if h0.numel():
            h_bound = torch.maximum(h_bound, h0.detach().float().abs().max())
        bound = w_hh.detach().float().abs().sum(1) * h_bound
        for b in biases:
            bound = bound + b.detach().float().abs()
        # 1000: sigmoid(+-1000) is exactly 1 / 0 in float16 ... float64 alike.
        return bound.max() + 1000.0


def _run_direction(
    mode: str,
    x: Tensor,
    pad: Tensor,
    w: Sequence[Tensor],
    h0: Tensor,
    c0: Tensor | None,
    bias: bool,
    training: bool,
) -> tuple[Tensor, Tensor | None]:
    """One unidirectional single-layer kernel call on a right-padded batch ``x`` (N, Tm, F).

    Returns the outputs (N, Tm, H_out) and, for LSTM, the cell state after each
    sequence's last valid step (N, H).
    """
    if mode == "LSTM":
        assert c0 is not None
        w_ih, w_hh = w[0], w[1]
        biases = list(w[2:4]) if bias else []
        w_hr = w[-1] if len(w) == 2 + 2 * bias + 1 else None
        hidden = w_hh.shape[1] if w_hr is None else w_hr.shape[1]
        big = _big(w_hh, biases, w_hr, h0).to(w_ih.dtype)
        zero = torch.zeros((), dtype=w_ih.dtype, device=w_ih.device)
        col = torch.cat(
            [
                (-big).expand(hidden),  # input gate -> sigmoid = 0
                big.expand(hidden),  # forget gate -> sigmoid = 1
                zero.expand(2 * hidden),  # cell candidate, output gate
            ]
        ).unsqueeze(1)
        w_aug = torch.cat([w_ih, col], 1)
        x_aug = torch.cat([x, pad.to(x.dtype).unsqueeze(-1)], -1)
        params = [w_aug, *w[1:]]
        out, _, c_n = torch._VF.lstm(
            x_aug, (h0.unsqueeze(0), c0.unsqueeze(0)), params, bias, 1, 0.0, training, False, True
        )
        return out, c_n[0]
    out, _ = _KERNEL_FNS[mode](x, h0.unsqueeze(0), list(w), bias, 1, 0.0, training, False, True)
    return out, None


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
    """
    if mode not in _KERNELS:
        raise ValueError(f"{op}: mode must be one of {sorted(_KERNELS)}, got {mode!r}")
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

    if n and t and bool(valid.all()):
        # Nothing masked: exactly the plain layer (one multi-layer kernel call, its own dropout).
        out_full, h_n, c_n = _plain(
            mode, data, params, h0, c0, bias, num_layers, dropout, training, bidirectional
        )
    else:
        out_full, h_n, c_n = _compacted(
            mode, data, valid, params, h0, c0, bias, num_layers, dropout, training, bidirectional, per
        )
    out_mask = valid.unsqueeze(-1)
    if not batch_first:
        out_full = out_full.transpose(0, 1)
        out_mask = out_mask.transpose(0, 1)
    if unbatched:
        b = 0 if batch_first else 1
        out_full, out_mask = out_full.squeeze(b), out_mask.squeeze(b)
        h_n = h_n.squeeze(1)
        c_n = c_n.squeeze(1) if c_n is not None else None
    return Masked(out_full, out_mask), h_n, c_n


def _plain(
    mode: str,
    data: Tensor,
    params: Sequence[Tensor],
    h0: Tensor,
    c0: Tensor | None,
    bias: bool,
    num_layers: int,
    dropout: float,
    training: bool,
    bidirectional: bool,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """The plain multi-layer kernel on a batch-first batch with no masked step (as ``nn.LSTM``)."""
    if mode == "LSTM":
        assert c0 is not None
        out, h, c = torch._VF.lstm(
            data, (h0, c0), list(params), bias, num_layers, dropout, training, bidirectional, True
        )
        return out, h, c
    out, h = _KERNEL_FNS[mode](
        data, h0, list(params), bias, num_layers, dropout, training, bidirectional, True
    )
    return out, h, None


def _compacted(
    mode: str,
    data: Tensor,
    valid: Tensor,
    params: Sequence[Tensor],
    h0: Tensor,
    c0: Tensor | None,
    bias: bool,
    num_layers: int,
    dropout: float,
    training: bool,
    bidirectional: bool,
    per: int,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Compact, run each layer and direction once on the right-padded batch, put back (batch first)."""
    n, t, f = data.shape
    d = 2 if bidirectional else 1
    lengths = valid.sum(1)  # (N,)
    # Compaction: valid steps first, in order (skipped when the batch is already right-padded).
    data = torch.where(valid.unsqueeze(-1), data, torch.zeros((), dtype=data.dtype, device=data.device))
    tm = max(1, int(lengths.max())) if n and t else 1
    if t == 0:
        data = torch.zeros(n, 1, f, dtype=data.dtype, device=data.device)
    steps = torch.arange(tm, device=data.device)
    inside = steps.unsqueeze(0) < lengths.unsqueeze(1)  # (N, Tm)
    pad = ~inside
    idx: Tensor | None = None
    if t == 0 or bool((valid[:, :tm] == inside).all()):  # right padding (then valid[:, tm:] is all False)
        layer_in = data[:, :tm]
    else:
        order = torch.argsort((~valid).to(torch.uint8), dim=1, stable=True)  # (N, T)
        idx = order[:, :tm]
        layer_in = data.gather(1, idx.unsqueeze(-1).expand(n, tm, f))  # pads hold canonical zeros
    last = (lengths - 1).clamp(min=0)
    has_any = (lengths > 0).unsqueeze(-1)  # (N, 1)
    rev = (
        torch.where(inside, lengths.unsqueeze(1) - 1 - steps.unsqueeze(0), steps.unsqueeze(0))
        if bidirectional
        else None
    )
    zero = torch.zeros((), dtype=data.dtype, device=data.device)

    h_list: list[Tensor] = []
    c_list: list[Tensor] = []
    out_c = layer_in
    for layer in range(num_layers):
        outs = []
        for direction in range(d):
            k = layer * d + direction
            w = params[k * per : (k + 1) * per]
            src = layer_in
            if direction == 1:
                assert rev is not None
                src = layer_in.gather(1, rev.unsqueeze(-1).expand_as(layer_in))
            c0k = None if c0 is None else c0[k]
            out, c_last = _run_direction(mode, src, pad, w, h0[k], c0k, bias, training)
            out = torch.where(inside.unsqueeze(-1), out, zero)
            h_last = out.gather(1, last.view(n, 1, 1).expand(n, 1, out.shape[-1])).squeeze(1)
            h_list.append(torch.where(has_any, h_last, h0[k]))
            if c_last is not None:
                c_list.append(c_last)
            if direction == 1:
                assert rev is not None
                out = out.gather(1, rev.unsqueeze(-1).expand_as(out))
            outs.append(out)
        out_c = outs[0] if d == 1 else torch.cat(outs, -1)
        if layer < num_layers - 1:
            layer_in = out_c
            if dropout > 0 and training:
                layer_in = F.dropout(layer_in, dropout, training)
    h_n = torch.stack(h_list)
    c_n = torch.stack(c_list) if c_list else None

    # Back to the original time positions (pads land on masked steps as zeros).
    width = out_c.shape[-1]
    if idx is None:
        out_full = F.pad(out_c, (0, 0, 0, t - tm))[:, :t]
    else:
        out_full = torch.zeros(n, t, width, dtype=out_c.dtype, device=out_c.device)
        out_full = out_full.scatter(1, idx.unsqueeze(-1).expand(n, tm, width), out_c)
    return out_full, h_n, c_n


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
