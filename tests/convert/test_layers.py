"""Layer rules: convolutions (and F.pad before them), norms, pooling and reductions, linear,
concatenation, interpolation. Each against the plain layer on complete data, the masknn
twin on masked data, and the contract."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import masknn.functional as mF
from masknn import Masked
from masknn import nn as mnn
from masknn.convert import ConversionError, convert
from tests.convert._helpers import Fn, contract, masked_input, parity, run

LAYERS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...], tuple[int, ...] | None]] = {
    "conv1d": (lambda: nn.Conv1d(3, 4, 3, padding=1), (2, 3, 9), None),
    "conv2d": (lambda: nn.Conv2d(3, 4, 3, padding=1), (2, 3, 7, 7), None),
    "conv2d_per_channel_mask": (lambda: nn.Conv2d(3, 4, 3, padding=1), (2, 3, 7, 7), (2, 3, 7, 7)),
    "conv2d_stride_dilation_groups": (
        lambda: nn.Conv2d(4, 6, 3, stride=2, padding=2, dilation=2, groups=2),
        (2, 4, 9, 9),
        (2, 4, 9, 9),
    ),
    "conv2d_same": (lambda: nn.Conv2d(3, 4, 4, padding="same"), (2, 3, 7, 7), None),
    "conv2d_reflect": (lambda: nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"), (2, 3, 7, 7), None),
    "conv3d": (lambda: nn.Conv3d(2, 3, 3, padding=1), (2, 2, 4, 5, 4), None),
    "conv_transpose2d": (lambda: nn.ConvTranspose2d(3, 4, 2, stride=2), (2, 3, 5, 5), None),
    "conv_transpose2d_padded": (
        lambda: nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1),
        (2, 3, 5, 5),
        None,
    ),
    "batchnorm2d": (lambda: nn.BatchNorm2d(3), (4, 3, 5, 5), None),
    "batchnorm1d": (lambda: nn.BatchNorm1d(3), (6, 3), (6, 1)),
    "groupnorm": (lambda: nn.GroupNorm(2, 4), (2, 4, 5, 5), None),
    "instancenorm": (lambda: nn.InstanceNorm2d(3, affine=True, track_running_stats=True), (2, 3, 5, 5), None),
    "maxpool": (lambda: nn.MaxPool2d(3, 2, 1), (2, 3, 8, 8), None),
    "maxpool_ceil": (lambda: nn.MaxPool2d(2, ceil_mode=True), (2, 3, 7, 7), None),
    "avgpool": (lambda: nn.AvgPool2d(2), (2, 3, 8, 8), None),
    "avgpool_padded_include": (lambda: nn.AvgPool2d(3, 1, 1), (2, 3, 6, 6), None),
    "avgpool_padded_exclude": (lambda: nn.AvgPool2d(3, 2, 1, count_include_pad=False), (2, 3, 7, 7), None),
    "avgpool1d_padded": (lambda: nn.AvgPool1d(3, 1, 1), (2, 3, 9), None),
    "adaptive_avg": (lambda: nn.AdaptiveAvgPool2d((2, 3)), (2, 3, 7, 7), None),
    "adaptive_max": (lambda: nn.AdaptiveMaxPool2d(2), (2, 3, 7, 7), None),
    "linear": (lambda: nn.Linear(5, 4), (3, 5), (3, 5)),
    "linear_rows": (lambda: nn.Linear(5, 4), (2, 6, 5), (2, 6, 1)),
    "upsample_nearest": (lambda: nn.Upsample(scale_factor=2), (2, 3, 4, 4), None),
    "upsample_bilinear": (lambda: nn.Upsample(scale_factor=2, mode="bilinear"), (2, 3, 4, 4), None),
    "upsample_size_align": (
        lambda: nn.Upsample(size=(7, 9), mode="bilinear", align_corners=True),
        (2, 3, 4, 4),
        None,
    ),
    "upsample_recompute": (
        lambda: Fn(
            lambda s, x: F.interpolate(x, scale_factor=1.7, mode="bilinear", recompute_scale_factor=True)
        ),
        (2, 3, 5, 5),
        None,
    ),
}


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")
@pytest.mark.parametrize("name", list(LAYERS))
def test_layer_parity_and_contract(name: str) -> None:
    make, shape, mshape = LAYERS[name]
    torch.manual_seed(0)
    layer = make()
    x = masked_input(shape, mshape)
    parity(layer, x)
    contract(layer, x)


TWINS: dict[str, tuple[Callable[[], nn.Module], Callable[[nn.Module], nn.Module], tuple[int, ...]]] = {
    "conv2d": (
        lambda: nn.Conv2d(3, 4, 3, padding=1),
        lambda m: mnn.PartialConv2d(3, 4, 3, padding=1, padding_valid=True),
        (2, 3, 7, 7),
    ),
    "batchnorm2d": (lambda: nn.BatchNorm2d(3), lambda m: mnn.MaskedBatchNorm2d(3), (4, 3, 5, 5)),
    "maxpool": (lambda: nn.MaxPool2d(2), lambda m: mnn.MaskedMaxPool2d(2), (2, 3, 6, 6)),
    "groupnorm": (lambda: nn.GroupNorm(2, 4), lambda m: mnn.MaskedGroupNorm(2, 4), (2, 4, 5, 5)),
}


@pytest.mark.parametrize("name", list(TWINS))
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_layer_equals_its_masknn_twin(name: str, train: bool) -> None:
    make, twin_of, shape = TWINS[name]
    torch.manual_seed(0)
    plain = make()
    twin = twin_of(plain)
    twin.load_state_dict(plain.state_dict())
    plain.train(train)
    twin.train(train)
    x = masked_input(shape)
    converted = convert(plain)
    out = converted(x)
    ref = twin(x)
    assert torch.equal(out.full_mask(), ref.full_mask())
    assert torch.equal(out.data, ref.data)
    for (k, a), (_, b) in zip(converted.state_dict().items(), twin.state_dict().items()):
        assert torch.equal(a, b), k  # running statistics updated alike


def test_fused_norm_activation_calling_f_batch_norm() -> None:
    """timm's BatchNormAct2d calls F.batch_norm itself; it is converted like nn.BatchNorm2d."""

    class BatchNormAct(nn.BatchNorm2d):
        def forward(self, x: Tensor) -> Tensor:
            x = F.batch_norm(
                x, self.running_mean, self.running_var, self.weight, self.bias, self.training, 0.1, self.eps
            )
            return F.relu(x)

    x = masked_input((4, 3, 5, 5))
    parity(BatchNormAct(3), x)
    contract(BatchNormAct(3), x)
    twin = mnn.MaskedBatchNorm2d(3)
    out = convert(BatchNormAct(3).train())(x)
    assert torch.equal(out.data, F.relu(twin(x).data))


