"""The comparison's report (set-up, table, noise) and figure (bars for the data's own mask,
separated curves and differences for several rates), and the CLI text that names options."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from masknn.__main__ import _parser, main
from masknn.compare import NPZ_LAYOUT, CompareData, compare, noise_summary
from masknn.compare.report import _T95, _draw, _plt


def _records(
    values: dict[str, list[float]], rate: float | None = 0.3, kind: str = "cloud"
) -> list[dict[str, Any]]:
    return [
        {"strategy": s, "mask_kind": kind, "rate": rate, "seed": i, "value": v, "params": 1, "seconds": 0.0}
        for s, vals in values.items()
        for i, v in enumerate(vals)
    ]


def _toy(n: int = 40, missing: float = 0.0) -> CompareData:
    rng = np.random.default_rng(0)
    y = np.arange(n) % 2
    x = rng.normal(0, 0.5, (n, 1, 8, 8)).astype(np.float32)
    x[y == 0, :, :4] += 1.0
    if missing:
        x[rng.random(x.shape) < missing] = np.nan
    return CompareData(x, None, y, np.arange(n) < 30, name="toy", split="first 30 train")


# ----------------------------------------------------------------------------------- noise


def test_noise_summary_separates_a_consistent_gap_from_noise() -> None:
    text = noise_summary(
        _records({"a": [80, 82, 81], "b": [79, 83, 80], "c": [70, 71, 69], "d": [80, 82, 81]}), True
    )
    assert text.startswith("- cloud 30%: best **a**, **d** (81.0 ± 1.0, equal means)")
    assert "within noise of it: b (-0.3 [-3.2, 2.5])" in text and "behind it: c (-11.0 [-13.5, -8.5])" in text
    # Lower is better (RMSE): the smallest mean is the best.
    low = noise_summary(_records({"a": [0.5, 0.52, 0.51], "b": [0.9, 0.95, 0.92]}), False)
    assert "best **a**" in low and "behind it: b" in low
    # One seed: no estimate of the noise, and the summary says so.
    one = noise_summary(_records({"a": [1.0], "b": [2.0]}), True)
    assert "one seed: no estimate of the noise" in one


def test_t_quantiles() -> None:
    stats = pytest.importorskip("scipy.stats", reason="checking the t table needs scipy (demo extra)")
    for df, t in enumerate(_T95, start=1):
        assert abs(stats.t.ppf(0.975, df) - t) < 5e-4


@settings(max_examples=40, deadline=None)
@given(
    base=st.lists(st.floats(0, 100, allow_nan=False), min_size=2, max_size=6),
    noise=st.lists(st.floats(-3, 3, allow_nan=False), min_size=6, max_size=6),
    gap=st.floats(0, 50),
    shift=st.floats(-1000, 1000),
    scale=st.floats(0.1, 10),
)
def test_noise_verdicts_follow_the_paired_t_interval(
    base: list[float], noise: list[float], gap: float, shift: float, scale: float
) -> None:
    n = len(base)
    a = base
    b = [v - gap + e for v, e in zip(base, noise[:n])]
    text = noise_summary(_records({"a": a, "b": b}), True)
    diffs = np.array(b) - np.array(a)
    mean, std = diffs.mean(), diffs.std(ddof=1)
    half = _T95[n - 2] * std / np.sqrt(n)
    tie = 0.05  # means closer than half the last digit shown are reported as equal
    if abs(mean) >= tie * 1.001 and abs(abs(mean) - half) > 1e-6 * (1 + half):  # away from the edges
        best = "a" if mean < 0 else "b"
        assert f"best **{best}**" in text
        verdict = "within noise of it" if abs(mean) <= half else "behind it"
        assert verdict in text
        # The verdict does not depend on the units: shifting and scaling every value keeps it.
        if abs(mean) * scale >= tie * 1.001:
            moved = noise_summary(
                _records({"a": [shift + scale * v for v in a], "b": [shift + scale * v for v in b]}), True
            )
            assert verdict in moved
    elif abs(mean) < tie * 0.999:
        assert "equal means" in text


# ---------------------------------------------------------------------------------- report


def test_report_states_the_set_up_and_the_noise() -> None:
    res = compare(_toy(), "zero,zero+mc", rates=[0.3], seeds=2, steps=2, batch_size=8, progress=False)
    report = res.report()
    for needle in (
        "## Set-up",
        "- data: toy: 40 samples of 1 x 8 x 8, classification into 2 classes",
        "- split: 30 train / 10 test (first 30 train)",
        "simulated cloud masks hiding 30% of each image",
        "- model: the same small CNN for every strategy (masknn.compare.Classifier, width 16)",
        "- training: 2 Adam steps of 8 samples",
        "- seeds: 0, 1 (",
        "- metric: accuracy (%)",
        "## Results",
        "| zero+mc |",
        "## Within noise?",
        "- cloud 30%: best",
    ):
        assert needle in report, needle
    assert re.search(r"parameters\n", report)


def test_cli_writes_the_report_and_the_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    data = _toy(missing=0.3)
    np.savez(tmp_path / "mine.npz", x=np.where(np.isfinite(data.x), data.x, np.nan), y=data.y)
    x = np.load(tmp_path / "mine.npz")["x"]
    x[:, :, 0] = np.nan
    np.savez(tmp_path / "mine.npz", x=x, y=data.y)
    out = tmp_path / "out"
    args = ["compare", str(tmp_path / "mine.npz"), "--strategies", "zero,mean+mc", "--seeds", "2"]
    assert main([*args, "--steps", "2", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "- own mask: best" in printed
    report = (out / "mine.md").read_text()
    assert "split: 32 train / 8 test (a random split, 20% test, seed 0)" in report
    assert "the data's own mask" in report and "## Within noise?" in report
    runs = json.loads((out / "mine.json").read_text())
    assert len(runs["records"]) == 4 and runs["setup"]["training"].startswith("2 Adam steps")


def test_the_layout_text_names_real_options() -> None:
    compare_parser = _parser()._subparsers._group_actions[0].choices["compare"]  # type: ignore[union-attr]
    options = {o for a in compare_parser._actions for o in a.option_strings}
    named = set(re.findall(r"--[a-z][\w-]*", NPZ_LAYOUT))
    assert named and named <= options, named - options


# ---------------------------------------------------------------------------------- figure


def test_own_mask_figure_is_a_bar_per_strategy() -> None:
    pytest.importorskip("matplotlib")
    plt = _plt()
    records = _records(
        {"zero": [70, 72, 71], "mean+mc": [80, 79, 81], "partial": [75, 74, 78]}, rate=None, kind="data"
    )
    fig = _draw(plt, records, "accuracy (%)", None, True, None)
    try:
        (ax,) = fig.axes
        assert ax.get_title() == "the data's own mask"
        assert [t.get_text() for t in ax.get_xticklabels()] == ["zero", "mean+mc", "partial"]
        heights = [p.get_height() for p in ax.patches]
        assert np.allclose(heights, [71, 80, 75.66666], atol=1e-4)
        assert "missing" not in ax.get_xlabel()  # no rate axis with every strategy at x = 0
    finally:
        plt.close(fig)


def test_rate_figure_separates_strategies_and_shows_differences() -> None:
    pytest.importorskip("matplotlib")
    plt = _plt()
    records = []
    for rate in (0.1, 0.5):
        records += _records(
            {"zero": [70, 72, 71], "zero+mc": [80, 79, 81], "mean+mc": [80, 80, 81]}, rate=rate
        )
    fig = _draw(plt, records, "accuracy (%)", "t", True, None)
    try:
        top, bottom = fig.axes[:2]
        curves = {c.get_label(): c.lines[0] for c in top.containers}
        assert set(curves) == {"zero", "zero+mc", "mean+mc"}
        xs = {tuple(line.get_xdata()) for line in curves.values()}
        assert len(xs) == 3  # each strategy drawn at its own offset
        assert "difference to zero" in bottom.get_ylabel()
        ys = {c.get_label(): tuple(c.lines[0].get_ydata()) for c in bottom.containers}
        assert np.allclose(ys["zero"], 0.0) and np.allclose(ys["zero+mc"], 9.0)
    finally:
        plt.close(fig)
