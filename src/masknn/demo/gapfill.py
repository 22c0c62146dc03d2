"""Task ``gapfill``: reconstruct cloud-hidden sea-surface temperature (HadISST1, land = no data)."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from masknn._masked import Masked
from masknn.compare import DEFAULT_STRATEGIES, CompareData, CompareResult, compare, simulate_masks
from masknn.datasets import load_hadisst

__all__ = ["CONFIGS", "interpolate", "run", "sst_patches"]

PATCH, STRIDE, SPLIT_LON_INDEX = 32, 8, 280  # test: patches east of 100.5E (West Pacific)

CONFIGS: dict[str, dict[str, Any]] = {
    "quick": {
        "rates": (0.3,),
        "seeds": 1,
        "steps": 20,
        "width": 8,
        "strategies": DEFAULT_STRATEGIES,
        "stride": 16,
    },
    "default": {"rates": (0.3, 0.6), "seeds": 3, "steps": 300, "width": 8, "strategies": DEFAULT_STRATEGIES},
    "full": {"rates": (0.3, 0.6), "seeds": 3, "steps": 1500, "width": 16, "strategies": DEFAULT_STRATEGIES},
}


def sst_patches(patch: int = PATCH, stride: int = STRIDE, split: int = SPLIT_LON_INDEX) -> CompareData:
    """32x32 patches of the 1 degree SST grid with at least half ocean, split by longitude
    (train patches lie west of ``lon[split]``, test patches east of it: no overlap)."""
    sst, ocean, _, _ = load_hadisst()
    xs, ms, train = [], [], []
    for i in range(0, sst.shape[0] - patch + 1, stride):
        for j in range(0, sst.shape[1] - patch + 1, stride):
            o = ocean[i : i + patch, j : j + patch]
            if o.mean() < 0.5 or (j < split < j + patch):
                continue
            xs.append(sst[i : i + patch, j : j + patch])
            ms.append(o)
            train.append(j + patch <= split)
    x = np.stack(xs)[:, None]
    m = np.stack(ms)[:, None]
    how = "by longitude: train patches west of 100.5E, test patches east of it"
    return CompareData(x, m, x, np.array(train), y_mask=m, name="HadISST", split=how)


def interpolate(values: np.ndarray, seen: np.ndarray, target: np.ndarray, method: str) -> np.ndarray:
    """Fill ``target`` pixels of one 2-D field from the ``seen`` pixels.

    ``method``: ``"linear"`` (scipy ``griddata``, nearest where outside the convex
    hull of the seen pixels), ``"nearest"`` or ``"mean"`` (the mean of the seen values;
    "patch mean" in the tables).
    """
    out = np.where(seen, values, np.nan).astype(np.float64)
    if not seen.any() or not target.any():
        return np.where(target, 0.0, out)
    if method == "mean":
        out[target & ~seen] = values[seen].mean()
        return out
    from scipy.interpolate import griddata

    pts = np.argwhere(seen)
    q = np.argwhere(target & ~seen)
    if method == "linear" and len(pts) >= 3:
        try:
            v = griddata(pts, values[seen], q, method="linear")
        except Exception:  # degenerate (e.g. collinear) seen pixels
            v = np.full(len(q), np.nan)
        bad = np.isnan(v)
        if bad.any():
            v[bad] = griddata(pts, values[seen], q[bad], method="nearest")
    else:
        v = griddata(pts, values[seen], q, method="nearest")
    out[q[:, 0], q[:, 1]] = v
    return out


def _baselines(data: CompareData, res: CompareResult, rates: tuple[float, ...], seeds: int) -> None:
    te = np.flatnonzero(~data.train)
    assert data.y_mask is not None
    for rate in rates:
        for seed in range(seeds):
            sim = simulate_masks("cloud", (data.x.shape[0], 1, *data.x.shape[2:]), rate, seed=1000 + seed)
            for method, name in (
                ("linear", "interp. linear"),
                ("nearest", "interp. nearest"),
                ("mean", "patch mean"),
            ):
                t0 = time.perf_counter()
                sq, n = 0.0, 0
                for i in te:
                    ocean = data.y_mask[i, 0]
                    seen = data.mask[i, 0] & sim[i, 0]
                    hidden = ocean & ~seen
                    rec = interpolate(data.y[i, 0], seen, ocean, method)
                    sq += float(((rec - data.y[i, 0])[hidden] ** 2).sum())
                    n += int(hidden.sum())
                res.records.append(
                    {
                        "strategy": name,
                        "mask_kind": "cloud",
                        "rate": rate,
                        "seed": seed,
                        "value": math.sqrt(sq / max(n, 1)),
                        "seconds": time.perf_counter() - t0,
                        "params": 0,
                    }
                )


def _residual_nets(
    data: CompareData, res: CompareResult, cfg: dict[str, Any], progress: bool, log: Callable[[str], None]
) -> dict[tuple[float, int], tuple[torch.nn.Module, np.ndarray, np.ndarray]]:
    """A U-Net (zero-fill + mask channels) that predicts the residual over linear interpolation.

    Input channels: the seen SST and the interpolated field; masks: seen and ocean.
    Target: SST minus interpolation on the ocean; scored like the others (RMSE on hidden
    ocean pixels of interpolation + predicted residual), with the same masks and seeds.
    Returns the trained nets, ``(rate, seed) -> (model, input scales, target scale)``.
    """
    assert data.y_mask is not None
    n = data.x.shape[0]
    nets: dict[tuple[float, int], tuple[torch.nn.Module, np.ndarray, np.ndarray]] = {}
    for rate in cfg["rates"]:
        for seed in range(cfg["seeds"]):
            sim = simulate_masks("cloud", (n, 1, *data.x.shape[2:]), rate, seed=1000 + seed)
            seen = data.mask & sim
            interp = np.stack(
                [interpolate(data.y[i, 0], seen[i, 0], data.y_mask[i, 0], "linear") for i in range(n)]
            )[:, None]
            interp = np.where(data.y_mask, interp, 0.0).astype(np.float32)
            x = np.concatenate([np.where(seen, data.x, np.nan), interp], axis=1)
            m = np.concatenate([seen, data.y_mask], axis=1)
            resid = np.where(data.y_mask, data.y - interp, np.nan)
            d = CompareData(x, m, resid, data.train, y_mask=data.y_mask, name="HadISST residual")
            r = compare(
                d,
                "zero+mc",
                rates=None,
                seeds=[seed],
                steps=cfg["steps"],
                batch_size=32,
                lr=3e-3,
                width=cfg["width"],
                progress=progress,
                log=None,
                keep_models=True,
            )
            model = r.models[("zero+mc", "data", None)]
            nets[(rate, seed)] = (model, np.asarray(r.info["x_scale"]), np.asarray(r.info["y_scale"]))
            for rec in r.records:
                res.records.append(
                    {**rec, "strategy": "interp.+residual U-Net", "mask_kind": "cloud", "rate": rate}
                )
                if not progress:
                    log(f"interp.+residual U-Net cloud {rate:.0%} seed {seed}: {rec['value']:.4g}")
    return nets


def run(mode: str, out: Path, progress: bool = True, log: Callable[[str], None] = print) -> str:
    cfg = CONFIGS[mode]
    t0 = time.perf_counter()
    data = sst_patches(stride=cfg.get("stride", STRIDE))
    log(
        f"gapfill: HadISST1 SST (cartopy's file), {int(data.train.sum())} train / "
        f"{int((~data.train).sum())} test 32x32 patches (test east of 100.5E); cloud masks hiding "
        f"{', '.join(f'{r:.0%}' for r in cfg['rates'])} of each patch; {cfg['seeds']} seed(s); "
        f"U-Net width {cfg['width']}, {cfg['steps']} steps of 32"
    )
    res = compare(
        data,
        cfg["strategies"],
        rates=cfg["rates"],
        mask_kinds=("cloud",),
        seeds=cfg["seeds"],
        steps=cfg["steps"],
        batch_size=32,
        lr=3e-3,
        width=cfg["width"],
        progress=progress,
        log=None if progress else log,
        keep_models=True,
    )
    res.metric = "RMSE (C) on hidden ocean pixels"
    nets = _residual_nets(data, res, cfg, progress, log)
    _baselines(data, res, cfg["rates"], cfg["seeds"])
    table = res.table()
    figs = [
        res.plot(out / "gapfill_rmse.png", "HadISST gap filling: RMSE on hidden pixels (lower is better)")
    ]
    figs.append(_panels(data, res, nets, cfg, out / "gapfill_panels.png"))
    secs = time.perf_counter() - t0
    params = {r["strategy"]: r["params"] for r in res.records if r["params"]}
    header = (
        f"## gapfill ({mode}): HadISST1 sea-surface temperature\n\n"
        f"{int(data.train.sum())} train / {int((~data.train).sum())} test patches, U-Net "
        f"({min(params.values()):,}-{max(params.values()):,} parameters), {cfg['steps']} Adam steps of 32; "
        f"RMSE in C on ocean pixels hidden by the simulated clouds; {secs:.0f} s.\n\n"
    )
    noise = "\n\n### Within noise? (paired by seed, 95 % t-interval)\n\n" + res.noise()
    (out / "gapfill.md").write_text(header + table + noise + "\n")
    (out / "gapfill.json").write_text(json.dumps({"info": res.info, "records": res.records}, indent=1))
    log("\n" + table + "\n\n" + res.noise())
    log(f"figures: {', '.join(str(f) for f in figs)}; total {secs:.0f} s")
    return table


def _panels(
    data: CompareData,
    res: CompareResult,
    nets: dict[tuple[float, int], tuple[torch.nn.Module, np.ndarray, np.ndarray]],
    cfg: dict[str, Any],
    path: Path,
) -> Path:
    from masknn.demo.figures import gapfill_panels

    rate = cfg["rates"][-1]
    seed = cfg["seeds"] - 1
    te = np.flatnonzero(~data.train)
    assert data.y_mask is not None
    # A patch with some land (about a quarter), so that land and clouds both show; among
    # those, the one of median temperature range (typical, not the hardest or easiest).
    # Chosen from the data alone, before any method is scored.
    frac = np.array([data.y_mask[k].mean() for k in te])
    near = te[np.abs(frac - 0.75) <= np.abs(frac - 0.75).min() + 0.05]
    spread = np.array([np.ptp(data.y[k][data.y_mask[k]]) for k in near])
    i = int(near[np.argsort(spread)[len(near) // 2]])
    sim = simulate_masks("cloud", (data.x.shape[0], 1, *data.x.shape[2:]), rate, seed=1000 + seed)
    seen = data.mask[i, 0] & sim[i, 0]
    ocean = data.y_mask[i, 0]
    truth = data.y[i, 0]
    xs = float(res.info["x_scale"][0])
    ys = float(res.info["y_scale"][0])
    linear = interpolate(truth, seen, ocean, "linear")
    recons = [("interp. linear", linear)]
    if (rate, seed) in nets:  # the residual U-Net: interpolation + predicted residual
        net, in_scale, out_scale = nets[(rate, seed)]
        interp = np.where(ocean, linear, 0.0).astype(np.float32)
        x = np.stack([np.where(seen, truth, 0.0), interp])[None] / in_scale.reshape(1, -1, 1, 1)
        m = torch.from_numpy(np.stack([seen, ocean])[None])
        xt = torch.from_numpy(x.astype(np.float32))
        with torch.no_grad():
            resid = net(Masked(torch.where(m, xt, torch.tensor(float("nan"))), m))
        recons.append(("interp.+residual U-Net", linear + resid[0, 0].numpy() * float(out_scale.ravel()[0])))
    x1 = torch.from_numpy(truth[None, None] / xs).float()
    m1 = torch.from_numpy(seen[None, None])
    for name in ("zero", "zero+mc", "partial+mc"):
        model = res.models.get((name, "cloud", rate))
        if model is None:
            continue
        with torch.no_grad():
            pred = model(Masked(torch.where(m1, x1, torch.tensor(float("nan"))), m1))
        recons.append((f"U-Net {name}", pred[0, 0].numpy() * ys))
    lon = "east of 100.5E"
    return gapfill_panels(
        truth,
        ocean,
        seen,
        recons,
        path,
        f"HadISST test patch ({lon}), {rate:.0%} of the ocean hidden by clouds",
    )
