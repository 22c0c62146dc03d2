"""Train the same architecture under each strategy with the same budget and seeds."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from masknn import masks as _masks
from masknn._masked import Masked
from masknn.compare.data import CompareData
from masknn.compare.models import build_model
from masknn.compare.report import format_report, format_table, noise_summary, plot_rates
from masknn.compare.strategies import Strategy, parse_strategies
from masknn.functional.losses import masked_mse_loss

__all__ = ["MASK_KINDS", "CompareResult", "compare", "simulate_masks"]

MASK_KINDS = ("cloud", "random", "rectangle", "stroke")
"""Simulated mask generators (``masknn.masks``)."""


def simulate_masks(kind: str, shape: Sequence[int], rate: float, seed: int) -> np.ndarray:
    """Bool masks (True = valid) hiding ``rate`` of each image, from [`masknn.masks`][]."""
    if kind not in MASK_KINDS:
        raise ValueError(f"simulate_masks: kind must be one of {MASK_KINDS}, got {kind!r}")
    gen = getattr(_masks, f"{kind}_mask")
    return gen(tuple(shape), rate, seed=seed).numpy()


@dataclass
class CompareResult:
    """Per-run records and how to show them.

    ``records``: one dict per (strategy, mask kind, rate, seed) with keys
    ``strategy``, ``mask_kind``, ``rate`` (None = the data's own masks),
    ``seed``, ``value`` (the metric), ``seconds``, ``params``. ``setup``: the
    set-up in words (data, split, missing values, model, training, seeds,
    metric), label -> text, as the report prints it.
    """

    metric: str
    higher_is_better: bool
    records: list[dict[str, Any]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    setup: dict[str, str] = field(default_factory=dict)
    #: With ``compare(..., keep_models=True)``: the trained model of the last seed,
    #: keyed by ``(strategy, mask_kind, rate)``.
    models: dict[tuple[str, str, float | None], torch.nn.Module] = field(default_factory=dict)

    def table(self) -> str:
        """A markdown table: strategies x (mask kind, rate), ``mean ± std`` over seeds, best in bold."""
        return format_table(self.records, self.metric, self.higher_is_better)

    def noise(self) -> str:
        """Per column, the best strategy and those within noise of it (paired by seed)."""
        return noise_summary(self.records, self.higher_is_better)

    def report(self) -> str:
        """The markdown report: set-up, table, and which strategies are within noise of the best."""
        title = f"masknn compare: {self.info.get('data', 'data')}"
        return format_report(self.records, self.metric, self.higher_is_better, self.setup, title)

    def plot(self, path: str | Path, title: str | None = None) -> Path:
        """The figure (needs matplotlib): metric vs missing rate and the difference to zero-fill,
        or a bar per strategy for the data's own mask; see [`plot_rates`][masknn.compare.plot_rates]."""
        return plot_rates(
            self.records, self.metric, path, title or self.info.get("title"), self.higher_is_better
        )

    def summary(self) -> dict[tuple[str, str, float | None], tuple[float, float, int]]:
        """``{(strategy, mask_kind, rate): (mean, std, n_seeds)}``."""
        groups: dict[tuple[str, str, float | None], list[float]] = {}
        for r in self.records:
            groups.setdefault((r["strategy"], r["mask_kind"], r["rate"]), []).append(r["value"])
        return {
            k: (float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, len(v))
            for k, v in groups.items()
        }


def _progress(total: int, enabled: bool, desc: str) -> Any:
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit="step", leave=False, dynamic_ncols=True)