def test_layernorm_over_channels_as_in_convnext() -> None:
    def fn(self: nn.Module, x: Tensor) -> Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, (4,), self.w, self.b, 1e-6)
        x = F.gelu(F.linear(x, self.fc))
        return x.permute(0, 3, 1, 2)

    m = Fn(
        fn,
        w=nn.Parameter(torch.rand(4) + 0.5),
        b=nn.Parameter(torch.randn(4)),
        fc=nn.Parameter(torch.randn(4, 4)),
    )
    x = masked_input((2, 4, 5, 5))
    parity(m, x)
    contract(m, x)
    out = run(m, x)
    assert out.mask.shape == (2, 1, 5, 5)
    assert torch.equal(out.full_mask(), x.full_mask())


def test_explicit_zero_pad_then_conv_counts_padding_like_the_conv() -> None:
    """F.pad + conv(padding=0) (TF 'same' padding) equals conv(padding=p) on masked data too."""
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3)
    padded = Fn(lambda s, x: s.conv(F.pad(x, (1, 1, 1, 1))))
    padded.conv = conv
    reference = nn.Conv2d(3, 4, 3, padding=1)
    reference.load_state_dict(conv.state_dict())
    x = masked_input((2, 3, 6, 6), seed=3)
    parity(padded, x)
    a, b = run(padded, x), run(reference, x)
    assert torch.equal(a.full_mask(), b.full_mask())
    torch.testing.assert_close(a.data, b.data)
    contract(padded, x)


