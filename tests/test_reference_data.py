"""The reference vectors ship with the repository (``tests/data/``, see its README): every file
listed in ``SHA256SUMS`` is present and unchanged, nothing unlisted lies beside them, and a test
that needs a missing folder fails instead of skipping."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

import tests.conftest as conftest
from tests.conftest import REFERENCE, reference_dir

SOURCES = {"partialconv": "NVIDIA/partialconv", "keras_rnn": "keras 3.15.1 (torch backend)"}


def _manifest() -> dict[str, str]:
    lines = (REFERENCE / "SHA256SUMS").read_text().splitlines()
    return {name: digest for digest, name in (line.split() for line in lines if line.strip())}


def test_every_listed_file_is_present_and_unchanged() -> None:
    listed = _manifest()
    assert len(listed) == 32
    for name, digest in listed.items():
        path = REFERENCE / name
        assert path.is_file(), f"tests/data/{name} is missing"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, f"tests/data/{name} was altered"
    on_disk = {str(p.relative_to(REFERENCE)) for p in REFERENCE.glob("*/*.npz")}
    assert on_disk == set(listed), f"not in SHA256SUMS: {sorted(on_disk - set(listed))}"


@pytest.mark.parametrize("folder", sorted(SOURCES))
def test_each_file_names_its_peer_source(folder: str) -> None:
    files = sorted(reference_dir(folder).glob("*.npz"))
    assert len(files) == 16
    for f in files:
        with np.load(f) as z:
            assert json.loads(str(z["meta"]))["source"] == SOURCES[folder], f.name


def test_a_missing_folder_fails_instead_of_skipping(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conftest, "REFERENCE", tmp_path)
    (tmp_path / "partialconv").mkdir()  # present but empty
    for name in ("partialconv", "keras_rnn"):
        with pytest.raises(pytest.fail.Exception, match="reference vectors missing"):
            conftest.reference_dir(name)
