"""Benchmark of the masked transformer encoder and embedding against their nn twins, in one run.

Usage:
    python benchmarks/bench_transformer.py [--repeats 21] [--threads 1] [--quick]

Prints median times and ratios ``time(masknn) / time(nn)``; within each table the
candidates run interleaved (one repeat each in turn), so load from other processes hits
all of them alike. The twins get the same weights and the same data; nn gets the padding
as ``src_key_padding_mask`` (True = ignore), masknn as the mask of a ``Masked``
(True = valid).

Encoder layer, N=32, T=64, d_model=128, nhead=4, dim_feedforward=512, float32,
lengths uniform in [T/4, T] (right padding, about 37 % padded):
  train: forward + backward, dropout 0.1, nn.TransformerEncoderLayer vs
         MaskedTransformerEncoderLayer (always the composable path: plain ops);
  eval:  forward under torch.no_grad(), nn with PyTorch's fast path on (its fused
         inference kernel) and off (torch.backends.mha.set_fastpath_enabled(False));
         masknn's layer runs the same ops either way (the switch only concerns nn), in
         eager mode (bitwise select) and under composable_only() (torch.where select, as
         compile/export see it).
Encoder, 4 layers, eval, no grad: nn.TransformerEncoder (nested tensors) vs
  MaskedTransformerEncoder, same padding.
Attention core: F.scaled_dot_product_attention with a bool key mask vs
  masknn.functional.masked_scaled_dot_product_attention, (N, nhead, T, d_model/nhead).
Embedding, N=32, T=64, 10,000 x 128, forward + backward: nn.Embedding(padding_idx=0) vs
  MaskedEmbedding(padding_idx=0).
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import time
from collections.abc import Callable, Iterator

import torch
from torch import nn

from masknn import Masked
from masknn.functional import masked_scaled_dot_product_attention
from masknn.functional._select import composable_only
from masknn.nn import MaskedEmbedding, MaskedTransformerEncoder, MaskedTransformerEncoderLayer


def interleaved(fns: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Median seconds per call of each function, repeats interleaved."""
    for fn in fns.values():  # warm-up
        fn()
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


@contextlib.contextmanager
def mha_fastpath(enabled: bool) -> Iterator[None]:
    before = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(enabled)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(before)