def test_asymmetric_pad_strided_conv_as_timm_conv2d_same() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, stride=2)
    m = Fn(lambda s, x: s.conv(F.pad(x, (0, 1, 0, 1))))
    m.conv = conv
    x = masked_input((2, 3, 8, 8))
    parity(m, x)
    contract(m, x)
    empty = Masked(x.data, torch.zeros_like(x.mask))
    out = run(m, empty)
    assert not bool(out.mask.any())  # the padded zeros never make an output valid


def test_pad_with_minus_inf_then_max_pool_as_timm_maxpool_same() -> None:
    m = Fn(lambda s, x: F.max_pool2d(F.pad(x, (0, 1, 0, 1), value=-float("inf")), 3, 2))
    x = masked_input((2, 3, 8, 8))
    parity(m, x)
    contract(m, x)


def test_zero_pad_then_avg_pool_counts_the_zeros() -> None:
    m = Fn(lambda s, x: F.avg_pool2d(F.pad(x, (1, 1, 1, 1)), 3, 1))
    x = masked_input((2, 3, 6, 6))
    parity(m, x)
    contract(m, x)


REDUCTIONS: dict[str, tuple[Callable[[Tensor], Tensor], Callable[[Tensor, Tensor], Masked]]] = {
    "mean_hw": (lambda x: x.mean((2, 3)), lambda x, m: mF.masked_mean(x, m, (2, 3))),
    "mean_keepdim": (
        lambda x: x.mean(dim=(-1, -2), keepdim=True),
        lambda x, m: mF.masked_mean(x, m, (2, 3), True),
    ),
    "torch_mean_all": (lambda x: torch.mean(x), lambda x, m: mF.masked_mean(x, m)),
    "sum": (lambda x: x.sum(1), lambda x, m: mF.masked_sum(x, m, 1)),
    "amax": (lambda x: x.amax((2, 3)), lambda x, m: mF.masked_max(x, m, (2, 3))),
    "max_all": (lambda x: x.max(), lambda x, m: mF.masked_max(x, m)),
    "var": (lambda x: x.var((2, 3), keepdim=True), lambda x, m: mF.masked_var(x, m, (2, 3), True)),
    "std_unbiased_false": (lambda x: x.std(1, False), lambda x, m: mF.masked_std(x, m, 1, correction=0)),
    "logsumexp": (lambda x: torch.logsumexp(x, 1), lambda x, m: mF.masked_logsumexp(x, m, 1)),
    "softmax_spatial": (
        lambda x: F.softmax(x.flatten(2), dim=-1),
        lambda x, m: mF.masked_softmax(x.flatten(2), m.expand(x.shape).flatten(2), -1),
    ),
    "norm_spatial": (
        lambda x: x.norm(p=2, dim=(2, 3), keepdim=True),
        lambda x, m: Masked(
            mF.masked_sum(x * x, m, (2, 3), True).data.sqrt(), mF.masked_sum(x, m, (2, 3), True).mask
        ),
    ),
    "vector_norm": (
        lambda x: torch.linalg.vector_norm(x, dim=1),
        lambda x, m: Masked(mF.masked_sum(x * x, m, 1).data.sqrt(), mF.masked_sum(x, m, 1).mask),
    ),
    "normalize": (
        lambda x: F.normalize(x, dim=1),
        lambda x, m: Masked(
            torch.where(m, x / mF.masked_sum(x * x, m, 1, True).data.sqrt().clamp_min(1e-12), 0.0),
            m.expand(x.shape),
        ),
    ),
    "log_softmax_method": (lambda x: x.log_softmax(1), lambda x, m: mF.masked_log_softmax(x, m, 1)),
}


