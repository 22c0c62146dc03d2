"""Which models masknn.convert converts, and why the others refuse (not run in CI).

For every torchvision classification and segmentation model and a list of common timm
CNNs (random weights, nothing downloaded), in a subprocess each (time limit per model):

1. build it, ``masknn.convert`` it;
2. all-valid parity: eval mode, all-True mask, equal to the original within 1e-4
   (relative to the output's largest magnitude);
3. a training step on input with NaN holes: finite loss and gradients, exactly 0
   gradient at the holes;
4. the leakage contract (``assert_no_leakage``, train and eval, random and NaN values at
   masked positions, a fully masked sample). Where the installed masknn counts
   ``padding_valid=True`` padding as valid for the output mask, the specified semantics
   are emulated as in the tests (``tests/convert/_padding.py``).

A model "converts" when all four pass; "refuses" when ``masknn.convert`` raises its
``ConversionError`` (the op or module and where it sits are printed); anything else is
reported as it is. Results go to a JSON-lines file (one line per model, appended, so an
interrupted run keeps what it measured) and a Markdown table on stdout.

Run (the models extra installed):
    OMP_NUM_THREADS=1 python scripts/convert_survey.py [--only NAME ...] [--timeout 600]
        [--out convert_survey.jsonl] [--table-only]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: timm's common CNN families (one or two small members each).
TIMM = [
    "resnet18",
    "resnet50",
    "resnet50d",
    "resnext50_32x4d",
    "seresnet50",
    "ecaresnet50d",
    "skresnet18",
    "resnest14d",
    "res2net50_26w_4s",
    "wide_resnet50_2",
    "regnetx_002",
    "regnety_002",
    "regnetz_005",
    "efficientnet_b0",
    "tf_efficientnet_b0",
    "efficientnetv2_rw_t",
    "tf_efficientnetv2_b0",
    "mixnet_s",
    "mnasnet_100",
    "fbnetc_100",
    "lcnet_050",
    "mobilenetv2_100",
    "mobilenetv3_small_100",
    "mobilenetv3_large_100",
    "mobilenetv4_conv_small",
    "ghostnet_100",
    "ghostnetv2_100",
    "rexnet_100",
    "hardcorenas_a",
    "tinynet_a",
    "densenet121",
    "dla34",
    "dpn68",
    "cspresnet50",
    "cspdarknet53",
    "darknet53",
    "hrnet_w18_small",
    "selecsls42b",
    "vgg11_bn",
    "repvgg_a0",
    "inception_v3",
    "xception41",
    "nf_resnet26",
    "nfnet_l0",
    "convnext_atto",
    "convnext_tiny",
    "convnextv2_atto",
    "poolformer_s12",
    "convmixer_768_32",
    "edgenext_xx_small",
    "efficientformer_l1",
    "mobilevit_xxs",
    "fastvit_t8",
    "vit_tiny_patch16_224",
]

#: Models that need a particular input size (the rest get 64x64).
SIZES = {
    "vit_b_16": 224,
    "vit_b_32": 224,
    "vit_l_16": 224,
    "vit_l_32": 224,
    "vit_h_14": 224,
    "maxvit_t": 224,
    "inception_v3": 299,  # its auxiliary head (train mode) needs the full size
    "timm:inception_v3": 299,
    "timm:vit_tiny_patch16_224": 224,
    "timm:efficientformer_l1": 224,
    "timm:mobilevit_xxs": 256,
    "timm:convmixer_768_32": 64,
}


def _all_names() -> list[str]:
    sys.path.insert(0, str(ROOT / "tests" / "convert"))
    import _torchvision_shim

    _torchvision_shim.install()
    import torchvision

    names = [f"torchvision:{n}" for n in torchvision.models.list_models(module=torchvision.models)]
    names += [
        f"torchvision.segmentation:{n}"
        for n in torchvision.models.list_models(module=torchvision.models.segmentation)
    ]
    names += [f"timm:{n}" for n in TIMM]
    return names


def _one(name: str) -> dict[str, object]:
    """Run the four checks on one model in this process."""
    import math

    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "tests" / "convert"))
    import _torchvision_shim

    _torchvision_shim.install()
    import pytest
    import torch
    from tests.convert import _padding

    from masknn import Masked
    from masknn.convert import ConversionError, convert
    from masknn.testing import assert_no_leakage

    torch.set_num_threads(1)
    torch.manual_seed(0)
    source, model_name = name.split(":", 1)
    if source == "timm":
        import timm

        model = timm.create_model(model_name, pretrained=False, num_classes=10)
    elif source == "torchvision":
        import torchvision

        model = torchvision.models.get_model(model_name, weights=None, num_classes=10)
    else:
        import torchvision

        model = torchvision.models.get_model(model_name, weights=None, weights_backbone=None, num_classes=3)
    size = SIZES.get(name.split(":", 1)[1] if source != "timm" else name, 64)
    size = SIZES.get(name, size)
    result: dict[str, object] = {"model": name, "size": size}

    def leaves(o: object) -> list[object]:
        if isinstance(o, (Masked, torch.Tensor)):
            return [o]
        if isinstance(o, dict):
            return [x for v in o.values() for x in leaves(v)]
        if isinstance(o, (list, tuple)):
            return [x for v in o for x in leaves(v)]
        return []

    stage = "convert"
    try:
        converted = convert(model)
        x = torch.randn(2, 3, size, size)
        stage = "parity"
        model.eval()
        converted.eval()
        with torch.no_grad():
            ref = leaves(model(x))
            out = leaves(converted(Masked(x, torch.ones(2, 1, size, size, dtype=torch.bool))))
        err = 0.0
        for r, o in zip(ref, out):
            assert isinstance(r, torch.Tensor) and isinstance(o, Masked)
            err = max(err, float((o.data - r).abs().max()) / max(float(r.abs().max()), 1.0))
        result["parity_error"] = err
        if not err <= 1e-4:
            result.update(status="wrong", detail=f"all-valid parity error {err:.2e}")
            return result
        stage = "training step"
        converted.train()
        mask = torch.rand(2, 1, size, size) > 0.3
        mask[1, :, size // 8 : size // 2, size // 8 : size // 2] = False
        holes = x.masked_fill(~mask, math.nan).requires_grad_(True)
        outs = [o for o in leaves(converted(Masked(holes, mask))) if isinstance(o, Masked)]
        loss = sum(torch.where(o.full_mask(), o.data, 0.0).square().mean() for o in outs)
        assert isinstance(loss, torch.Tensor)
        loss.backward()
        grads_ok = all(p.grad is None or bool(p.grad.isfinite().all()) for p in converted.parameters())
        holes_ok = holes.grad is not None and bool((holes.grad[~mask.expand_as(holes)] == 0).all())
        if not (bool(loss.isfinite()) and grads_ok and holes_ok):
            result.update(
                status="wrong", detail=f"training step: loss {float(loss)}, grads finite {grads_ok}"
            )
            return result
        stage = "contract"
        converted.zero_grad(set_to_none=True)
        mp = pytest.MonkeyPatch()
        with _padding.emulate(mp) as emulated:
            assert_no_leakage(converted, Masked(x, mask), perturbations=("random", math.nan))
        mp.undo()
        result["emulated_padding"] = emulated
        result.update(status="converts", detail="")
    except ConversionError as e:
        result.update(status="refuses", stage=stage, detail=str(e))
    except Exception as e:
        result.update(status="error", stage=stage, detail=f"{type(e).__name__}: {str(e)[:500]}")
    return result


def _why(row: dict[str, object]) -> str:
    """The first line of the reason, without the ``masknn.convert:`` prefix, and the model line."""
    detail = str(row.get("detail", ""))
    lines = [ln.strip() for ln in detail.splitlines() if ln.strip()]
    if not lines:
        return ""
    why = lines[0].removeprefix("masknn.convert: ")
    at = next((ln for ln in lines[1:] if ln.startswith("called at ")), "")
    reason = next((ln for ln in lines[1:] if not ln.startswith("called at ")), "")
    if "cannot be converted" in why and reason:
        why += ": " + reason.split("; register a conversion")[0]
    if "site-packages/" in at:
        why += f" — {at.split('site-packages/', 1)[1]}"
    return why


def _table(rows: list[dict[str, object]]) -> str:
    lines = ["| model | result | why / where |", "|---|---|---|"]
    for r in rows:
        detail = _why(r).replace("|", "\\|")
        if r.get("status") == "converts":
            detail = f"parity error {float(r.get('parity_error', 0.0)):.1e}"  # type: ignore[arg-type]
        lines.append(f"| {r['model']} | {r['status']} | {detail} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="*", help="model names as source:name (default: all)")
    p.add_argument("--timeout", type=int, default=600, help="seconds per model")
    p.add_argument("--out", default="convert_survey.jsonl")
    p.add_argument("--table-only", action="store_true", help="print the table of --out and stop")
    p.add_argument("--one", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one:
        print(json.dumps(_one(a.one)))
        return
    out = Path(a.out)
    if not a.table_only:
        names = a.only or _all_names()
        for name in names:
            t0 = time.time()
            try:
                proc = subprocess.run(
                    [sys.executable, __file__, "--one", name],
                    capture_output=True,
                    text=True,
                    timeout=a.timeout,
                )
                last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
                row = (
                    json.loads(last)
                    if last.startswith("{")
                    else {
                        "model": name,
                        "status": "error",
                        "detail": proc.stderr.strip().splitlines()[-1]
                        if proc.stderr.strip()
                        else f"exit {proc.returncode}",
                    }
                )
            except subprocess.TimeoutExpired:
                row = {"model": name, "status": "timeout", "detail": f"over {a.timeout} s"}
            row["seconds"] = round(time.time() - t0, 1)
            with out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(f"{name}: {row['status']} {str(row.get('detail', ''))[:160]}", flush=True)
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    print(_table(rows))


if __name__ == "__main__":
    main()
