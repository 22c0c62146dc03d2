"""Benchmark of the masked sequence layers against plain PyTorch, measured in one run.

Usage:
    python benchmarks/bench_seq.py [--repeats 21] [--threads 1] [--quick] [--compiled-train]
        [--only-lstm | --only-gru] [--timer cpu]

Prints ratios ``time(candidate) / time(reference)`` (median of repeats; the
candidates of a table are run interleaved, one repeat each in turn, in a new random
order every repeat (seeded), so load from other processes and the memory state a
candidate leaves hit all of them alike):

LSTM, N=64, T=100, 32 -> 128, 30 % random holes (issue 8, item 6), in training
(forward + backward) and in inference (eval mode, ``torch.no_grad()``):
  (a) masknn.nn.MaskedLSTM vs nn.LSTM on the same padded batch with no mask
      (the cost floor; target <= 1.25x in both);
  (b) vs nn.LSTM on packed sequences of the same valid steps (holes squeezed
      out, then ``pack_padded_sequence``);
  (c) vs a per-step loop (``nn.LSTMCell`` over time, state carried with
      ``torch.where``), training only;
  the static path (what torch.compile/export/ONNX run) in eager mode
  (``composable_only()``), and MaskedLSTM compiled by inductor (``allow_rnn``;
  inference by default, training with ``--compiled-train``: its compilation takes
  minutes, PyTorch unrolls the LSTM over the 100 steps).
GRU inference, same shapes: MaskedGRU vs packed nn.GRU (target: no slower), with the
  holes squeezed out for nn.GRU outside the timing (the strictest) and inside it with
  the outputs put back at their own steps (the same job MaskedGRU does); and on
  right-padded batches (random lengths), where packing needs no squeeze.
Time-distributed dense, N=64, T=256, 256 -> 256, 50 % padding: TimeDistributedLinear vs
  nn.Linear on the padded batch (target >= 1.6x faster, the limit is 2x).

With ``--keras`` (needs ``keras`` 3 installed, which masknn never depends on; run
it from a separate virtual environment with ``PYTHONPATH=src``) the LSTM table
also times Keras 3 ``Masking(0.0)`` + ``LSTM(return_sequences=True,
return_state=True)`` on the torch backend, on the same data with masked steps
set to 0.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from masknn import Masked
from masknn.functional._select import composable_only
from masknn.nn import MaskedGRU, MaskedLSTM, TimeDistributedLinear


def interleaved(fns: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Median seconds per call of each function, repeats interleaved."""
    for name, fn in fns.items():  # warm-up (compiles the compiled candidates)
        t0 = time.perf_counter()
        fn()
        if "compiled" in name:
            print(f"  ({name}: first call, compilation included, {time.perf_counter() - t0:.1f} s)")
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    clock = CLOCK[0]
    order = random.Random(0)
    for _ in range(repeats):
        # A new order every repeat: each candidate follows every other one in turn (a rotation
        # keeps each candidate's predecessor, and the memory state it leaves, fixed).
        order.shuffle(names)
        for name in names:
            t0 = clock()
            fns[name]()
            times[name].append(clock() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


# The clock of ``interleaved``: the wall clock, or the thread's CPU time (``--timer cpu``).
CLOCK: list[Callable[[], float]] = [time.perf_counter]


def keras_case(x: torch.Tensor, mask: torch.Tensor, h: int) -> Callable[[], None]:
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras  # optional, for the comparison only

    if keras.backend.backend() != "torch":
        raise SystemExit("--keras needs KERAS_BACKEND=torch")
    threads = torch.get_num_threads()
    inp = keras.Input((x.shape[1], x.shape[2]))
    seq, hn, cn = keras.layers.LSTM(h, return_sequences=True, return_state=True)(
        keras.layers.Masking(0.0)(inp)
    )
    model = keras.Model(inp, [seq, hn, cn])
    torch.set_num_threads(threads)
    xk = torch.where(mask.unsqueeze(-1), x, 0.0)

    def run_keras() -> None:
        xi = xk.detach().requires_grad_(True)
        out, hk, ck = model(xi)
        (out.sum() + hk.sum() + ck.sum()).backward()

    return run_keras


def lstm_cases(
    n: int,
    t: int,
    f: int,
    h: int,
    holes: float,
    bidirectional: bool,
    num_layers: int,
    keras: bool = False,
    right_padding: bool = False,
    inference: bool = False,
    static: bool = False,
    compiled: bool = False,
    cell: str = "LSTM",
    same_job: bool = False,
) -> dict[str, Callable[[], None]]:
    """The candidates of one table; ``inference``: eval mode under ``torch.no_grad()``."""
    torch.manual_seed(0)
    twin_cls, masked_cls = (nn.LSTM, MaskedLSTM) if cell == "LSTM" else (nn.GRU, MaskedGRU)
    plain = twin_cls(f, h, num_layers=num_layers, batch_first=True, bidirectional=bidirectional)
    masked = masked_cls(f, h, num_layers=num_layers, batch_first=True, bidirectional=bidirectional)
    masked.load_state_dict(plain.state_dict())
    plain.train(not inference)
    masked.train(not inference)
    x = torch.randn(n, t, f)
    mask = torch.rand(n, t) > holes
    if right_padding:  # random lengths with the same mean valid fraction
        lengths = torch.randint(int(t * (1 - holes) * 0.5), int(t * (1 - holes) * 1.5) + 1, (n,))
        mask = torch.arange(t).unsqueeze(0) < lengths.clamp(max=t).unsqueeze(1)
    lengths = mask.sum(1)
    # The same valid steps, right-padded (holes squeezed out), for pack_padded_sequence.
    order = torch.argsort((~mask).to(torch.uint8), dim=1, stable=True)
    compact = x.gather(1, order.unsqueeze(-1).expand_as(x))

    def total(out: torch.Tensor, state: object) -> torch.Tensor:
        parts = state if isinstance(state, tuple) else (state,)
        return out.sum() + sum(p.sum() for p in parts)  # type: ignore[union-attr]

    def step(fn: Callable[[torch.Tensor], torch.Tensor], xin: torch.Tensor) -> Callable[[], None]:
        if inference:

            def run_infer() -> None:
                with torch.no_grad():
                    fn(xin)

            return run_infer

        def run_train() -> None:
            fn(xin.detach().requires_grad_(True)).backward()

        return run_train

    def plain_fn(xi: torch.Tensor) -> torch.Tensor:
        out, st = plain(xi)
        return total(out, st)

    def masked_fn(xi: torch.Tensor) -> torch.Tensor:
        out, st = masked(Masked(xi, mask))
        return total(out.data, st)

    def static_fn(xi: torch.Tensor) -> torch.Tensor:
        with composable_only():
            return masked_fn(xi)

    def packed_fn(xi: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(xi, lengths, batch_first=True, enforce_sorted=False)
        out_p, st = plain(packed)
        out, _ = pad_packed_sequence(out_p, batch_first=True, total_length=t)
        return total(out, st)

    def packed_same_job_fn(xi: torch.Tensor) -> torch.Tensor:
        # The whole job that MaskedGRU/MaskedLSTM do: squeeze the holes out, pack, run, unpack,
        # and put each output back at its own time step (zeros at the holes).
        order_i = torch.argsort((~mask).to(torch.uint8), dim=1, stable=True)
        comp = xi.gather(1, order_i.unsqueeze(-1).expand_as(xi))
        packed = pack_padded_sequence(comp, mask.sum(1), batch_first=True, enforce_sorted=False)
        out_p, st = plain(packed)
        out, _ = pad_packed_sequence(out_p, batch_first=True, total_length=t)
        # order_i is a permutation of the steps: every position is written (zeros at the holes).
        back = torch.empty_like(out).scatter_(1, order_i.unsqueeze(-1).expand_as(out), out)
        return total(back, st)

    fns = {
        f"nn.{cell} padded, no mask": step(plain_fn, x),
        f"Masked{cell}": step(masked_fn, x),
        f"nn.{cell} packed": step(packed_fn, compact),
    }
    if same_job and not right_padding:
        fns[f"nn.{cell} packed, squeeze and unsqueeze timed"] = step(packed_same_job_fn, x)
    if static:
        fns[f"Masked{cell} static path (eager)"] = step(static_fn, x)
    if compiled:
        with torch._dynamo.config.patch(allow_rnn=True):
            compiled_model = torch.compile(masked, backend="inductor", fullgraph=True)

        def compiled_fn(xi: torch.Tensor) -> torch.Tensor:
            with torch._dynamo.config.patch(allow_rnn=True):
                out, st = compiled_model(Masked(xi, mask))
            return total(out.data, st)

        fns[f"Masked{cell} compiled (inductor)"] = step(compiled_fn, x)

    cells = [nn.LSTMCell(f, h)] if cell == "LSTM" and num_layers == 1 and not bidirectional else []
    if cells and not inference:
        cells[0].weight_ih.data.copy_(plain.weight_ih_l0)
        cells[0].weight_hh.data.copy_(plain.weight_hh_l0)

        def run_loop() -> None:
            lstm_cell = cells[0]
            xi = x.detach().requires_grad_(True)
            hs = x.new_zeros(n, h)
            cs = x.new_zeros(n, h)
            outs = []
            for s in range(t):
                m = mask[:, s : s + 1]
                h2, c2 = lstm_cell(torch.where(m, xi[:, s], 0.0), (hs, cs))
                hs, cs = torch.where(m, h2, hs), torch.where(m, c2, cs)
                outs.append(torch.where(m, h2, 0.0))
            (torch.stack(outs, 1).sum() + hs.sum() + cs.sum()).backward()

        fns["per-step loop (LSTMCell)"] = run_loop
    if keras and not inference:
        fns["Keras 3 Masking+LSTM (torch backend)"] = keras_case(x, mask, h)
    return fns


def linear_cases(
    n: int, t: int, f: int, o: int, padding: float
) -> tuple[dict[str, Callable[[], None]], float]:
    torch.manual_seed(0)
    plain = nn.Linear(f, o)
    td = TimeDistributedLinear(f, o)
    td.load_state_dict(plain.state_dict())
    x = torch.randn(n, t, f)
    lo, hi = int(t * (1 - padding) * 0.5), int(t * (1 - padding) * 1.5)
    lengths = torch.randint(lo, hi + 1, (n,))
    m = Masked.from_lengths(x, lengths)
    frac = float(m.mask.float().mean())

    def run_plain() -> None:
        xi = x.detach().requires_grad_(True)
        plain(xi).sum().backward()

    def run_td() -> None:
        xi = x.detach().requires_grad_(True)
        td(Masked(xi, m.mask)).data.sum().backward()

    return {"nn.Linear padded": run_plain, "TimeDistributedLinear": run_td}, frac


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--quick", action="store_true", help="3 repeats, for a smoke test")
    ap.add_argument("--keras", action="store_true", help="also time Keras 3 (optional, see the docstring)")
    ap.add_argument("--only-lstm", action="store_true", help="only the LSTM and GRU tables")
    ap.add_argument("--no-compiled", action="store_true", help="skip the compiled inference candidate")
    ap.add_argument(
        "--compiled-train",
        action="store_true",
        help="also time MaskedLSTM compiled in training (slow to compile)",
    )
    ap.add_argument("--only-gru", action="store_true", help="only the GRU tables")
    ap.add_argument(
        "--timer",
        choices=("wall", "cpu"),
        default="wall",
        help="cpu: time each call by the thread's CPU time (with one thread, for a loaded machine)",
    )
    args = ap.parse_args()
    if args.timer == "cpu":
        CLOCK[0] = time.thread_time
    if args.threads:
        torch.set_num_threads(args.threads)
    reps = 3 if args.quick else args.repeats
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
        f"{platform.processor() or platform.machine()}, load average {os.getloadavg()[0]:.2f}, "
        f"median of {reps} interleaved repeats, forward + backward"
    )

    def table(title: str, fns: dict[str, Callable[[], None]], ref: str, reps: int) -> dict[str, float]:
        med = interleaved(fns, reps)
        print(f"\n{title}")
        print(f"| candidate | median ms | time / {ref} |")
        print("|---|---:|---:|")
        for k, v in med.items():
            print(f"| {k} | {v * 1e3:.1f} | {v / med[ref]:.2f}x |")
        return med

    if not args.only_gru:
        ref = "nn.LSTM padded, no mask"
        med = table(
            "LSTM N=64 T=100 32->128, 30 % random holes, training (forward + backward)",
            lstm_cases(
                64, 100, 32, 128, 0.3, False, 1, keras=args.keras, static=True, compiled=args.compiled_train
            ),
            ref,
            reps,
        )
        a = med["MaskedLSTM"] / med[ref]
        b = med["nn.LSTM packed"] / med["MaskedLSTM"]
        c = med["per-step loop (LSTMCell)"] / med["MaskedLSTM"]
        print(
            f"\n(a) training: MaskedLSTM / nn.LSTM padded no mask = {a:.2f}x (target <= 1.25x)\n"
            f"(b) nn.LSTM packed / MaskedLSTM = {b:.2f}x (MaskedLSTM is {b:.2f}x faster)\n"
            f"(c) per-step loop / MaskedLSTM = {c:.1f}x speed-up"
        )
        if args.keras:
            k = med["Keras 3 Masking+LSTM (torch backend)"] / med["MaskedLSTM"]
            print(f"Keras 3 Masking+LSTM / MaskedLSTM = {k:.2f}x")
        med_i = table(
            "LSTM N=64 T=100 32->128, 30 % random holes, inference (eval, no_grad)",
            lstm_cases(
                64, 100, 32, 128, 0.3, False, 1, inference=True, static=True, compiled=not args.no_compiled
            ),
            ref,
            reps,
        )
        ai = med_i["MaskedLSTM"] / med_i[ref]
        print(f"\n(a) inference: MaskedLSTM / nn.LSTM padded no mask = {ai:.2f}x (target <= 1.25x)")
    med_g = table(
        "GRU N=64 T=100 32->128, 30 % random holes, inference (eval, no_grad)",
        lstm_cases(64, 100, 32, 128, 0.3, False, 1, inference=True, static=True, cell="GRU", same_job=True),
        "nn.GRU packed",
        reps,
    )
    g = med_g["MaskedGRU"] / med_g["nn.GRU packed"]
    g_job = med_g["MaskedGRU"] / med_g["nn.GRU packed, squeeze and unsqueeze timed"]
    med_r = table(
        "GRU N=64 T=100 32->128, right padding (random lengths, 70 % valid on average), inference",
        lstm_cases(64, 100, 32, 128, 0.3, False, 1, right_padding=True, inference=True, cell="GRU"),
        "nn.GRU packed",
        reps,
    )
    g_right = med_r["MaskedGRU"] / med_r["nn.GRU packed"]
    print(
        f"\nMaskedGRU / nn.GRU packed (inference, target <= 1x): random holes {g:.3f}x (holes squeezed "
        f"out for nn.GRU outside the timing), {g_job:.3f}x (squeezed and put back inside it: the same "
        f"job), right padding {g_right:.3f}x"
    )
    if args.only_lstm or args.only_gru:
        return
    med2 = table(
        "LSTM 2 layers bidirectional, N=64 T=100 32->128, 30 % random holes",
        lstm_cases(64, 100, 32, 128, 0.3, True, 2),
        "nn.LSTM padded, no mask",
        max(3, reps // 2),
    )
    r2 = med2["MaskedLSTM"] / med2["nn.LSTM padded, no mask"]
    print(f"\nbidirectional 2-layer: MaskedLSTM / nn.LSTM padded = {r2:.2f}x")
    med4 = table(
        "LSTM N=64 T=100 32->128, right padding, random lengths 35..105 (clipped at 100)",
        lstm_cases(64, 100, 32, 128, 0.3, False, 1, right_padding=True),
        "nn.LSTM padded, no mask",
        max(3, reps // 2),
    )
    r4 = med4["MaskedLSTM"] / med4["nn.LSTM padded, no mask"]
    print(f"\nright padding: MaskedLSTM / nn.LSTM padded = {r4:.2f}x")
    fns, frac = linear_cases(64, 256, 256, 256, 0.5)
    med3 = table(
        f"Time-distributed dense N=64 T=256 256->256, {100 * (1 - frac):.0f} % padding",
        fns,
        "nn.Linear padded",
        reps,
    )
    s = med3["nn.Linear padded"] / med3["TimeDistributedLinear"]
    print(f"\nTimeDistributedLinear speed-up over nn.Linear padded = {s:.2f}x (target >= 1.6x, limit 2x)")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
