"""Task ``sequences``: JapaneseVowels (12 channels, lengths 7-29, 9 speakers), padded vs masked LSTMs."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from masknn._masked import Masked
from masknn.compare.report import format_table
from masknn.datasets import load_japanese_vowels

__all__ = ["CONFIGS", "MODELS", "SequenceClassifier", "run"]

CONFIGS: dict[str, dict[str, Any]] = {
    "quick": {"seeds": 1, "steps": 20},
    "default": {"seeds": 5, "steps": 300},
    "full": {"seeds": 10, "steps": 600},
}

#: The compared heads, in table order.
MODELS = (
    "LSTM, padded, last step",
    "LSTM, packed (torch)",
    "MaskedLSTM, last valid",
    "MaskedLSTM + mean pool",
    "MaskedLSTM + max pool",
)


def _seq_layers() -> Any:
    import masknn.nn as mnn

    missing = [n for n in ("MaskedLSTM", "MaskedTemporalPool") if not hasattr(mnn, n)]
    if missing:
        raise ImportError(f"masknn demo sequences: needs masknn.nn.{', '.join(missing)}")
    return mnn


class SequenceClassifier(nn.Module):
    """One LSTM layer (hidden 32) and a linear head, read out as named in ``MODELS``.

    ``forward(x, mask)`` with ``x (N, T, F)`` zero-padded after each sequence and
    ``mask (N, T)`` True at real steps.
    """

    def __init__(self, kind: str, features: int, classes: int, hidden: int = 32) -> None:
        super().__init__()
        if kind not in MODELS:
            raise ValueError(f"SequenceClassifier: kind must be one of {MODELS}, got {kind!r}")
        self.kind = kind
        if kind.startswith("MaskedLSTM"):
            mnn = _seq_layers()
            self.rnn: nn.Module = mnn.MaskedLSTM(features, hidden, batch_first=True)
            if "pool" in kind:
                self.pool: nn.Module | None = mnn.MaskedTemporalPool("mean" if "mean" in kind else "max")
            else:
                self.pool = None
        else:
            self.rnn = nn.LSTM(features, hidden, batch_first=True)
            self.pool = None
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        if self.kind == "LSTM, padded, last step":
            out, _ = self.rnn(x)
            return self.head(out[:, -1])
        if self.kind == "LSTM, packed (torch)":
            lengths = mask.sum(1).cpu()
            packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            _, (h, _) = self.rnn(packed)
            return self.head(h[-1])
        out, (h, _) = self.rnn(Masked(x, mask))
        if self.pool is None:
            return self.head(h[-1])
        pooled = self.pool(out)
        return self.head(pooled.data if isinstance(pooled, Masked) else pooled)


def _train_eval(kind: str, d: dict[str, np.ndarray], seed: int, steps: int) -> tuple[float, float]:
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    xtr, mtr, ytr = (torch.from_numpy(d[k]) for k in ("x_train", "mask_train", "y_train"))
    xte, mte, yte = (torch.from_numpy(d[k]) for k in ("x_test", "mask_test", "y_test"))
    model = SequenceClassifier(kind, xtr.shape[2], int(ytr.max()) + 1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(ytr), (32,), generator=gen)
        loss = F.cross_entropy(model(xtr[idx], mtr[idx]), ytr[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        acc = 100.0 * float((model(xte, mte).argmax(1) == yte).float().mean())
    return acc, time.perf_counter() - t0


def run(mode: str, out: Path, progress: bool = True, log: Callable[[str], None] = print) -> str:
    cfg = CONFIGS[mode]
    t0 = time.perf_counter()
    d = load_japanese_vowels()
    # Standardize each channel over real steps of the training set; padding stays exactly 0.
    valid = d["x_train"][d["mask_train"]]
    mu, sd = valid.mean(0), valid.std(0) + 1e-6
    for split in ("train", "test"):
        d[f"x_{split}"] = np.where(d[f"mask_{split}"][..., None], (d[f"x_{split}"] - mu) / sd, 0.0).astype(
            np.float32
        )
    lengths = np.concatenate([d["mask_train"].sum(1), d["mask_test"].sum(1)])
    log(
        f"sequences: JapaneseVowels (sktime's .ts files), {len(d['y_train'])} train / "
        f"{len(d['y_test'])} test, 12 channels, lengths {lengths.min()}-{lengths.max()} padded to "
        f"{d['x_train'].shape[1]}; {cfg['seeds']} seed(s); {cfg['steps']} Adam steps of 32"
    )
    records = []
    bar = None
    if progress:
        try:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(MODELS) * cfg["seeds"], desc="sequences", unit="run", leave=False)
        except ImportError:
            bar = None
    try:
        for seed in range(cfg["seeds"]):
            for kind in MODELS:
                acc, secs = _train_eval(kind, d, seed, cfg["steps"])
                records.append(
                    {
                        "strategy": kind,
                        "mask_kind": "padding",
                        "rate": None,
                        "seed": seed,
                        "value": acc,
                        "seconds": secs,
                        "params": 0,
                    }
                )
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    table = format_table(records, "test accuracy (%)", True).replace("| own mask |", "| JapaneseVowels |")
    secs = time.perf_counter() - t0
    header = (
        f"## sequences ({mode}): JapaneseVowels\n\n"
        f"LSTM hidden 32 + linear head, {cfg['steps']} Adam steps of 32, lr 1e-2; {secs:.0f} s.\n\n"
    )
    (out / "sequences.md").write_text(header + table + "\n")
    (out / "sequences.json").write_text(json.dumps({"records": records}, indent=1))
    log("\n" + table)
    log(f"total {secs:.0f} s")
    return table
