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
            cmap = plt.get_cmap("gray").with_extremes(bad="tab:orange")
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


#: Colours of the gap-filling panels: land (genuine no-data) and ocean hidden by clouds.
LAND, CLOUD, NOT_SCORED = "#4d4d4d", "#ffffff", "#d4d4d4"


def gapfill_panels(
    truth: np.ndarray,
    ocean: np.ndarray,
    seen: np.ndarray,
    recons: Sequence[tuple[str, np.ndarray]],
    path: str | Path,
    title: str = "",
) -> Path:
    """One test patch and each method's reconstruction of its cloud-hidden ocean.

    Top row: the true field and the input (land grey, cloud-hidden ocean white). Then one
    column per method in ``recons`` (``(name, field)``; values at hidden ocean pixels are
    read): the reconstruction (seen pixels as given, the method's values where hidden) on
    the true field's colour scale, and its error at the hidden pixels (the nets are trained
    and scored there only), with the RMSE. Colour bars give the units (degrees C).
    """
    plt = _plt()
    fig = _gapfill_figure(plt, truth, ocean, seen, recons, title)
    path = Path(path)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def _gapfill_figure(
    plt: Any,
    truth: np.ndarray,
    ocean: np.ndarray,
    seen: np.ndarray,
    recons: Sequence[tuple[str, np.ndarray]],
    title: str,
) -> Any:
    """The figure of [`gapfill_panels`][masknn.demo.figures.gapfill_panels]; axes ``[0, 0]``
    truth, ``[0, 1]`` input, ``[1, c]`` / ``[2, c]`` reconstruction / error of method ``c``."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    n = len(recons)
    hidden = ocean & ~seen
    vmin, vmax = float(np.nanmin(truth[ocean])), float(np.nanmax(truth[ocean]))
    errors = [np.where(hidden, rec - truth, np.nan) for _, rec in recons]
    # One error scale for every method (the 99th percentile of the absolute errors, so that
    # one bad pixel does not wash out the others; the colour bar is extended beyond it).
    pooled = np.concatenate([np.abs(e[hidden]) for e in errors]) if hidden.any() else np.zeros(1)
    lim = max(0.5, float(np.percentile(pooled, 99)))
    sst_map = plt.get_cmap("RdYlBu_r").with_extremes(bad=CLOUD)
    err_map = plt.get_cmap("RdBu_r").with_extremes(bad=NOT_SCORED)
    land = np.ma.masked_where(ocean, np.ones_like(truth))
    land_map = ListedColormap([LAND])

    cols = max(n, 3)
    fig, axes = plt.subplots(3, cols, figsize=(2.35 * cols + 1.4, 7.6), squeeze=False)

    def show(ax: Any, field: np.ndarray, cmap: Any, lo: float, hi: float, label: str) -> Any:
        im = ax.imshow(field, cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
        ax.imshow(land, cmap=land_map, vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(label, fontsize=8)
        return im

    im_sst = show(axes[0, 0], np.where(ocean, truth, np.nan), sst_map, vmin, vmax, "truth")
    show(
        axes[0, 1],
        np.where(seen, truth, np.nan),
        sst_map,
        vmin,
        vmax,
        f"input: {hidden.sum()} ocean pixels hidden",
    )
    axes[0, 2].axis("off")
    axes[0, 2].legend(
        handles=[
            Patch(facecolor=LAND, edgecolor="black", lw=0.5, label="land (no data)"),
            Patch(facecolor=CLOUD, edgecolor="black", lw=0.5, label="ocean hidden by clouds"),
            Patch(
                facecolor=NOT_SCORED, edgecolor="black", lw=0.5, label="seen ocean (error row: not scored)"
            ),
        ],
        loc="center left",
        bbox_to_anchor=(0.05, 0.5),
        fontsize=8,
        frameon=False,
    )
    for c in range(3, cols):
        axes[0, c].axis("off")
    im_err = None
    for c, ((name, rec), err) in enumerate(zip(recons, errors)):
        shown = np.where(seen, truth, np.where(ocean, rec, np.nan))
        show(axes[1, c], shown, sst_map, vmin, vmax, name)
        rmse = float(np.sqrt(np.nanmean(err**2))) if hidden.any() else float("nan")
        im_err = show(axes[2, c], err, err_map, -lim, lim, f"error, RMSE {rmse:.2f} °C")
    for c in range(n, cols):
        axes[1, c].axis("off")
        axes[2, c].axis("off")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(
        im_sst, ax=list(axes[:2, :].flat), label="sea-surface temperature (°C)", shrink=0.8, pad=0.02
    )
    if im_err is not None:
        fig.colorbar(
            im_err, ax=list(axes[2, :]), label="prediction − truth (°C)", shrink=0.9, pad=0.02, extend="both"
        )
    if title:
        fig.suptitle(title, fontsize=9)
    return fig
