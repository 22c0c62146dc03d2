"""Partial convolution Modules (Liu et al. 2018); weights as ``nn.Conv*d`` / ``nn.ConvTranspose*d``."""

from __future__ import annotations

from typing import Any, cast

from torch import Tensor, nn

from masknn._masked import Masked, as_masked
from masknn._validation import check_int
from masknn.functional._spatial import prepare
from masknn.functional.conv import (
    _direct_spec,
    _partial_conv,
    _partial_conv_transpose,
    _transposed_spec,
)
from masknn.nn._checks import construct

__all__ = [
    "PartialConv1d",
    "PartialConv2d",
    "PartialConv3d",
    "PartialConvTranspose1d",
    "PartialConvTranspose2d",
    "PartialConvTranspose3d",
]


def _check_mode(layer: str, padding_mode: str) -> None:
    if padding_mode != "zeros":
        raise ValueError(
            f"{layer}: only padding_mode='zeros' is supported (padding counts as masked, or as valid "
            f"with padding_valid=True), got padding_mode={padding_mode!r}"
        )


class _PartialConvMixin:
    """Shared by the partial convolutions: the ``padding_valid`` flag, its repr, the argument checks."""

    padding_valid: bool
    padding_mode: str
    _nd: int

    def __init__(self, *args: Any, padding_valid: bool = False, **kwargs: Any) -> None:
        layer = type(self).__name__
        for i, name in enumerate(("in_channels", "out_channels")):
            given = args[i] if len(args) > i else kwargs.get(name)
            if given is not None:
                check_int(layer, name, given, 1)
        construct(layer, super().__init__, *args, **kwargs)
        _check_mode(layer, self.padding_mode)
        if not isinstance(padding_valid, bool):
            raise TypeError(f"{layer}: expected padding_valid as a bool, got {padding_valid!r}")
        self.padding_valid = padding_valid
        conv = cast(nn.Conv2d, self)
        if any(k < 1 for k in conv.kernel_size):
            raise ValueError(f"{layer}: expected kernel_size >= 1 in every dimension, got {conv.kernel_size}")
        self._check_args(layer)

    def _check_args(self, layer: str) -> None:
        raise NotImplementedError

    def extra_repr(self) -> str:
        base: str = super().extra_repr()  # type: ignore[misc]
        return base + (", padding_valid=True" if self.padding_valid else "")


class _PartialConvNd(_PartialConvMixin):
    def _check_args(self, layer: str) -> None:
        conv = cast(nn.Conv2d, self)
        _direct_spec(layer, self._nd, conv.kernel_size, conv.stride, conv.padding, conv.dilation, conv.groups)

    def forward(self, x: Masked | Tensor) -> Masked:
        conv = cast(nn.Conv2d, self)
        layer = type(self).__name__
        x = as_masked(layer, x)
        return _partial_conv(
            layer,
            self._nd,
            x.data,
            x.mask,
            conv.weight,
            conv.bias,
            conv.stride,
            conv.padding,
            conv.dilation,
            conv.groups,
            self.padding_valid,
        )


class _PartialConvTransposeNd(_PartialConvMixin):
    def _check_args(self, layer: str) -> None:
        conv = cast(nn.ConvTranspose2d, self)
        padding = cast("tuple[int, ...]", conv.padding)
        _transposed_spec(
            layer, self._nd, conv.stride, padding, conv.output_padding, conv.dilation, conv.groups
        )

    def forward(self, x: Masked | Tensor, output_size: list[int] | None = None) -> Masked:
        conv = cast(nn.ConvTranspose2d, self)
        layer = type(self).__name__
        x = as_masked(layer, x)
        padding = cast("tuple[int, ...]", conv.padding)
        if output_size is not None and x.data.dim() != self._nd + 2:
            prepare(layer, x.data, x.mask, self._nd)  # the output_size arithmetic reads (N, C, *spatial)
        try:
            opad = conv._output_padding(
                x.data,
                output_size,
                list(conv.stride),
                list(padding),
                list(conv.kernel_size),
                self._nd,
                list(conv.dilation),
            )
        except (ValueError, TypeError) as e:
            raise ValueError(f"{layer}: output_size={output_size!r}: {e}") from None
        return _partial_conv_transpose(
            layer,
            self._nd,
            x.data,
            x.mask,
            conv.weight,
            conv.bias,
            conv.stride,
            padding,
            opad,
            conv.groups,
            conv.dilation,
            self.padding_valid,
        )


class PartialConv1d(_PartialConvNd, nn.Conv1d):  # type: ignore[misc]
    """1-d partial convolution: ``torch.nn.Conv1d``'s arguments plus ``padding_valid``.

    See [`PartialConv2d`][masknn.nn.PartialConv2d].

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> conv = PartialConv1d(2, 3, 3, padding=1)
        >>> conv(Masked(torch.randn(4, 2, 10), torch.rand(4, 1, 10) > 0.5)).data.shape
        torch.Size([4, 3, 10])
    """

    _nd = 1


