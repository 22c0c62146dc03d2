"""Seed 000's use case end to end: multi-band imagery with missing pixels, a masked loss.

The seed article ("How can I effectively mask values in a CNN?") works on satellite
imagery with missing pixels. Here, generated scenes (no download): three bands, each
with its own no-data pixels (NaN where that band's sensor dropped out) and clouds that
hide every band; the target is a per-pixel field (say, surface temperature) known only
where a reference measurement exists (NaN elsewhere). The steps, which
``docs/guide/end-to-end.md`` walks through:

1. ``Masked.from_nan`` gives one mask per band; ``share_mask(1)`` gives one mask for all
   bands (a pixel is missing when any band is), so ``MaskChannel`` adds one channel and
   the first convolution takes ``3 + 1`` channels;
2. the model: mean-fill plus the mask as a channel, then plain convolutions (and, to
   compare, the same with partial convolutions);
3. a training loop whose loss counts valid target pixels only (``masked_mse_loss``: the
   NaN targets are never read);
4. evaluation on held-out scenes, and the leakage check on the trained model.

Run: python examples/seed000_multiband_training.py
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from masknn import Masked, masks
from masknn import nn as mnn
from masknn.functional import masked_mse_loss
from masknn.nn import Fill, MaskChannel, Unwrap
from masknn.testing import assert_no_leakage

NAN = float("nan")


# --8<-- [start:data]
def make_scenes(n: int, size: int = 24, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` scenes: bands ``(n, 3, size, size)`` and a target ``(n, 1, size, size)``, NaN where missing."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(n, 3, 6, 6, generator=g)
    bands = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    # The target depends on all bands and on the neighbourhood (a 3x3 average).
    field = 1.5 * bands[:, :1] - bands[:, 1:2] + 0.5 * bands[:, 2:3] ** 2
    target = F.avg_pool2d(field, 3, stride=1, padding=1, count_include_pad=False)
    # Missing data: per-band dropouts (10 % of each band), clouds over all bands (30 %),
    # and a target known at 40 % of the pixels only.
    dropout = masks.random_mask((n, 3, size, size), 0.1, seed=seed + 1)
    clouds = masks.cloud_mask((n, 1, size, size), 0.3, seed=seed + 2)
    known = masks.random_mask((n, 1, size, size), 0.6, seed=seed + 3)
    bands = torch.where(dropout & clouds, bands, torch.tensor(NAN))
    target = torch.where(known, target, torch.tensor(NAN))
    return bands, target
    # --8<-- [end:data]


# --8<-- [start:model]
def make_model(bands: int = 3, width: int = 16) -> nn.Sequential:
    """Mean-fill and the shared mask as one extra channel, then plain convolutions."""
    return nn.Sequential(
        MaskChannel(),  # appends the mask: (N, 1, H, W) -> one channel
        Fill("mean"),  # holes get the per-sample mean of the valid pixels (NaN-safe)
        Unwrap(),  # a plain tensor from here on
        nn.Conv2d(bands + 1, width, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(width, width, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(width, 1, 1),
    )
    # --8<-- [end:model]


# --8<-- [start:partial]
def make_partial_model(bands: int = 3, width: int = 16) -> nn.Sequential:
    """The same with mask-aware layers: partial convolutions, fed the mask channel too."""
    return nn.Sequential(
        MaskChannel(),
        mnn.PartialConv2d(bands + 1, width, 3, padding=1),
        mnn.Elementwise(nn.ReLU()),
        mnn.PartialConv2d(width, width, 3, padding=1),
        mnn.Elementwise(nn.ReLU()),
        mnn.PartialConv2d(width, 1, 1),  # returns a Masked (valid everywhere: see below)
    )
    # --8<-- [end:partial]


# --8<-- [start:train]
def train(model: nn.Module, x: Masked, y: Masked, steps: int = 200, batch: int = 16) -> list[float]:
    """Adam on random batches; the loss is the MSE over valid target pixels only (a model
    that returns a ``Masked`` also counts only its valid outputs)."""
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, x.data.shape[0], (batch,), generator=g)
        xb = Masked(x.data[idx], x.mask[idx])
        yb = Masked(y.data[idx], y.mask[idx])
        loss = masked_mse_loss(model(xb), yb)  # the target's mask selects the valid pixels
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@torch.no_grad()
def rmse(model: nn.Module, x: Masked, y: Masked) -> float:
    """Root mean squared error over the valid target pixels."""
    model.eval()
    return masked_mse_loss(model(x), y).sqrt().item()
    # --8<-- [end:train]


def main(steps: int = 200) -> dict[str, float]:
    torch.manual_seed(0)
    # --8<-- [start:masks]
    train_bands, train_target = make_scenes(256, seed=0)
    test_bands, test_target = make_scenes(64, seed=100)

    x = Masked.from_nan(train_bands)
    print("per-band mask:", tuple(x.mask.shape), "-> mask channels:", MaskChannel()(x).data.shape[1] - 3)
    x = x.share_mask(1)  # a pixel is missing when any band is
    print("shared mask:  ", tuple(x.mask.shape), "-> mask channels:", MaskChannel()(x).data.shape[1] - 3)
    x_test = Masked.from_nan(test_bands).share_mask(1)
    y, y_test = Masked.from_nan(train_target), Masked.from_nan(test_target)
    # --8<-- [end:masks]

    # --8<-- [start:fit]

    # Predicting the mean of the training targets everywhere, for scale.
    mean = train_target.nanmean().item()
    results = {"predict the mean": masked_mse_loss(torch.full_like(test_target, mean), y_test).sqrt().item()}
    for name, make in (
        ("fill + mask channel", make_model),
        ("partial conv + mask channel", make_partial_model),
    ):
        torch.manual_seed(0)
        model = make()
        losses = train(model, x, y, steps=steps)
        results[name] = rmse(model, x_test, y_test)
        print(f"{name}: training loss {losses[0]:.3f} -> {losses[-1]:.3f}, test RMSE {results[name]:.3f}")
        # The contract on the trained model: masked band values reach no output and no
        # gradient. fully_masked_zero=False: the mask channel is valid everywhere, so every
        # output is valid and a fully masked scene gets a prediction, not the zeros and
        # all-False mask that the default asks of layers that propagate the mask. (A plain
        # tensor output, as the first model's, has no mask: the flag changes nothing there.)
        assert_no_leakage(model, Masked(x_test.data[:4], x_test.mask[:4]), fully_masked_zero=False)
    print(
        f"predict the mean: test RMSE {results['predict the mean']:.3f}; no leakage from masked band values"
    )
    # --8<-- [end:fit]
    return results


if __name__ == "__main__":
    main()
