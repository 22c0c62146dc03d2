"""Masked LSTM / GRU / RNN: Keras masking semantics at the speed of the fused kernel.

Each subclasses its ``torch.nn`` twin (same constructor, same parameter names), so
a plain layer's ``state_dict`` loads unchanged, and runs
[`masknn.functional.masked_lstm`][] (resp. ``masked_gru``, ``masked_rnn``).

``return_state=False`` (keyword only, a masknn addition) makes ``forward`` return
only the ``Masked`` output, so that the layer can sit inside ``nn.Sequential``
(Keras' ``LSTM`` returns only its output by default, too).

Under ``torch.compile``, Dynamo refuses to trace into any ``nn.RNN``/``nn.GRU``/
``nn.LSTM`` (sub)class unless ``torch._dynamo.config.allow_rnn = True``: by default
the layer is a graph break and runs eagerly (its fast path), exactly as its
``torch.nn`` twin; with ``allow_rnn`` it is traced into the graph (the static path,
no further graph break). The functional ops compile without the flag.
"""

from __future__ import annotations

from typing import Any

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
    # As nn.LSTM.forward: pick up weights swapped in by torch.func.functional_call or parametrizations.
    module._update_flat_weights()
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


def _check_return_state(name: str, return_state: object) -> bool:
    if not isinstance(return_state, bool):
        raise TypeError(f"{name}: return_state must be True or False, got {return_state!r}")
    return return_state


class _ReturnStateMixin(nn.Module):
    return_state: bool

    def extra_repr(self) -> str:
        s = super().extra_repr()
        return s if getattr(self, "return_state", True) else s + ", return_state=False"


class MaskedLSTM(_ReturnStateMixin, nn.LSTM):
    """``nn.LSTM`` that skips masked timesteps (Keras ``Masking`` + ``LSTM`` semantics).

    Arguments as ``torch.nn.LSTM`` (``input_size``, ``hidden_size``,
    ``num_layers``, ``bias``, ``batch_first``, ``dropout``, ``bidirectional``,
    ``proj_size``, ``device``, ``dtype``); the parameters have the same names, so
    ``MaskedLSTM(...).load_state_dict(plain_lstm.state_dict())`` works. One more
    keyword argument:

    * ``return_state`` (default True): with False, ``forward`` returns only the
      ``Masked`` output, for use inside ``nn.Sequential`` (Keras' default).

    ``forward(input, hx=None) -> (Masked output, (h_n, c_n))`` (``Masked output``
    alone with ``return_state=False``):

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
    direction, no Python loop over time (see ``masknn.functional.recurrent``,
    also for ``torch.compile``, ``torch.export``, ONNX and ``torch.func``).

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

        Inside ``nn.Sequential`` (Keras' ``Masking`` -> ``LSTM`` -> ``Dense``):

        >>> from torch import nn
        >>> from masknn.nn import MaskFromValue, MaskedLinear, MaskedTemporalPool
        >>> model = nn.Sequential(
        ...     MaskFromValue(0.0),
        ...     MaskedLSTM(3, 4, batch_first=True, return_state=False),
        ...     MaskedTemporalPool("last"),
        ...     MaskedLinear(4, 2),
        ... )
        >>> padded = torch.cat([torch.randn(2, 3, 3), torch.zeros(2, 2, 3)], 1)  # zero padding
        >>> model(padded).data.shape
        torch.Size([2, 2])
    """

    def __init__(self, *args: Any, return_state: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.return_state = _check_return_state("MaskedLSTM", return_state)

    def forward(  # type: ignore[override]
        self, input: Masked | Tensor, hx: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Masked, tuple[Tensor, Tensor]] | Masked:
        out, h, c = _run(self, input, hx)
        if not getattr(self, "return_state", True):
            return out
        assert c is not None
        return out, (h, c)


class MaskedGRU(_ReturnStateMixin, nn.GRU):
    """``nn.GRU`` that skips masked timesteps (Keras ``Masking`` + ``GRU(reset_after=True)``).

    Arguments and parameter names as ``torch.nn.GRU``, plus ``return_state``
    as [`MaskedLSTM`][masknn.nn.MaskedLSTM]; ``forward(input, hx=None) -> (Masked output, h_n)``
    (the ``Masked`` output alone with ``return_state=False``) with the semantics
    of [`MaskedLSTM`][masknn.nn.MaskedLSTM].

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> gru = MaskedGRU(3, 4, num_layers=2, bidirectional=True)
        >>> x = Masked(torch.randn(5, 2, 3), torch.rand(5, 2) > 0.3)  # time first
        >>> out, h = gru(x)
        >>> out.data.shape, h.shape
        (torch.Size([5, 2, 8]), torch.Size([4, 2, 4]))
        >>> MaskedGRU(3, 4, return_state=False)(x).data.shape  # the output only
        torch.Size([5, 2, 4])
    """

    def __init__(self, *args: Any, return_state: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.return_state = _check_return_state("MaskedGRU", return_state)

    def forward(  # type: ignore[override]
        self, input: Masked | Tensor, hx: Tensor | None = None
    ) -> tuple[Masked, Tensor] | Masked:
        out, h, _ = _run(self, input, hx)
        return (out, h) if getattr(self, "return_state", True) else out


class MaskedRNN(_ReturnStateMixin, nn.RNN):
    """``nn.RNN`` (tanh or relu) that skips masked timesteps (Keras ``SimpleRNN`` masking).

    Arguments and parameter names as ``torch.nn.RNN``, plus ``return_state``
    as [`MaskedLSTM`][masknn.nn.MaskedLSTM]; ``forward(input, hx=None) -> (Masked output, h_n)``
    (the ``Masked`` output alone with ``return_state=False``) with the semantics
    of [`MaskedLSTM`][masknn.nn.MaskedLSTM].

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> rnn = MaskedRNN(3, 4, nonlinearity="relu", batch_first=True)
        >>> out, h = rnn(Masked(torch.randn(2, 5, 3), torch.rand(2, 5) > 0.3))
        >>> out.data.shape, h.shape
        (torch.Size([2, 5, 4]), torch.Size([1, 2, 4]))
    """

    def __init__(self, *args: Any, return_state: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.return_state = _check_return_state("MaskedRNN", return_state)

    def forward(  # type: ignore[override]
        self, input: Masked | Tensor, hx: Tensor | None = None
    ) -> tuple[Masked, Tensor] | Masked:
        out, h, _ = _run(self, input, hx)
        return (out, h) if getattr(self, "return_state", True) else out