def report(title: str, res: dict[str, float], ref: str) -> None:
    print(f"\n{title}")
    for name, t in res.items():
        ratio = "" if name == ref else f"  {t / res[ref]:.2f}x"
        print(f"  {name:<58} {t * 1e3:8.2f} ms{ratio}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="small sizes, 5 repeats (a smoke run)")
    ap.add_argument("--shape", type=int, nargs=2, metavar=("N", "T"), help="batch and length (default 32 64)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    n, t, e, h, ff = (4, 16, 32, 4, 64) if args.quick else (32, 64, 128, 4, 512)
    if args.shape:
        n, t = args.shape
    repeats = 5 if args.quick else args.repeats
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, threads {args.threads}")
    print(f"N={n}, T={t}, d_model={e}, nhead={h}, dim_feedforward={ff}, float32, repeats {repeats}")

    lengths = torch.randint(t // 4, t + 1, (n,))
    lengths[0] = t
    valid = torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)  # (N, T)
    print(f"padded fraction {1 - valid.float().mean().item():.2f}")
    x = torch.randn(n, t, e)
    kpm = ~valid

    # ---------------------------------------------------------------- train
    plain = nn.TransformerEncoderLayer(e, h, ff, dropout=0.1, batch_first=True)
    masked = MaskedTransformerEncoderLayer(e, h, ff, dropout=0.1, batch_first=True)
    masked.load_state_dict(plain.state_dict())

    def train_nn() -> None:
        xi = x.detach().requires_grad_(True)
        plain(xi, src_key_padding_mask=kpm).sum().backward()

    def train_masked() -> None:
        xi = x.detach().requires_grad_(True)
        masked(Masked(xi, valid)).data.sum().backward()

    res = interleaved(
        {"nn + src_key_padding_mask": train_nn, "MaskedTransformerEncoderLayer": train_masked}, repeats
    )
    report("encoder layer, train, forward + backward (dropout 0.1)", res, "nn + src_key_padding_mask")

    # ----------------------------------------------------------------- eval
    plain.eval()
    masked.eval()

    def eval_nn(fast: bool) -> Callable[[], None]:
        def run() -> None:
            with torch.no_grad(), mha_fastpath(fast):
                plain(x, src_key_padding_mask=kpm)

        return run

    def eval_masked(composable: bool = False) -> Callable[[], None]:
        def run() -> None:
            ctx = composable_only() if composable else contextlib.nullcontext()
            with torch.no_grad(), ctx:
                masked(Masked(x, valid))

        return run

    res = interleaved(
        {
            "nn, fast path on (fused kernel)": eval_nn(True),
            "nn, fast path off": eval_nn(False),
            "MaskedTransformerEncoderLayer": eval_masked(),
            "MaskedTransformerEncoderLayer, composable_only()": eval_masked(composable=True),
        },
        repeats,
    )
    on, off = res["nn, fast path on (fused kernel)"], res["nn, fast path off"]
    print("\nencoder layer, eval, forward under no_grad")
    for name, tm in res.items():
        ratio = "" if name.startswith("nn") else f"  {tm / on:.2f}x (fast path on)  {tm / off:.2f}x (off)"
        print(f"  {name:<58} {tm * 1e3:8.2f} ms{ratio}")

    # -------------------------------------------------------------- encoder
    layer = nn.TransformerEncoderLayer(e, h, ff, dropout=0.1, batch_first=True)
    enc_nn = nn.TransformerEncoder(layer, 4, enable_nested_tensor=True).eval()
    enc_m = MaskedTransformerEncoder(
        MaskedTransformerEncoderLayer(e, h, ff, dropout=0.1, batch_first=True), 4
    )
    enc_m.load_state_dict(enc_nn.state_dict())
    enc_m.eval()

    def enc_plain() -> None:
        with torch.no_grad():
            enc_nn(x, src_key_padding_mask=kpm)

    def enc_masked(composable: bool = False) -> Callable[[], None]:
        def run() -> None:
            ctx = composable_only() if composable else contextlib.nullcontext()
            with torch.no_grad(), ctx:
                enc_m(Masked(x, valid))

        return run

    res = interleaved(
        {
            "nn.TransformerEncoder (nested tensors)": enc_plain,
            "MaskedTransformerEncoder": enc_masked(),
            "MaskedTransformerEncoder, composable path": enc_masked(True),
        },
        repeats,
    )
    report("encoder, 4 layers, eval, forward under no_grad", res, "nn.TransformerEncoder (nested tensors)")

    def enc_train_nn() -> None:
        xi = x.detach().requires_grad_(True)
        enc_nn(xi, src_key_padding_mask=kpm).sum().backward()

    def enc_train_masked() -> None:
        xi = x.detach().requires_grad_(True)
        enc_m(Masked(xi, valid)).data.sum().backward()

    enc_nn.train()
    enc_m.train()
    res = interleaved(
        {"nn.TransformerEncoder": enc_train_nn, "MaskedTransformerEncoder": enc_train_masked}, repeats
    )
    report("encoder, 4 layers, train, forward + backward (dropout 0.1)", res, "nn.TransformerEncoder")

    # ------------------------------------------------------- attention core
    # Why the layer calls F.scaled_dot_product_attention with a bool mask instead of
    # masknn.functional.masked_scaled_dot_product_attention: its input is zero-filled once
    # before the projection, so the generic op's selects of q, k, v and of its output are
    # redundant there.
    hd = e // h
    q, k, v = (torch.randn(n, h, t, hd, requires_grad=True) for _ in range(3))
    allowed = valid.view(n, 1, 1, t)

    def sdpa_bool() -> None:
        torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=allowed).sum().backward()

    def sdpa_masknn() -> None:
        masked_scaled_dot_product_attention(q, k, v, None, valid.view(n, 1, t)).data.sum().backward()

    res = interleaved(
        {
            "F.scaled_dot_product_attention, bool mask": sdpa_bool,
            "masked_scaled_dot_product_attention": sdpa_masknn,
        },
        repeats,
    )
    report(
        f"attention core ({n}, {h}, {t}, {hd}), forward + backward",
        res,
        "F.scaled_dot_product_attention, bool mask",
    )

    # ------------------------------------------------------------ embedding
    vocab = 1000 if args.quick else 10_000
    ids = torch.randint(1, vocab, (n, t)).masked_fill(~valid, 0)
    emb_nn = nn.Embedding(vocab, e, padding_idx=0)
    emb_m = MaskedEmbedding(vocab, e, padding_idx=0)
    emb_m.load_state_dict(emb_nn.state_dict())

    def emb_plain() -> None:
        emb_nn(ids).sum().backward()

    def emb_masked() -> None:
        emb_m(ids).data.sum().backward()

    res = interleaved(
        {"nn.Embedding(padding_idx=0)": emb_plain, "MaskedEmbedding(padding_idx=0)": emb_masked}, repeats
    )
    report("embedding, forward + backward", res, "nn.Embedding(padding_idx=0)")


if __name__ == "__main__":
    main()
