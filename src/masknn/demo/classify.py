"""Task ``classify``: handwritten digits with missing regions, every strategy of the harness."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from masknn.compare import ALL_STRATEGIES, DEFAULT_STRATEGIES, CompareData, compare
from masknn.datasets import load_mnist

__all__ = ["CONFIGS", "run"]

#: Budget of each mode: ``steps`` Adam steps of 64 images (150 steps = 2.4 epochs of 4,000);
#: ``downsample=2``: 14x14 digits (2x2 block means), so the default fits in 3 minutes on 2 cores.
CONFIGS: dict[str, dict[str, Any]] = {
    "quick": {
        "n_train": 1000,
        "n_test": 500,
        "kinds": ("cloud",),
        "rates": (0.5,),
        "seeds": 1,
        "steps": 40,
        "downsample": 2,
        "strategies": DEFAULT_STRATEGIES,
    },
    "default": {
        "n_train": 4000,
        "n_test": 1000,
        "kinds": ("cloud",),
        "rates": (0.1, 0.3, 0.5, 0.7),
        "seeds": 3,
        "steps": 150,
        "downsample": 2,
        "strategies": DEFAULT_STRATEGIES,
    },
    "full": {
        "n_train": 4000,
        "n_test": 1000,
        "kinds": ("cloud", "random"),
        "rates": (0.1, 0.3, 0.5, 0.7),
        "seeds": 5,
        "steps": 300,
        "downsample": 1,
        "strategies": ALL_STRATEGIES,
    },
}


def digits_data(n_train: int, n_test: int, seed: int = 0, downsample: int = 1) -> tuple[CompareData, str]:
    """Digits (N, 1, 28 / downsample, 28 / downsample) in [0, 1] (block means), a seeded split."""
    x, y, source = load_mnist()
    if downsample > 1:
        n, c, h, w = x.shape
        k = downsample
        x = x[:, :, : h - h % k, : w - w % k].reshape(n, c, h // k, k, w // k, k).mean(axis=(3, 5))
        source += f", {x.shape[2]}x{x.shape[3]}"
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(y))[: min(len(y), n_train + n_test)]
    n_tr = int(round(len(idx) * n_train / (n_train + n_test)))
    train = np.zeros(len(idx), dtype=bool)
    train[:n_tr] = True
    split = f"a random split of the {len(y):,} digits, seed {seed}"
    return CompareData(x[idx], None, y[idx], train, name="digits", split=split), source


def run(mode: str, out: Path, progress: bool = True, log: Callable[[str], None] = print) -> str:
    cfg = CONFIGS[mode]
    t0 = time.perf_counter()
    data, source = digits_data(cfg["n_train"], cfg["n_test"], downsample=cfg["downsample"])
    log(
        f"classify: {source}; {int(data.train.sum())} train / {int((~data.train).sum())} test images; "
        f"masks {', '.join(cfg['kinds'])} at {', '.join(f'{r:.0%}' for r in cfg['rates'])}; "
        f"{cfg['seeds']} seed(s); {cfg['steps']} steps of 64 per run"
    )
    res = compare(
        data,
        cfg["strategies"],
        rates=cfg["rates"],
        mask_kinds=cfg["kinds"],
        seeds=cfg["seeds"],
        steps=cfg["steps"],
        batch_size=64,
        lr=3e-3,
        width=16,
        progress=progress,
        log=None if progress else log,
    )
    table = res.table()
    fig = res.plot(out / "classify_accuracy.png", f"{source}: test accuracy, mean ± std over seeds")
    figs = [fig]
    try:
        from masknn.demo.figures import mask_growth_figure

        figs.append(mask_growth_figure(data.x, out / "mask_growth.png"))
    except ImportError as err:  # partial convolution not available in this build
        log(f"(mask growth figure skipped: {err})")
    secs = time.perf_counter() - t0
    header = (
        f"## classify ({mode}): {source}\n\n"
        f"{int(data.train.sum())} train / {int((~data.train).sum())} test, {cfg['steps']} Adam steps of 64, "
        f"CNN width 16, same seeds and masks for every strategy; {secs:.0f} s.\n\n"
    )
    noise = "\n\n### Within noise? (paired by seed, 95 % t-interval)\n\n" + res.noise()
    (out / "classify.md").write_text(header + table + noise + "\n")
    (out / "classify.json").write_text(json.dumps({"info": res.info, "records": res.records}, indent=1))
    log("\n" + table + "\n\n" + res.noise())
    log(f"figures: {', '.join(str(f) for f in figs)}; total {secs:.0f} s")
    return table
