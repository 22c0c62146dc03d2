"""Up-sampling Module for masked data."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from masknn._masked import Masked, as_masked
from masknn.functional.upsample import check_resize_args, interpolate

__all__ = ["MaskedUpsample"]


class MaskedUpsample(nn.Upsample):
    """``torch.nn.Upsample`` for ``Masked``: nearest, or normalized (bi/tri)linear.

    See [`masknn.functional.masked_interpolate`][]: linear modes interpolate the
    zero-filled data and the mask with the same weights and divide, valid where the
    mask weight is positive.

    Examples:
        >>> import torch
        >>> from masknn import Masked
        >>> up = MaskedUpsample(scale_factor=2, mode="bilinear")
        >>> out = up(Masked(torch.randn(1, 3, 4, 4), torch.rand(1, 1, 4, 4) > 0.5))
        >>> out.data.shape, out.mask.shape
        (torch.Size([1, 3, 8, 8]), torch.Size([1, 1, 8, 8]))
    """

    def __init__(
        self,
        size: int | Sequence[int] | None = None,
        scale_factor: float | Sequence[float] | None = None,
        mode: str = "nearest",
        align_corners: bool | None = None,
    ) -> None:
        check_resize_args("MaskedUpsample", size, scale_factor, mode, align_corners)
        super().__init__(size, scale_factor, mode, align_corners)  # type: ignore[arg-type]

    def forward(self, x: Masked | Tensor) -> Masked:  # type: ignore[override]
        x = as_masked("MaskedUpsample", x)
        return interpolate(
            "MaskedUpsample",
            x.data,
            x.mask,
            self.size,
            self.scale_factor,
            self.mode,
            self.align_corners,
        )
