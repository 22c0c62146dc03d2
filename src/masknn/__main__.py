"""Command line: ``python -m masknn`` / ``masknn``.

* ``masknn demo [TASK] [--quick | --full] [--out DIR]``: the measured demo
  (tasks: classify (default), gapfill, sequences, all);
* ``masknn compare DATA.npz [--strategies ...] [--rates ...]``: the comparison
  harness on your own data (layout: ``masknn compare --layout``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _floats(text: str) -> list[float]:
    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from err
    return [v / 100.0 if v >= 1.0 else v for v in vals]  # 30 and 0.3 both mean 30 %


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="masknn", description="Mask-aware layers for PyTorch.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")

    demo = sub.add_parser(
        "demo",
        help="measured comparison of masking strategies on real data (needs masknn[demo])",
        description="Compare zero-fill, mean-fill, the mask as a channel and partial convolution "
        "on real data shipped in the demo extra's packages. Writes PNG figures and tables to --out.",
    )
    demo.add_argument(
        "task",
        nargs="?",
        default="classify",
        choices=("classify", "gapfill", "sequences", "all"),
        help="classify: MNIST digits with holes (default); gapfill: HadISST sea-surface temperature "
        "under clouds; sequences: JapaneseVowels with padding; all: the three",
    )
    size = demo.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="CI smoke run (< 30 s)")
    size.add_argument("--full", action="store_true", help="more seeds, rates, steps (tens of minutes)")
    demo.add_argument("--out", default="masknn-demo", help="output folder (default: %(default)s)")
    demo.add_argument("--no-progress", action="store_true", help="no progress bar")
    demo.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default: 1; these small nets gain little from more, and several "
        "threads slow down badly when other work shares the cores; 0 = torch's choice)",
    )

    cmp = sub.add_parser(
        "compare",
        help="compare masking strategies on your own .npz data",
        description="Train the same small network under each masking strategy with the same budget "
        "and seeds; print a table (mean ± std over seeds) and which strategies are within noise of "
        "the best; write a report (set-up, table, noise), the runs (JSON) and a figure to --out.",
    )
    cmp.add_argument("data", nargs="?", help="a .npz file (see --layout)")
    cmp.add_argument("--layout", action="store_true", help="print the .npz layout and exit")
    cmp.add_argument(
        "--strategies",
        default=None,
        help="comma-separated: zero, mean, learned, each optionally +mc (mask channel), partial, "
        "partial+mc, or 'all' (default: zero,mean,zero+mc,mean+mc,partial,partial+mc)",
    )
    cmp.add_argument(
        "--rates",
        type=_floats,
        default=None,
        help="missing rates to simulate, e.g. 10,30,50 (default: the data's own mask if it has "
        "missing values, else 10,30,50,70)",
    )
    cmp.add_argument(
        "--mask-kinds",
        default="cloud",
        help="simulated mask shapes, comma-separated: cloud, random, rectangle, stroke "
        "(default: %(default)s)",
    )
    cmp.add_argument("--seeds", type=int, default=3, help="number of seeds (default: %(default)s)")
    cmp.add_argument("--steps", type=int, default=300, help="Adam steps per run (default: %(default)s)")
    cmp.add_argument("--batch-size", type=int, default=64)
    cmp.add_argument("--lr", type=float, default=2e-3)
    cmp.add_argument("--width", type=int, default=16, help="channels of the first conv block")
    cmp.add_argument("--out", default="masknn-compare", help="output folder (default: %(default)s)")
    cmp.add_argument("--no-progress", action="store_true", help="no progress bar")
    cmp.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    return parser


def _demo(args: argparse.Namespace) -> int:
    from masknn.demo import TASKS, run_task

    mode = "quick" if args.quick else "full" if args.full else "default"
    tasks = TASKS if args.task == "all" else (args.task,)
    out = Path(args.out)
    t0 = time.perf_counter()
    for task in tasks:
        run_task(task, mode, out, progress=not args.no_progress, threads=args.threads or None)
    print(
        f"\nmasknn demo {args.task} ({mode}): {time.perf_counter() - t0:.0f} s; results in {out.resolve()}/"
    )
    return 0


def _compare(args: argparse.Namespace) -> int:
    from masknn.compare import NPZ_LAYOUT, compare, load_npz

    if args.layout:
        print(NPZ_LAYOUT)
        return 0
    if not args.data:
        print("masknn compare: give a .npz file (see masknn compare --layout)", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    data = load_npz(args.data)
    kinds = [k.strip() for k in args.mask_kinds.split(",") if k.strip()]
    task = "classification" if data.kind == "classify" else "per-pixel regression (U-Net)"
    print(
        f"{args.data}: {data.x.shape[0]} samples {tuple(data.x.shape[1:])}, {task}, "
        f"{int(data.train.sum())} train / {int((~data.train).sum())} test, "
        f"{100 * (1 - data.mask.mean()):.1f} % missing in the file"
    )
    res = compare(
        data,
        args.strategies,
        rates=args.rates,
        mask_kinds=kinds,
        seeds=args.seeds,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        width=args.width,
        progress=not args.no_progress,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = out / f"{data.name}.md"
    report.write_text(res.report())
    records = out / f"{data.name}.json"
    records.write_text(json.dumps({"setup": res.setup, "info": res.info, "records": res.records}, indent=1))
    fig = None
    try:
        fig = res.plot(out / f"{data.name}.png", f"{data.name}: {res.metric}")
    except ImportError as err:
        print(f"(no figure: {err})")
    print("\n" + res.table() + "\n\n" + res.noise())
    print(
        f"\n{time.perf_counter() - t0:.0f} s; report (set-up, table, noise) {report}, runs {records}"
        + (f", figure {fig}" if fig else "")
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.version:
        from masknn import __version__

        print(__version__)
        return 0
    if args.command == "compare" and args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        if args.command == "demo":
            return _demo(args)
        if args.command == "compare":
            return _compare(args)
    except (ValueError, FileNotFoundError, ImportError) as err:
        print(f"masknn {args.command}: error: {err}", file=sys.stderr)
        return 2
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