@pytest.mark.parametrize("name", list(REDUCTIONS))
def test_reductions_are_masked(name: str) -> None:
    fn, twin = REDUCTIONS[name]
    m = Fn(lambda s, x: fn(x))
    x = masked_input((2, 3, 5, 5))
    parity(m, x)
    out = run(m, x)
    ref = twin(x.data, x.mask)
    assert torch.equal(out.full_mask(), ref.full_mask())
    torch.testing.assert_close(out.data, ref.data)
    contract(m, x)


def test_global_response_norm_as_in_convnext_v2() -> None:
    """timm's GlobalResponseNorm: a spatial 2-norm, its channel mean, ``addcmul``."""

    def fn(self: nn.Module, x: Tensor) -> Tensor:
        x = x.permute(0, 2, 3, 1)
        g = x.norm(p=2, dim=(1, 2), keepdim=True)
        n = g / (g.mean(dim=-1, keepdim=True) + 1e-6)
        return (x + torch.addcmul(self.b, self.w, x * n)).permute(0, 3, 1, 2)

    m = Fn(fn, w=nn.Parameter(torch.randn(4)), b=nn.Parameter(torch.randn(4)))
    x = masked_input((2, 4, 5, 5))
    parity(m, x)
    contract(m, x)


def test_max_along_a_dim_with_indices_is_refused() -> None:
    with pytest.raises(ConversionError, match="indices"):
        run(Fn(lambda s, x: x.max(1).values), masked_input((2, 3, 4, 4)))


@pytest.mark.parametrize("mode", ["zero", "partial"])
def test_linear_mode(mode: str) -> None:
    torch.manual_seed(0)
    lin = nn.Linear(6, 3)
    x = masked_input((4, 6), (4, 6))
    out = convert(lin, linear_mode=mode)(x)
    ref = mF.masked_linear(x.data, x.mask, lin.weight, lin.bias, mode=mode)
    assert torch.equal(out.data, ref.data)
    assert torch.equal(out.full_mask(), ref.full_mask())


def test_cat_of_different_masks_gives_per_channel_mask() -> None:
    def fn(s: nn.Module, a: Tensor, b: Tensor) -> Tensor:
        return torch.cat([a, b], dim=1)

    a, b = masked_input((2, 2, 5, 5), seed=1), masked_input((2, 3, 5, 5), seed=2)
    out = run(Fn(fn), a, b)
    assert out.mask.shape == (2, 5, 5, 5)
    assert torch.equal(out.full_mask(), torch.cat([a.full_mask(), b.full_mask()], 1))
    contract(Fn(fn), a, b)


def test_cat_of_one_mask_stays_shared_and_stack_works() -> None:
    x = masked_input((2, 3, 5, 5))
    out = run(Fn(lambda s, t: torch.cat([t, t * 2.0], 1)), x)
    assert out.data.shape == (2, 6, 5, 5)
    assert torch.equal(out.full_mask(), torch.cat([x.full_mask()] * 2, 1))
    st = run(Fn(lambda s, t: torch.stack([t, -t], dim=1)), x)
    assert st.data.shape == (2, 2, 3, 5, 5)
    assert torch.equal(st.full_mask(), x.full_mask().unsqueeze(1).expand(2, 2, 3, 5, 5))


def test_cat_with_a_plain_tensor_is_refused() -> None:
    m = Fn(lambda s, t: torch.cat([t, torch.zeros(t.shape)], 1))
    with pytest.raises(ConversionError, match="plain tensor"):
        run(m, masked_input((2, 3, 4, 4)))


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: F.interpolate(x, scale_factor=2, mode="bicubic"),
        lambda x: F.interpolate(x, scale_factor=0.5, mode="bilinear", antialias=True),
        lambda x: F.grid_sample(x, torch.zeros(2, 3, 3, 2), align_corners=False),
    ],
    ids=["bicubic", "antialias", "grid_sample"],
)
def test_unsupported_resampling_is_refused(fn: Callable[[Tensor], Tensor]) -> None:
    with pytest.raises(ConversionError):
        run(Fn(lambda s, x: fn(x)), masked_input((2, 3, 4, 4)))
