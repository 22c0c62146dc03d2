"""JapaneseVowels variable-length sequences, offline (the .ts files sktime ships)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from masknn.datasets._files import package_file

__all__ = ["load_japanese_vowels", "parse_ts"]


def parse_ts(path: str | Path) -> tuple[list[np.ndarray], list[str]]:
    """Parse a multivariate ``.ts`` file (UEA/UCR format) with class labels.

    Returns a list of float32 arrays ``(T_i, D)`` (variable lengths allowed)
    and the list of labels. Missing values (``?``) become NaN.

    Examples:
        >>> import tempfile, os
        >>> text = "@problemName X\\n@classLabel true a b\\n@data\\n1,2,3:4,5,6:a\\n7,8:9,10:b\\n"
        >>> with tempfile.TemporaryDirectory() as d:
        ...     p = os.path.join(d, "x.ts")
        ...     _ = open(p, "w").write(text)
        ...     seqs, labels = parse_ts(p)
        >>> [s.shape for s in seqs], labels
        ([(3, 2), (2, 2)], ['a', 'b'])
    """
    seqs: list[np.ndarray] = []
    labels: list[str] = []
    in_data = False
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, raw in enumerate(fh, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if not in_data:
                if line.lower().startswith("@data"):
                    in_data = True
                continue
            *dims, label = line.split(":")
            if not dims:
                raise ValueError(f"parse_ts: {path}:{lineno}: expected 'dim1:dim2:...:label'")
            chans = [
                np.array([np.nan if v.strip() == "?" else float(v) for v in d.split(",")], dtype=np.float32)
                for d in dims
            ]
            if len({len(c) for c in chans}) != 1:
                raise ValueError(f"parse_ts: {path}:{lineno}: channels have different lengths")
            seqs.append(np.stack(chans, axis=1))
            labels.append(label.strip())
    if not in_data:
        raise ValueError(f"parse_ts: {path}: no @data section")
    return seqs, labels


def load_japanese_vowels() -> dict[str, np.ndarray]:
    """JapaneseVowels: 640 utterances, 12 cepstrum channels, lengths 7-29, 9 speakers.

    Read from the ``.ts`` files in the installed sktime wheel with a small
    parser (sktime is not imported). Sequences are zero-padded to the longest
    length; ``mask`` marks real time steps.

    Returns:
        A dict with ``x_train`` float32 ``(270, 29, 12)``, ``mask_train`` bool
        ``(270, 29)``, ``y_train`` int64 (0..8), and the same for ``test`` (370).
    """
    out: dict[str, np.ndarray] = {}
    parsed = {}
    for split in ("train", "test"):
        path = package_file("sktime", f"datasets/data/JapaneseVowels/JapaneseVowels_{split.upper()}.ts")
        parsed[split] = parse_ts(path)
    classes = sorted({lab for _, labs in parsed.values() for lab in labs}, key=lambda s: (len(s), s))
    t_max = max(len(s) for seqs, _ in parsed.values() for s in seqs)
    for split, (seqs, labels) in parsed.items():
        x = np.zeros((len(seqs), t_max, seqs[0].shape[1]), dtype=np.float32)
        m = np.zeros((len(seqs), t_max), dtype=bool)
        for i, s in enumerate(seqs):
            x[i, : len(s)] = s
            m[i, : len(s)] = True
        out[f"x_{split}"] = x
        out[f"mask_{split}"] = m
        out[f"y_{split}"] = np.array([classes.index(lab) for lab in labels], dtype=np.int64)
    return out
