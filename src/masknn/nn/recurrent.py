"""Masked LSTM / GRU / RNN: Keras masking semantics at the speed of the fused kernel.

Each subclasses its ``torch.nn`` twin (same constructor, same parameter names), so
a plain layer's ``state_dict`` loads unchanged, and runs
[`masknn.functional.masked_lstm`][] (resp. ``masked_gru``, ``masked_rnn``).
"""

from __future__ import annotations

from torch import Tensor, nn

from masknn._masked import Masked, as_masked
from masknn.functional.recurrent import masked_recurrent

__all__ = ["MaskedGRU", "MaskedLSTM", "MaskedRNN"]


def _run(
    module: nn.RNNBase, input: Masked | Tensor, hx: Tensor | tuple[Tensor, Tensor] | None
) -> tuple[Masked, Tensor, Tensor | None]:
    """Run ``masked_recurrent`` with the module's own configuration and weights."""
    name = type(module).__name__
    x = as_masked(name, input)
    return masked_recurrent(
        module.mode,
        x.data,
        x.mask,
        module._flat_weights,  # type: ignore[arg-type]
        hx,
        hidden_size=module.hidden_size,
        num_layers=module.num_layers,
        bias=module.bias,
        batch_first=module.batch_first,
        dropout=float(module.dropout),
        training=module.training,
        bidirectional=module.bidirectional,
        proj_size=module.proj_size,
        op=name,
    )


class MaskedLSTM(nn.LSTM):
    """``nn.LSTM`` that skips masked timesteps (Keras ``Masking`` + ``LSTM`` semantics).

    Arguments as ``torch.nn.LSTM`` (``input_size``, ``hidden_size``,
    ``num_layers``, ``bias``, ``batch_first``, ``dropout``, ``bidirectional``,
    ``proj_size``, ``device``, ``dtype``); the parameters have the same names, so
    ``MaskedLSTM(...).load_state_dict(plain_lstm.state_dict())`` works.

    ``forward(input, hx=None) -> (Masked output, (h_n, c_n))``:

    * ``input`` is a [`masknn.Masked`][] with data ``(N, T, F)`` (``(T, N, F)``
      with ``batch_first=False``, or unbatched ``(T, F)``) and a per-step mask
      ``(N, T)`` or ``(N, T, 1)``, True = valid (a plain tensor is all valid);
    * any mask works (right or left padding, holes): a masked step is skipped and
      the state carried over; the output there is 0 and masked; the backward
      direction walks the valid steps in reverse order;
    * ``h_n``, ``c_n`` (shapes as ``nn.LSTM``) are the states after each
      sequence's last valid step; a sequence with no valid step returns
      ``hx`` (zeros by default) and zero outputs;
    * dropout between layers as ``nn.LSTM`` (on each layer's valid outputs).

    With an all-True mask it equals ``nn.LSTM`` (same weights) up to float
    rounding; with right padding it equals ``nn.LSTM`` on
    ``pack_padded_sequence``. It runs one fused kernel call per layer and
    direction, no Python loop over time (see ``masknn.functional.recurrent``).

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> lstm = MaskedLSTM(3, 4, batch_first=True)
        >>> x = Masked(torch.randn(2, 5, 3), torch.tensor([[1, 0, 1, 1, 0], [1, 1, 1, 1, 1]]))
        >>> out, (h, c) = lstm(x)
        >>> out.data.shape, out.mask.shape, h.shape, c.shape
        (torch.Size([2, 5, 4]), torch.Size([2, 5, 1]), torch.Size([1, 2, 4]), torch.Size([1, 2, 4]))
        >>> bool((out.data[0, 1] == 0).all()), bool((out.data[0, 3] == h[0, 0]).all())
        (True, True)
    """

    def forward(  # type: ignore[override]
        self, input: Masked | Tensor, hx: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Masked, tuple[Tensor, Tensor]]:
        out, h, c = _run(self, input, hx)
        assert c is not None
        return out, (h, c)


class MaskedGRU(nn.GRU):
    """``nn.GRU`` that skips masked timesteps (Keras ``Masking`` + ``GRU(reset_after=True)``).

    Arguments and parameter names as ``torch.nn.GRU``;
    ``forward(input, hx=None) -> (Masked output, h_n)`` with the semantics of
    [`MaskedLSTM`][masknn.nn.MaskedLSTM].

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> gru = MaskedGRU(3, 4, num_layers=2, bidirectional=True)
        >>> x = Masked(torch.randn(5, 2, 3), torch.rand(5, 2) > 0.3)  # time first
        >>> out, h = gru(x)
        >>> out.data.shape, h.shape
        (torch.Size([5, 2, 8]), torch.Size([4, 2, 4]))
    """

    def forward(  # type: ignore[override]
        self, input: Masked | Tensor, hx: Tensor | None = None
    ) -> tuple[Masked, Tensor]:
        out, h, _ = _run(self, input, hx)
        return out, h


class MaskedRNN(nn.RNN):
    """``nn.RNN`` (tanh or relu) that skips masked timesteps (Keras ``SimpleRNN`` masking).

    Arguments and parameter names as ``torch.nn.RNN``;
    ``forward(input, hx=None) -> (Masked output, h_n)`` with the semantics of
    [`MaskedLSTM`][masknn.nn.MaskedLSTM].

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> rnn = MaskedRNN(3, 4, nonlinearity="relu", batch_first=True)
        >>> out, h = rnn(Masked(torch.randn(2, 5, 3), torch.rand(2, 5) > 0.3))
        >>> out.data.shape, h.shape
        (torch.Size([2, 5, 4]), torch.Size([1, 2, 4]))
    """

    def forward(  # type: ignore[override]
        self, input: Masked | Tensor, hx: Tensor | None = None
    ) -> tuple[Masked, Tensor]:
        out, h, _ = _run(self, input, hx)
        return out, h
