"""The comparison's table and figure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["format_table", "plot_rates"]


def _col(kind: str, rate: float | None) -> str:
    return "own mask" if rate is None else f"{kind} {rate:.0%}"


def format_table(records: list[dict[str, Any]], metric: str, higher_is_better: bool) -> str:
    """Markdown table, strategies as rows, ``(mask kind, rate)`` as columns, ``mean ± std`` over
    seeds; the best mean of each column in bold.

    Examples:
        >>> recs = [{"strategy": s, "mask_kind": "cloud", "rate": 0.3, "seed": i, "value": v + i}
        ...         for s, v in (("zero", 50.0), ("partial", 60.0)) for i in range(2)]
        >>> print(format_table(recs, "accuracy (%)", True))
        | accuracy (%), 2 seeds | cloud 30% |
        |---|---|
        | zero | 50.5 ± 0.7 |
        | partial | **60.5 ± 0.7** |
    """
    strategies = list(dict.fromkeys(r["strategy"] for r in records))
    cols = list(dict.fromkeys((r["mask_kind"], r["rate"]) for r in records))
    vals: dict[tuple[str, str, float | None], list[float]] = {}
    for r in records:
        vals.setdefault((r["strategy"], r["mask_kind"], r["rate"]), []).append(float(r["value"]))
    nseeds = sorted({len(v) for v in vals.values()})
    seeds = "/".join(str(n) for n in nseeds)
    lines = [
        f"| {metric}, {seeds} seed{'s' if nseeds != [1] else ''} | "
        + " | ".join(_col(k, r) for k, r in cols)
        + " |",
        "|---|" + "---|" * len(cols),
    ]
    digits = 1 if higher_is_better else 3
    best: dict[tuple[str, float | None], float] = {}
    for k, r in cols:
        means = [float(np.mean(vals[(s, k, r)])) for s in strategies if (s, k, r) in vals]
        best[(k, r)] = max(means) if higher_is_better else min(means)
    for s in strategies:
        cells = []
        for k, r in cols:
            v = vals.get((s, k, r))
            if not v:
                cells.append("")
                continue
            mean = float(np.mean(v))
            std = float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
            cell = f"{mean:.{digits}f} ± {std:.{digits}f}"
            if round(mean, digits) == round(best[(k, r)], digits):
                cell = f"**{cell}**"
            cells.append(cell)
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_rates(
    records: list[dict[str, Any]], metric: str, path: str | Path, title: str | None = None
) -> Path:
    """Metric vs missing rate, mean ± 1 std over seeds, one panel per mask kind; saved as PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("plotting needs matplotlib: pip install 'masknn[demo]'") from err
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    kinds = list(dict.fromkeys(r["mask_kind"] for r in records))
    strategies = list(dict.fromkeys(r["strategy"] for r in records))
    width = max(6.0, 5.0 * len(kinds))
    fig, axes = plt.subplots(1, len(kinds), figsize=(width, 4.0), squeeze=False, sharey=True)
    markers = "osD^vP*Xh"
    for ax, kind in zip(axes[0], kinds):
        for i, s in enumerate(strategies):
            rs = [r for r in records if r["strategy"] == s and r["mask_kind"] == kind]
            rates = sorted({r["rate"] for r in rs}, key=lambda v: -1.0 if v is None else v)
            xs = [0.0 if r is None else 100.0 * r for r in rates]
            groups = [[q["value"] for q in rs if q["rate"] == r] for r in rates]
            mean = [float(np.mean(g)) for g in groups]
            std = [float(np.std(g, ddof=1)) if len(g) > 1 else 0.0 for g in groups]
            dashed = "--" if not s.startswith("partial") and "+mc" not in s else "-"
            ax.errorbar(
                xs, mean, yerr=std, label=s, marker=markers[i % len(markers)], ls=dashed, capsize=3, ms=4
            )
        ax.set_title(f"{kind} masks" if kind != "data" else "data's own mask")
        ax.set_xlabel("missing (%)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(metric)
    if len(strategies) > 6:  # keep the curves visible: legend beside the last panel
        axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        axes[0][-1].legend(fontsize=8)
    if title:
        import textwrap

        fig.suptitle(textwrap.fill(title, int(width * 13)), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
