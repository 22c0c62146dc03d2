"""Fill Modules: the baselines users try first (DESIGN section 5)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from masknn._masked import Masked, as_masked
from masknn._validation import check_choice, check_dim, check_int, check_number, shape_str
from masknn.functional._layout import follow_layout
from masknn.functional.fill import FILL_STRATEGIES, append_mask, fill_values
from masknn.functional.reductions import masked_mean

__all__ = ["Fill", "LearnedFill", "MaskChannel"]


def _all_valid(x: Tensor) -> Tensor:
    return torch.ones((1,) * x.dim(), dtype=torch.bool, device=x.device)


class Fill(nn.Module):
    """Fill masked positions with zero, a constant, per-sample means or running means.

    After filling every position holds a defined value, so the output mask is
    all True: put [`MaskChannel`][masknn.nn.MaskChannel] *before* a fill to keep the mask as input.

    Args:
        strategy: ``"zero"``, ``"constant"``, ``"mean"`` (per sample and
            channel, see [`masknn.functional.fill`][masknn.functional.fill.fill]) or ``"running_mean"``: a
            per-channel mean of the valid values over the training data, kept
            as a buffer (batch statistics in training, the running mean in eval,
            like BatchNorm).
        value: the constant for ``"constant"``.
        num_channels: channels (dimension 1) for ``"running_mean"``.
        momentum: update rate of the running mean, in [0, 1] (``None``, a cumulative
            average, is refused: there is no batch counter).

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> x = Masked(torch.tensor([[[1.0, float("nan"), 3.0]]]), torch.tensor([[[1, 0, 1]]]))
        >>> Fill("mean")(x).data
        tensor([[[1., 2., 3.]]])
    """

    running_mean: Tensor | None

    def __init__(
        self,
        strategy: str = "zero",
        value: float = 0.0,
        num_channels: int | None = None,
        momentum: float = 0.1,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        check_choice("Fill", "strategy", strategy, FILL_STRATEGIES + ("running_mean",))
        check_number("Fill", "value", value)
        if strategy == "running_mean":
            if num_channels is None:
                raise ValueError("Fill: strategy 'running_mean' needs num_channels")
            check_int("Fill", "num_channels", num_channels, 1)
            if momentum is None:
                raise ValueError(
                    "Fill: momentum=None (a cumulative average, as BatchNorm's) is not supported by "
                    "strategy 'running_mean'; pass a momentum in [0, 1], e.g. 0.1"
                )
            check_number("Fill", "momentum", momentum, 0.0, 1.0)
        self.strategy = strategy
        self.value = value
        self.momentum = momentum
        self.num_channels = num_channels
        if num_channels is not None and strategy == "running_mean":
            self.register_buffer("running_mean", torch.zeros(num_channels, device=device, dtype=dtype))
        else:
            self.register_buffer("running_mean", None)

    def extra_repr(self) -> str:
        s = f"strategy={self.strategy!r}"
        if self.strategy == "constant":
            s += f", value={self.value}"
        if self.num_channels is not None:
            s += f", num_channels={self.num_channels}, momentum={self.momentum}"
        return s

    def forward(self, x: Masked | Tensor) -> Masked:
        x = as_masked("Fill", x)
        if self.strategy != "running_mean":
            data = fill_values("Fill", x.data, x.mask, self.strategy, self.value, None)
            return Masked(data, _all_valid(data))
        if self.running_mean is None:
            raise ValueError("Fill: strategy 'running_mean' lost its running_mean buffer")
        if not x.data.is_floating_point():
            raise TypeError(f"Fill: expected floating point data, got dtype {x.data.dtype}")
        if x.data.dim() < 2 or x.data.shape[1] != self.running_mean.shape[0]:
            raise ValueError(
                f"Fill: expected data (N, {self.running_mean.shape[0]}, *), got {shape_str(x.data.shape)}"
            )
        if self.running_mean.device != x.data.device:
            raise TypeError(
                f"Fill: data {shape_str(x.data.shape)} is on {x.data.device} but running_mean is on "
                f"{self.running_mean.device}; move both to the same device"
            )
        dims = [0] + list(range(2, x.data.dim()))
        if self.training:
            batch = masked_mean(x.data, x.mask, dim=dims)
            with torch.no_grad():
                upd = torch.where(batch.mask, batch.data.to(self.running_mean), self.running_mean)
                self.running_mean.lerp_(upd, self.momentum)
            stat = torch.where(batch.mask, batch.data, self.running_mean.to(batch.data))
        else:
            stat = self.running_mean.to(x.data.dtype)
        shape = (1, -1) + (1,) * (x.data.dim() - 2)
        data = torch.where(follow_layout(x.mask, x.data), x.data, stat.reshape(shape))
        return Masked(data, _all_valid(data))


class LearnedFill(nn.Module):
    """Fill masked positions with a learned per-channel token (the mask token of masked autoencoders).

    Args:
        num_channels: size of dimension ``channel_dim`` of the data.
        channel_dim: 1 for images ``(N, C, *)``, -1 for sequences ``(N, T, F)``.

    The token is initialised from N(0, 0.02^2) as in MAE. The output mask is all
    True. Masked inputs receive no gradient; the token receives the gradient of
    every position it fills.

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> layer = LearnedFill(2)
        >>> out = layer(Masked(torch.ones(1, 2, 3), torch.tensor([[[True, False, True]]])))
        >>> torch.equal(out.data[0, :, 1], layer.token.detach())
        True
    """

    def __init__(
        self, num_channels: int, channel_dim: int = 1, device: Any = None, dtype: Any = None
    ) -> None:
        super().__init__()
        check_int("LearnedFill", "num_channels", num_channels, 1)
        check_int("LearnedFill", "channel_dim", channel_dim)
        self.num_channels = num_channels
        self.channel_dim = channel_dim
        self.token = nn.Parameter(torch.empty(num_channels, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.token, std=0.02)

    def extra_repr(self) -> str:
        return f"{self.num_channels}, channel_dim={self.channel_dim}"

    def forward(self, x: Masked | Tensor) -> Masked:
        x = as_masked("LearnedFill", x)
        data = x.data
        if self.token.device != data.device:
            raise TypeError(
                f"LearnedFill: data {shape_str(data.shape)} is on {data.device} but the token is on "
                f"{self.token.device}; move both to the same device"
            )
        if not data.is_floating_point():
            raise TypeError(f"LearnedFill: expected floating point data, got dtype {data.dtype}")
        d = check_dim("LearnedFill", "channel_dim", self.channel_dim, data.dim())
        if data.dim() <= d or data.shape[d] != self.num_channels:
            raise ValueError(
                f"LearnedFill: expected {self.num_channels} channels in dimension "
                f"{self.channel_dim} of the data, got shape {shape_str(data.shape)}"
            )
        shape = [1] * data.dim()
        shape[d] = self.num_channels
        token = self.token.to(data.dtype).reshape(shape)
        out = torch.where(follow_layout(x.mask, data), data, token)
        return Masked(out, _all_valid(out))


class MaskChannel(nn.Module):
    """Append the mask as input channel(s); see [`masknn.functional.mask_channel`][].

    The data is zero-filled; the new channels are marked valid everywhere. A
    channel-shared mask adds one channel, a per-channel mask C channels.

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> x = Masked(torch.randn(2, 3, 8, 8), torch.rand(2, 1, 8, 8) > 0.3)
        >>> MaskChannel()(x).data.shape
        torch.Size([2, 4, 8, 8])
    """

    def __init__(self, dim: int = 1) -> None:
        super().__init__()
        check_int("MaskChannel", "dim", dim)
        self.dim = dim

    def extra_repr(self) -> str:
        return f"dim={self.dim}"

    def forward(self, x: Masked | Tensor) -> Masked:
        x = as_masked("MaskChannel", x)
        return append_mask("MaskChannel", x.data, x.mask, self.dim)
