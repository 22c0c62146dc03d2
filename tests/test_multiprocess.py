"""The spawning helper of the distributed tests leaves no process behind, even on failure."""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import pytest
import torch.distributed as dist
from torch.multiprocessing import ProcessRaisedException

from tests.multiprocess import run_ranks


def _note_pid() -> None:
    Path(os.environ["MASKNN_TEST_PIDS"], str(os.getpid())).touch()


def _fail_on_rank_1(rank: int, world_size: int) -> dict[str, str | None]:
    _note_pid()
    if rank == 1:
        raise RuntimeError("rank 1 fails on purpose")
    dist.barrier()  # waits for rank 1, which never comes
    return {}


def _hang(rank: int, world_size: int) -> dict[str, str | None]:
    _note_pid()
    time.sleep(600)
    return {}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("target", [_fail_on_rank_1, _hang], ids=["failure", "hang"])
def test_no_process_survives_a_failure_or_a_hang(
    target: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MASKNN_TEST_PIDS", str(tmp_path))
    # A failure surfaces as the first failing rank's traceback (rank 1's, or rank 0's "connection
    # closed by peer"); a hang as a TimeoutError after the deadline.
    expected = ProcessRaisedException if target is _fail_on_rank_1 else TimeoutError
    with pytest.raises(expected):
        run_ranks(target, 2, timeout=5.0 if target is _hang else 120.0)  # type: ignore[arg-type]
    assert not multiprocessing.active_children()
    pids = [int(p.name) for p in tmp_path.iterdir()]  # the children that got as far as starting
    assert not [pid for pid in pids if _alive(pid)]