class PartialConv2d(_PartialConvNd, nn.Conv2d):  # type: ignore[misc]
    """2-d partial convolution (Liu et al. 2018): ``torch.nn.Conv2d``'s arguments plus ``padding_valid``.

    Takes and returns [`masknn.Masked`][]; a plain tensor is taken as fully valid.
    ``out = W·(x⊙m) · (window size / valid count) + b`` where the window holds a valid
    input, exactly 0 with a False mask elsewhere. Channel-shared masks ``(N, 1, H, W)``
    give an ``(N, 1, H_out, W_out)`` output mask; per-channel masks ``(N, C_in, H, W)``
    (valid count over the input channels of each group, NVIDIA's
    ``multi_channel=True``) give ``(N, C_out, H_out, W_out)``. Zero padding counts as
    masked, so border windows are re-weighted even with an all-True mask. With
    ``padding_valid=True`` zero padding counts as present in the rescale, so the layer
    equals ``nn.Conv2d`` when every input is valid (the mode for pretrained weights), but
    it never makes an output valid: an output still needs a valid input in its window (a
    window that reaches only padding is the bias alone, as in ``nn.Conv2d``, and valid
    when the sample has any valid input), so a fully masked sample gives zeros and an
    all-False mask in both modes ([`masknn.functional.partial_conv2d`][]). Only
    ``padding_mode='zeros'`` exists. The weights and ``state_dict`` are ``nn.Conv2d``'s;
    no state is kept between calls.

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> conv = PartialConv2d(3, 8, 3, padding=1)
        >>> out = conv(Masked(torch.randn(2, 3, 16, 16), torch.rand(2, 1, 16, 16) > 0.5))
        >>> out.data.shape, out.mask.shape
        (torch.Size([2, 8, 16, 16]), torch.Size([2, 1, 16, 16]))
        >>> plain = torch.nn.Conv2d(3, 8, 3, padding=1)
        >>> conv.load_state_dict(plain.state_dict())
        <All keys matched successfully>
    """

    _nd = 2


class PartialConv3d(_PartialConvNd, nn.Conv3d):  # type: ignore[misc]
    """3-d partial convolution: ``torch.nn.Conv3d``'s arguments plus ``padding_valid``.

    See [`PartialConv2d`][masknn.nn.PartialConv2d].

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> conv = PartialConv3d(2, 3, 3, padding=1)
        >>> conv(Masked(torch.randn(1, 2, 4, 5, 6), torch.rand(1, 1, 4, 5, 6) > 0.5)).data.shape
        torch.Size([1, 3, 4, 5, 6])
    """

    _nd = 3


class PartialConvTranspose1d(_PartialConvTransposeNd, nn.ConvTranspose1d):  # type: ignore[misc]
    """1-d partial transposed convolution; see [`PartialConvTranspose2d`][masknn.nn.PartialConvTranspose2d].

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> up = PartialConvTranspose1d(2, 3, 2, stride=2)
        >>> up(Masked(torch.randn(1, 2, 5), torch.rand(1, 1, 5) > 0.5)).data.shape
        torch.Size([1, 3, 10])
    """

    _nd = 1


class PartialConvTranspose2d(_PartialConvTransposeNd, nn.ConvTranspose2d):  # type: ignore[misc]
    """2-d partial transposed convolution: ``nn.ConvTranspose2d``'s arguments plus ``padding_valid``.

    ``out = conv_transpose(x⊙m) · (window / present) + b`` where a valid input reaches
    the position, else 0 with a False mask; ``window`` counts the kernel taps of the
    position's stride phase, taps outside the input are padding: masked by default,
    present with ``padding_valid=True``, which makes the layer equal
    ``nn.ConvTranspose2d`` on all-valid input at every position (positions that no
    input reaches, between strided taps or in ``output_padding`` rows, hold the bias,
    valid when the sample has any valid input). A fully masked sample gives zeros and an
    all-False mask in both modes ([`masknn.functional.partial_conv_transpose2d`][]).
    Masks as in [`PartialConv2d`][masknn.nn.PartialConv2d].

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> up = PartialConvTranspose2d(4, 2, 2, stride=2)
        >>> out = up(Masked(torch.randn(1, 4, 3, 3), torch.rand(1, 1, 3, 3) > 0.5))
        >>> out.data.shape, out.mask.shape
        (torch.Size([1, 2, 6, 6]), torch.Size([1, 1, 6, 6]))
    """

    _nd = 2


class PartialConvTranspose3d(_PartialConvTransposeNd, nn.ConvTranspose3d):  # type: ignore[misc]
    """3-d partial transposed convolution; see [`PartialConvTranspose2d`][masknn.nn.PartialConvTranspose2d].

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> up = PartialConvTranspose3d(2, 2, 2, stride=2)
        >>> up(Masked(torch.randn(1, 2, 2, 2, 2), torch.rand(1, 1, 2, 2, 2) > 0.5)).data.shape
        torch.Size([1, 2, 4, 4, 4])
    """

    _nd = 3
