"""The comparison's table, report and figure."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["format_report", "format_table", "noise_summary", "plot_rates"]

#: Two-sided 95 % quantiles of Student's t for 1-30 degrees of freedom (beyond: 1.96).
_T95 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip

Column = tuple[str, float | None]


def _col(kind: str, rate: float | None) -> str:
    return "own mask" if rate is None else f"{kind} {rate:.0%}"


def _columns(records: list[dict[str, Any]]) -> list[Column]:
    return list(dict.fromkeys((r["mask_kind"], r["rate"]) for r in records))


def _by_seed(records: list[dict[str, Any]], strategy: str, column: Column) -> dict[Any, float]:
    return {
        r["seed"]: float(r["value"])
        for r in records
        if r["strategy"] == strategy and (r["mask_kind"], r["rate"]) == column
    }


def _mean_std(values: list[float]) -> tuple[float, float]:
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


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
    cols = _columns(records)
    vals: dict[tuple[str, str, float | None], list[float]] = {}
    for rec in records:
        vals.setdefault((rec["strategy"], rec["mask_kind"], rec["rate"]), []).append(float(rec["value"]))
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
            mean, std = _mean_std(v)
            cell = f"{mean:.{digits}f} ± {std:.{digits}f}"
            if round(mean, digits) == round(best[(k, r)], digits):
                cell = f"**{cell}**"
            cells.append(cell)
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def noise_summary(records: list[dict[str, Any]], higher_is_better: bool) -> str:
    """For each column: the best strategy, and which others are within noise of it.

    Every strategy runs with the same seeds (the same simulated masks and batch order),
    so the comparison is paired by seed: another strategy is *within noise* of the best
    when the 95 % Student-t interval of the per-seed differences contains 0. Each is shown
    as ``mean difference [interval]``; with few seeds the interval is wide (t = 4.3 for 3
    seeds), so a consistent small gap can count as behind and a larger but erratic one as
    within noise. With one seed there is no estimate of the noise, and the summary says so.

    Examples:
        >>> recs = [{"strategy": s, "mask_kind": "cloud", "rate": 0.3, "seed": i, "value": v}
        ...         for s, vals in (("a", (80, 82, 81)), ("b", (79, 83, 80)), ("c", (70, 71, 69)))
        ...         for i, v in enumerate(vals)]
        >>> print(noise_summary(recs, higher_is_better=True))  # doctest: +NORMALIZE_WHITESPACE
        - cloud 30%: best **a** (81.0 ± 1.0); within noise of it: b (-0.3 [-3.2, 2.5]);
          behind it: c (-11.0 [-13.5, -8.5]).
    """
    strategies = list(dict.fromkeys(r["strategy"] for r in records))
    digits = 1 if higher_is_better else 3
    sign = 1.0 if higher_is_better else -1.0
    lines = []
    for column in _columns(records):
        runs = {s: _by_seed(records, s, column) for s in strategies}
        runs = {s: v for s, v in runs.items() if v}
        means = {s: float(np.mean(list(v.values()))) for s, v in runs.items()}
        best = max(means, key=lambda s: sign * means[s])
        b_mean, b_std = _mean_std(list(runs[best].values()))
        # Tied: equal to the shown precision (half a unit of the last digit shown).
        tied = [s for s in runs if s != best and abs(means[s] - b_mean) < 0.5 * 10.0**-digits]
        names = ", ".join(f"**{s}**" for s in [best, *tied])
        head = f"- {_col(*column)}: best {names} ({b_mean:.{digits}f} ± {b_std:.{digits}f}"
        head += f"{', equal means' if tied else ''})"
        if max(len(v) for v in runs.values()) < 2:
            lines.append(f"{head}; one seed: no estimate of the noise (run more seeds).")
            continue
        close: list[str] = []
        behind: list[str] = []
        for s in runs:
            if s == best or s in tied:
                continue
            seeds = sorted(set(runs[s]) & set(runs[best]), key=str)
            diffs = [runs[s][k] - runs[best][k] for k in seeds]
            if len(diffs) < 2:
                close.append(f"{s} (fewer than 2 shared seeds)")
                continue
            d_mean, d_std = _mean_std(diffs)
            df = len(diffs) - 1
            half = (_T95[df - 1] if df <= len(_T95) else 1.96) * d_std / math.sqrt(len(diffs))
            lo, hi = d_mean - half, d_mean + half
            text = f"{s} ({d_mean:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}])"
            (close if abs(d_mean) <= half else behind).append(text)
        parts = [head]
        if close:
            parts.append(f"within noise of it: {', '.join(close)}")
        if behind:
            parts.append(f"behind it: {', '.join(behind)}")
        lines.append("; ".join(parts) + ".")
    return "\n".join(lines)


def format_report(
    records: list[dict[str, Any]],
    metric: str,
    higher_is_better: bool,
    setup: Mapping[str, Any],
    title: str = "masknn compare",
) -> str:
    """The saved report: the set-up (``setup``: label -> text, in order), the table, and which
    strategies are within noise of the best ([`noise_summary`][masknn.compare.noise_summary])."""
    n_seeds = len({r["seed"] for r in records})
    lines = [f"# {title}", "", "## Set-up", ""]
    lines += [f"- {label}: {text}" for label, text in setup.items()]
    lines += ["", "## Results", "", format_table(records, metric, higher_is_better), ""]
    lines += [
        "## Within noise?",
        "",
        "Paired by seed (every strategy sees the same seeds, simulated masks and batch order): a "
        "strategy is within noise of the best when the 95 % t-interval of its per-seed difference "
        f"to the best contains 0. Shown: the mean difference over {n_seeds} seed"
        f"{'s' if n_seeds != 1 else ''} [the 95 % interval]. Few seeds give wide intervals: run more "
        "seeds (--seeds) to separate strategies that are within noise.",
        "",
        noise_summary(records, higher_is_better),
        "",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------- the figure


def _plt() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("plotting needs matplotlib: pip install 'masknn[demo]'") from err
    return plt


_MARKERS = "osD^vP*XhH<>"
_STYLES = {"plain": "--", "mc": "-", "partial": ":"}


def _style(strategy: str) -> str:
    if strategy.startswith("partial") and "+mc" not in strategy:
        return _STYLES["partial"]
    return _STYLES["mc"] if "+mc" in strategy or "U-Net" in strategy else _STYLES["plain"]


def plot_rates(
    records: list[dict[str, Any]],
    metric: str,
    path: str | Path,
    title: str | None = None,
    higher_is_better: bool | None = None,
    reference: str | None = None,
) -> Path:
    """The comparison as a PNG, one column of panels per mask kind.

    * Several missing rates: the metric against the rate (mean ± 1 std over seeds; the
      strategies are drawn slightly apart so that their error bars do not hide each
      other), and below it each strategy's difference to ``reference`` (default: ``zero``
      if present, else the first strategy), paired by seed, where curves that lie on top
      of each other in the first row separate.
    * One rate, or the data's own mask: a bar per strategy (mean, ±1 std error bar, a dot
      per seed, the value written above).
    """
    plt = _plt()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = _draw(plt, records, metric, title, higher_is_better, reference)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _draw(
    plt: Any,
    records: list[dict[str, Any]],
    metric: str,
    title: str | None,
    higher_is_better: bool | None,
    reference: str | None,
) -> Any:
    """The figure of [`plot_rates`][masknn.compare.plot_rates] (a matplotlib ``Figure``)."""
    kinds = list(dict.fromkeys(r["mask_kind"] for r in records))
    strategies = list(dict.fromkeys(r["strategy"] for r in records))
    rates_of = {k: sorted({r["rate"] for r in records if r["mask_kind"] == k}, key=_rate_key) for k in kinds}
    lines = any(len(v) > 1 for v in rates_of.values())
    ref = reference or ("zero" if "zero" in strategies else strategies[0])
    colors = {s: plt.get_cmap("tab10")(i % 10) for i, s in enumerate(strategies)}
    rows = 2 if lines and len(strategies) > 1 else 1
    width = max(6.5, 5.5 * len(kinds)) + (2.2 if lines else 0.0)
    fig, axes = plt.subplots(rows, len(kinds), figsize=(width, 3.9 * rows + 0.3), squeeze=False, sharex="col")
    for col, kind in enumerate(kinds):
        top = axes[0][col]
        label = f"{kind} masks" if kind != "data" else "the data's own mask"
        if len(rates_of[kind]) == 1:
            _bars(top, records, strategies, kind, rates_of[kind][0], colors, higher_is_better)
            top.set_title(label if rates_of[kind][0] is None else f"{label}, {rates_of[kind][0]:.0%} missing")
            top.set_ylabel(metric)
            if rows == 2:
                axes[1][col].axis("off")
            continue
        rates = rates_of[kind]
        xs = [100.0 * float(r) for r in rates if r is not None]
        step = min(np.diff(xs)) if len(xs) > 1 else 10.0
        spread = 0.25 * step
        for i, s in enumerate(strategies):
            dx = (i - (len(strategies) - 1) / 2) * spread / max(len(strategies) - 1, 1)
            mean, std, x_at = [], [], []
            d_mean, d_std = [], []
            for x, rate in zip(xs, [r for r in rates if r is not None]):
                vals = _by_seed(records, s, (kind, rate))
                if not vals:
                    continue
                m, sd = _mean_std(list(vals.values()))
                mean.append(m)
                std.append(sd)
                x_at.append(x + dx)
                base = _by_seed(records, ref, (kind, rate))
                shared = [k for k in vals if k in base]
                dm, ds = _mean_std([vals[k] - base[k] for k in shared]) if shared else (math.nan, 0.0)
                d_mean.append(dm)
                d_std.append(ds)
            style = {
                "color": colors[s],
                "marker": _MARKERS[i % len(_MARKERS)],
                "ls": _style(s),
                "capsize": 3,
                "ms": 5,
                "lw": 1.4,
            }
            top.errorbar(x_at, mean, yerr=std, label=s, **style)
            if rows == 2:
                axes[1][col].errorbar(x_at, d_mean, yerr=d_std, label=s, **style)
        top.set_title(label)
        top.set_ylabel(metric)
        top.grid(alpha=0.3)
        top.set_xticks(xs)
        if rows == 2:
            bottom = axes[1][col]
            bottom.axhline(0.0, color="black", lw=0.8)
            bottom.set_ylabel(f"difference to {ref}\n(same seeds)")
            bottom.set_xlabel("missing (%)")
            bottom.grid(alpha=0.3)
            better = (
                ""
                if higher_is_better is None
                else (" (above: better)" if higher_is_better else " (below: better)")
            )
            bottom.set_title(f"{metric}: minus {ref}{better}", fontsize=9)
        else:
            top.set_xlabel("missing (%)")
    if lines:
        axes[0][-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="strategy")
    if title:
        import textwrap

        fig.suptitle(textwrap.fill(title, int(width * 13)), fontsize=9)
    fig.tight_layout()
    return fig


def _rate_key(rate: float | None) -> float:
    return -1.0 if rate is None else float(rate)


def _bars(
    ax: Any,
    records: list[dict[str, Any]],
    strategies: list[str],
    kind: str,
    rate: float | None,
    colors: dict[str, Any],
    higher_is_better: bool | None,
) -> None:
    """One bar per strategy: mean over seeds, ±1 std, a dot per seed, the value above."""
    digits = 3 if higher_is_better is False else 1
    present = [s for s in strategies if _by_seed(records, s, (kind, rate))]
    for i, s in enumerate(present):
        vals = list(_by_seed(records, s, (kind, rate)).values())
        mean, std = _mean_std(vals)
        ax.bar(i, mean, yerr=std, color=colors[s], alpha=0.75, capsize=4, edgecolor="black", lw=0.6)
        jitter = np.linspace(-0.15, 0.15, len(vals)) if len(vals) > 1 else np.zeros(1)
        ax.scatter(i + jitter, vals, color="black", s=10, zorder=3)
        ax.annotate(
            f"{mean:.{digits}f}±{std:.{digits}f}",
            (i, mean + std),
            textcoords="offset points",
            xytext=(0, 3),
            ha="center",
            fontsize=7,
        )
    ax.set_xticks(range(len(present)))
    ax.set_xticklabels(present, rotation=30, ha="right", fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    ax.margins(y=0.12)