def _channel_scale(x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Per-channel std of the valid values, no centering: a zero stays the data's own zero."""
    mm = np.broadcast_to(m, x.shape)
    scale = np.ones(x.shape[1], dtype=np.float32)
    for c in range(x.shape[1]):
        v = x[:, c][mm[:, c]]
        if v.size > 1 and float(v.std()) > 0:
            scale[c] = float(v.std())
    return scale.reshape(1, -1, 1, 1)


def _pad4(a: np.ndarray, value: float | bool) -> np.ndarray:
    h, w = a.shape[-2:]
    ph, pw = (-h) % 4, (-w) % 4
    if ph == 0 and pw == 0:
        return a
    return np.pad(a, ((0, 0), (0, 0), (0, ph), (0, pw)), constant_values=value)


def compare(
    data: CompareData,
    strategies: str | Iterable[str | Strategy] | None = None,
    rates: Sequence[float] | None = None,
    mask_kinds: Sequence[str] = ("cloud",),
    seeds: int | Sequence[int] = 3,
    steps: int = 300,
    batch_size: int = 64,
    lr: float = 2e-3,
    width: int = 16,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    keep_models: bool = False,
) -> CompareResult:
    """Compare masking strategies on ``data`` with one training budget.

    For each strategy, mask kind, missing rate and seed: build the same
    architecture ([`Classifier`][masknn.compare.Classifier] for labels, a
    small [`UNet`][masknn.compare.UNet] for per-pixel targets), train it
    for ``steps`` Adam steps of ``batch_size`` samples with the seed fixing the
    initialization, the batch order and the simulated masks (the same masks for
    every strategy), then score the test samples: accuracy in % for labels,
    RMSE (in the data's units) on target pixels hidden from the input for
    regression (on all target pixels if none is hidden).

    Args:
        data: [`CompareData`][masknn.compare.CompareData] (e.g. from [`masknn.compare.load_npz`][]).
        strategies: comma-separated names, a list, ``"all"`` or None (the default set).
        rates: missing rates to simulate on top of the data's own mask; None
            means the data's own mask only (if the data has no missing value,
            None simulates 10, 30, 50 and 70 %).
        mask_kinds: simulated mask shapes, from [`MASK_KINDS`][masknn.compare.MASK_KINDS].
        seeds: a count (seeds 0..n-1) or explicit seeds.
        steps: Adam steps per run (the training budget).
        batch_size: samples per step.
        lr: the peak learning rate (one-cycle schedule).
        width: channels of the first convolution block (the model size).
        progress: show a tqdm progress bar (if tqdm is installed).
        log: called with one line per finished run.
        keep_models: keep the last seed's trained models in ``result.models``.

    Input values at masked positions are set to NaN before they reach a
    model, so a strategy that leaked them would fail loudly.
    """
    strats = parse_strategies(strategies)
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise ValueError("compare: need at least one seed")
    for k in mask_kinds:
        if k not in MASK_KINDS:
            raise ValueError(f"compare: mask kind must be one of {MASK_KINDS}, got {k!r}")
    if rates is None and not data.has_missing:
        rates = (0.1, 0.3, 0.5, 0.7)
    rate_list: list[float | None] = [None] if rates is None else [float(r) for r in rates]
    for r in rate_list:
        if r is not None and not 0.0 <= r < 1.0:
            raise ValueError(f"compare: rates must lie in [0, 1), got {r}")
    kinds = list(mask_kinds) if rates is not None else ["data"]
    if steps < 1 or batch_size < 1:
        raise ValueError("compare: steps and batch_size must be >= 1")

    regress = data.kind == "regress"
    x, m = data.x, data.mask
    scale = _channel_scale(x[data.train], m[data.train])
    x = x / scale
    y: np.ndarray = data.y
    ym: np.ndarray | None = data.y_mask
    yscale = np.ones((1, 1, 1, 1), dtype=np.float32)
    if regress:
        assert ym is not None
        yscale = _channel_scale(y[data.train], ym[data.train])
        y = y / yscale
        x, m, y, ym = _pad4(x, 0.0), _pad4(m, False), _pad4(y, 0.0), _pad4(ym, False)
    tr, te = np.flatnonzero(data.train), np.flatnonzero(~data.train)
    result_scale = {"x_scale": scale.ravel().tolist(), "y_scale": yscale.ravel().tolist()}
    result = CompareResult(
        metric="RMSE on hidden pixels" if regress else "accuracy (%)",
        higher_is_better=not regress,
        info={
            "data": data.name,
            "steps": steps,
            "batch_size": batch_size,
            "lr": lr,
            "width": width,
            "strategies": [s.name for s in strats],
            **result_scale,
        },
    )
    result.setup = _setup(data, strats, kinds, rate_list, seed_list, steps, batch_size, lr, width)
    total = len(strats) * len(kinds) * len(rate_list) * len(seed_list) * steps
    bar = _progress(total, progress, f"compare {data.name}")
    try:
        for kind in kinds:
            for rate in rate_list:
                for seed in seed_list:
                    if rate is None:
                        mm = m
                    else:
                        sim = simulate_masks(kind, (x.shape[0], 1, *x.shape[2:]), rate, seed=1000 + seed)
                        mm = m & sim
                    for strat in strats:
                        value, secs, params, model = _run_one(
                            data.kind,
                            strat,
                            x,
                            mm,
                            y,
                            ym,
                            tr,
                            te,
                            data.num_classes,
                            seed,
                            steps,
                            batch_size,
                            lr,
                            width,
                            bar,
                            yscale,
                        )
                        rec = {
                            "strategy": strat.name,
                            "mask_kind": kind,
                            "rate": rate,
                            "seed": seed,
                            "value": value,
                            "seconds": secs,
                            "params": params,
                        }
                        result.records.append(rec)
                        if keep_models:
                            result.models[(strat.name, kind, rate)] = model
                        if log is not None:
                            rs = "own" if rate is None else f"{rate:.0%}"
                            log(f"{strat.name:<12} {kind:<9} {rs:>4} seed {seed}: {value:.4g} ({secs:.1f} s)")
    finally:
        if bar is not None:
            bar.close()
    sizes = sorted({int(r["params"]) for r in result.records})
    counts = f"{sizes[0]:,}" if len(sizes) == 1 else f"{sizes[0]:,}-{sizes[-1]:,}"
    result.setup["model"] += f"; {counts} parameters"
    result.setup["time"] = f"{sum(r['seconds'] for r in result.records):.0f} s of training and scoring"
    return result


def _setup(
    data: CompareData,
    strats: list[Strategy],
    kinds: list[str],
    rates: list[float | None],
    seeds: list[int],
    steps: int,
    batch_size: int,
    lr: float,
    width: int,
) -> dict[str, str]:
    """The set-up in words, for the report."""
    n, c, h, w = data.x.shape
    missing = 100.0 * (1.0 - float(np.broadcast_to(data.mask, data.x.shape).mean()))
    if data.kind == "classify":
        task = f"classification into {data.num_classes} classes"
        model = f"the same small CNN for every strategy (masknn.compare.Classifier, width {width})"
        metric = "accuracy (%) on the test samples"
    else:
        task = f"per-pixel regression of {data.num_classes} target channel(s)"
        model = f"the same small U-Net for every strategy (masknn.compare.UNet, width {width})"
        metric = "RMSE on the test samples' target pixels hidden from the input, in the data's units"
    if rates == [None]:
        masks = f"the data's own mask ({missing:.1f} % of the input values missing)"
    else:
        shown = ", ".join(f"{r:.0%}" for r in rates if r is not None)
        masks = (
            f"simulated {' and '.join(kinds)} masks hiding {shown} of each image, on top of the "
            f"data's own mask ({missing:.1f} % missing in the data)"
        )
    return {
        "data": f"{data.name}: {n} samples of {c} x {h} x {w}, {task}",
        "split": f"{int(data.train.sum())} train / {int((~data.train).sum())} test ({data.split})",
        "missing values": masks,
        "strategies": ", ".join(s.name for s in strats),
        "model": model,
        "training": f"{steps} Adam steps of {batch_size} samples, one-cycle learning rate peaking at {lr:g}",
        "seeds": (
            f"{', '.join(str(s) for s in seeds)} (a seed fixes the initialization, the batch order"
            f"{'' if rates == [None] else ' and the simulated masks'}, the same for every strategy)"
        ),
        "metric": metric,
    }


def _masked_input(x: Tensor, m: Tensor) -> Masked:
    # Masked positions hold NaN: a strategy that read them would produce NaN.
    return Masked(torch.where(m, x, torch.tensor(float("nan"))), m)


def _run_one(
    kind: str,
    strat: Strategy,
    x_np: np.ndarray,
    m_np: np.ndarray,
    y_np: np.ndarray,
    ym_np: np.ndarray | None,
    tr: np.ndarray,
    te: np.ndarray,
    outputs: int,
    seed: int,
    steps: int,
    batch_size: int,
    lr: float,
    width: int,
    bar: Any,
    yscale: np.ndarray,
) -> tuple[float, float, int, torch.nn.Module]:
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    x, m = torch.from_numpy(x_np), torch.from_numpy(np.ascontiguousarray(m_np))
    y = torch.from_numpy(y_np)
    ym = torch.from_numpy(ym_np) if ym_np is not None else None
    model = build_model(kind, strat, x.shape[1], m.shape[1], outputs, width, (x.shape[2], x.shape[3]))
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    gen = torch.Generator().manual_seed(seed)
    order = torch.from_numpy(tr)[torch.randperm(len(tr), generator=gen)]
    pos = 0
    use_hidden = ym is not None and bool((ym & ~m.all(1, keepdim=True)).any())
    model.train()
    for _ in range(steps):
        if pos + batch_size > len(order) and pos > 0:
            order = torch.from_numpy(tr)[torch.randperm(len(tr), generator=gen)]
            pos = 0
        idx = order[pos : pos + batch_size]
        pos += batch_size
        out = model(_masked_input(x[idx], m[idx]))
        if kind == "classify":
            loss = F.cross_entropy(out, y[idx])
        else:
            assert ym is not None
            loss = masked_mse_loss(out, y[idx], _loss_mask(ym[idx], m[idx], use_hidden))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if bar is not None:
            bar.update(1)
    model.eval()
    te_t = torch.from_numpy(te)
    with torch.no_grad():
        if kind == "classify":
            correct = 0
            for i in range(0, len(te_t), 512):
                idx = te_t[i : i + 512]
                correct += int((model(_masked_input(x[idx], m[idx])).argmax(1) == y[idx]).sum())
            value = 100.0 * correct / len(te_t)
        else:
            assert ym is not None
            sq, n = 0.0, 0
            ys = torch.from_numpy(yscale)
            for i in range(0, len(te_t), 256):
                idx = te_t[i : i + 256]
                pred = model(_masked_input(x[idx], m[idx]))
                sel = _loss_mask(ym[idx], m[idx], use_hidden).expand_as(pred)
                err = ((pred - y[idx]) * ys)[sel]
                sq += float((err.double() ** 2).sum())
                n += int(sel.sum())
            value = math.sqrt(sq / max(n, 1))
    return value, time.perf_counter() - t0, params, model


def _loss_mask(ym: Tensor, m: Tensor, use_hidden: bool) -> Tensor:
    """Target pixels hidden from the input (or all target pixels when the data hides none)."""
    return ym & ~m.all(1, keepdim=True) if use_hidden else ym
