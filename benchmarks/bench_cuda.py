"""masknn on CUDA: each layer against its plain PyTorch twin, forward + backward, in one run.

Times come from CUDA events around each call (after warm-up), masked and plain calls
interleaved round-robin; the ratio is the median over repeats of masked / plain time
within the same repeat. float32 with TF32 off, and a float16 autocast row for the
partial convolution. Needs a CUDA device (exits with a message otherwise).

Run: python benchmarks/bench_cuda.py [--repeats 30] [--out results.md]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

import masknn.functional as MF
from masknn import Masked
from masknn import nn as mnn

DEV = torch.device("cuda")


def _cuda_time(fn: Callable[[], object]) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 1e3


def compare(name: str, plain: Callable[[], object], masked: Callable[[], object], repeats: int) -> str:
    for _ in range(3):
        plain()
        masked()
    torch.cuda.synchronize()
    tp: list[float] = []
    tm: list[float] = []
    for i in range(repeats):
        order = (plain, masked) if i % 2 else (masked, plain)
        for fn in order:
            (tp if fn is plain else tm).append(_cuda_time(fn))
    ratio = statistics.median(m / p for m, p in zip(tm, tp))
    line = (
        f"| {name} | {statistics.median(tp) * 1e3:.3f} | {statistics.median(tm) * 1e3:.3f} | {ratio:.2f}x |"
    )
    print(line, flush=True)
    return line


def _train(module: nn.Module, x: object, masked: bool) -> Callable[[], None]:
    def run() -> None:
        out = module(x)
        data = out.data if masked else out
        data.float().sum().backward()

    return run


def _img(n: int, c: int, h: int, per_channel: bool = False) -> tuple[torch.Tensor, Masked]:
    x = torch.randn(n, c, h, h, device=DEV, requires_grad=True)
    m = torch.rand(n, c if per_channel else 1, h, h, device=DEV) > 0.3
    return x, Masked(x, m)


def _amp(fn: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        with torch.autocast("cuda", dtype=torch.float16):
            fn()

    return run


def _image_cases(n: int, c: int, h: int, r: int) -> list[str]:
    out: list[str] = []
    x, xm = _img(n, c, h)
    size = f"N={n} {c}ch {h}x{h}"
    conv, pconv = nn.Conv2d(c, c, 3, padding=1).to(DEV), mnn.PartialConv2d(c, c, 3, padding=1).to(DEV)
    pconv.load_state_dict(conv.state_dict())
    out.append(compare(f"PartialConv2d {size}", _train(conv, x, False), _train(pconv, xm, True), r))
    with torch.no_grad():
        out.append(compare(f"PartialConv2d inference {size}", lambda: conv(x), lambda: pconv(xm), r))
    _, xc = _img(n, c, h, per_channel=True)
    out.append(
        compare(f"PartialConv2d per-channel {size}", _train(conv, x, False), _train(pconv, xc, True), r)
    )
    out.append(
        compare(
            f"PartialConv2d float16 autocast {size}",
            _amp(_train(conv, x, False)),
            _amp(_train(pconv, xm, True)),
            r,
        )
    )
    bn, mbn = nn.BatchNorm2d(c).to(DEV), mnn.MaskedBatchNorm2d(c).to(DEV)
    out.append(compare(f"MaskedBatchNorm2d train {size}", _train(bn, x, False), _train(mbn, xm, True), r))
    bn.eval()
    mbn.eval()
    with torch.no_grad():
        out.append(compare(f"MaskedBatchNorm2d eval {size}", lambda: bn(x), lambda: mbn(xm), r))
    mp, mmp = nn.MaxPool2d(2).to(DEV), mnn.MaskedMaxPool2d(2).to(DEV)
    out.append(compare(f"MaskedMaxPool2d {size}", _train(mp, x, False), _train(mmp, xm, True), r))
    ap, map_ = nn.AvgPool2d(2).to(DEV), mnn.MaskedAvgPool2d(2).to(DEV)
    out.append(compare(f"MaskedAvgPool2d {size}", _train(ap, x, False), _train(map_, xm, True), r))
    out.append(
        compare(
            f"masked_mean over (2,3) {size}",
            lambda: x.mean((2, 3)).sum().backward(),
            lambda: MF.masked_mean(x, xm.mask, dim=(2, 3)).data.sum().backward(),
            r,
        )
    )
    t = torch.randn_like(x)
    out.append(
        compare(
            f"masked_mse_loss {size}",
            lambda: F.mse_loss(x, t).backward(),
            lambda: MF.masked_mse_loss(x, t, xm.mask).backward(),
            r,
        )
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_cuda.py needs a CUDA device")
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    r = args.repeats
    lines = [
        f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}",
        "",
        "| case (forward + backward unless said) | plain ms | masknn ms | ratio |",
        "|---|---|---|---|",
    ]

    for n, c, h in ((16, 64, 64), (64, 64, 128)):
        lines += _image_cases(n, c, h, r)

    s = torch.randn(64, 8, 256, 256, device=DEV, requires_grad=True)
    sm = torch.rand(64, 1, 1, 256, device=DEV) > 0.3
    lines.append(
        compare(
            "masked_softmax (64, 8, 256, 256) vs masked_fill + softmax",
            lambda: torch.softmax(s.masked_fill(~sm, float("-inf")), -1).sum().backward(),
            lambda: MF.masked_softmax(s, sm, dim=-1).data.sum().backward(),
            r,
        )
    )
    lin, mlin = nn.Linear(512, 512).to(DEV), mnn.MaskedLinear(512, 512).to(DEV)
    mlin.load_state_dict(lin.state_dict())
    f = torch.randn(4096, 512, device=DEV, requires_grad=True)
    fm = Masked(f, torch.rand(4096, 512, device=DEV) > 0.3)
    lines.append(compare("MaskedLinear (4096, 512)", _train(lin, f, False), _train(mlin, fm, True), r))

    lstm = nn.LSTM(64, 256, batch_first=True).to(DEV)
    mlstm = mnn.MaskedLSTM(64, 256, batch_first=True).to(DEV)
    mlstm.load_state_dict(lstm.state_dict())
    q = torch.randn(64, 100, 64, device=DEV, requires_grad=True)
    qm = Masked(q, torch.rand(64, 100, 1, device=DEV) > 0.3)

    def lstm_plain() -> None:
        lstm(q)[0].sum().backward()

    def lstm_masked() -> None:
        out = mlstm(qm)
        out = out[0] if isinstance(out, tuple) else out
        out.data.sum().backward()

    lines.append(compare("MaskedLSTM (64, 100, 64->256), 30 % holes", lstm_plain, lstm_masked, r))
    with torch.no_grad():
        lines.append(compare("MaskedLSTM inference", lambda: lstm(q), lambda: mlstm(qm), r))

    cnn = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
    ).to(DEV)  # fmt: skip
    mcnn = nn.Sequential(
        mnn.PartialConv2d(3, 32, 3, padding=1), mnn.MaskedBatchNorm2d(32), mnn.Elementwise(nn.ReLU()),
        mnn.MaskedMaxPool2d(2), mnn.PartialConv2d(32, 32, 3, padding=1), mnn.MaskedBatchNorm2d(32),
        mnn.Elementwise(nn.ReLU()),
    ).to(DEV)  # fmt: skip
    mcnn.load_state_dict(cnn.state_dict())
    xi, xim = _img(32, 3, 128)
    lines.append(compare("masked CNN eager", _train(cnn, xi, False), _train(mcnn, xim, True), r))
    ccnn, cmcnn = torch.compile(cnn), torch.compile(mcnn)
    lines.append(
        compare("masked CNN compiled vs compiled plain", _train(ccnn, xi, False), _train(cmcnn, xim, True), r)
    )
    lines.append(
        compare("masked CNN compiled vs eager masknn", _train(mcnn, xim, True), _train(cmcnn, xim, True), r)
    )
    if args.out:
        with open(args.out, "w") as fh:
            fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
