"""Figures of the demo: the mask through partial convolutions, gap-filling panels."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from masknn import masks
from masknn._masked import Masked

__all__ = ["gapfill_panels", "mask_growth_figure"]


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def mask_growth_figure(images: np.ndarray, path: str | Path, coverage: float = 0.6, layers: int = 4) -> Path:
    """One real digit under a cloud mask, then the valid region after each of ``layers``
    3x3 partial convolutions (padding 1): a window with any valid input becomes valid,
    so holes shrink by one pixel per layer from every edge."""
    from masknn.compare.models import mask_aware_layers

    mnn = mask_aware_layers()
    x = torch.from_numpy(images[:1, :1]).float()
    m = masks.cloud_mask(x.shape, coverage, seed=3)
    convs = [mnn.PartialConv2d(1, 1, 3, padding=1) for _ in range(layers)]
    h = Masked(torch.where(m, x, torch.tensor(float("nan"))), m)
    states = [h]
    with torch.no_grad():
        for conv in convs:
            h = conv(h)
            states.append(h)
    plt = _plt()
    fig, axes = plt.subplots(1, layers + 2, figsize=(2.0 * (layers + 2), 2.3))
    axes[0].imshow(images[0, 0], cmap="gray")
    axes[0].set_title("digit", fontsize=9)
    for i, st in enumerate(states):
        mk = st.mask.expand_as(st.data)[0, 0].numpy()
        if i == 0:
            cmap = plt.get_cmap("gray").copy()
            cmap.set_bad("tab:orange")
            axes[1].imshow(np.ma.masked_where(~mk, images[0, 0]), cmap=cmap, vmin=0, vmax=1)
        else:
            axes[i + 1].imshow(mk.astype(float), cmap="Blues", vmin=-0.3, vmax=1.2)
        frac = 100.0 * (1.0 - mk.mean())
        axes[i + 1].set_title(
            ("input" if i == 0 else f"after conv {i}") + f"\n{frac:.0f}% masked", fontsize=9
        )
    for a in axes:
        a.set_xticks([])
        a.set_yticks([])
    fig.suptitle(
        "input (orange: missing), then the valid region (blue) after each 3x3 partial convolution", fontsize=9
    )
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def gapfill_panels(
    truth: np.ndarray,
    ocean: np.ndarray,
    seen: np.ndarray,
    recons: Sequence[tuple[str, np.ndarray]],
    path: str | Path,
    title: str = "",
) -> Path:
    """Rows: one per reconstruction (input, mask, reconstruction, error on hidden pixels).

    The reconstruction panel shows the seen pixels as given and the method's values at
    the hidden ones (the nets are trained and scored on hidden pixels only)."""
    plt = _plt()
    n = len(recons)
    fig, axes = plt.subplots(n, 4, figsize=(9.0, 2.2 * n + 0.4), squeeze=False)
    vmin, vmax = float(np.nanmin(truth[ocean])), float(np.nanmax(truth[ocean]))
    hidden = ocean & ~seen
    for row, (name, rec) in enumerate(recons):
        inp = np.where(seen, truth, np.nan)
        err = np.where(hidden, rec - truth, np.nan)
        rmse = float(np.sqrt(np.nanmean(err**2))) if hidden.any() else float("nan")
        axes[row, 0].imshow(inp, cmap="RdYlBu_r", vmin=vmin, vmax=vmax)
        axes[row, 0].set_title("input (white: no data)", fontsize=8)
        axes[row, 1].imshow(np.where(ocean, seen.astype(float), np.nan), cmap="gray", vmin=0, vmax=1)
        axes[row, 1].set_title("mask (black: hidden)", fontsize=8)
        shown = np.where(seen, truth, np.where(ocean, rec, np.nan))
        axes[row, 2].imshow(shown, cmap="RdYlBu_r", vmin=vmin, vmax=vmax)
        axes[row, 2].set_title(f"{name}", fontsize=8)
        lim = max(1.0, float(np.nanmax(np.abs(err))) if hidden.any() else 1.0)
        axes[row, 3].imshow(err, cmap="coolwarm", vmin=-lim, vmax=lim)
        axes[row, 3].set_title(f"error on hidden, RMSE {rmse:.2f} C", fontsize=8)
        for a in axes[row]:
            a.set_xticks([])
            a.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
