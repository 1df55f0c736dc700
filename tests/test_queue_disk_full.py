"""A full disk or an exhausted budget refuses new taps, loses nothing, and heals by itself."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from disk_env import fill_disk, mounted_tmpfs
from queue_helpers import make_event, record

from reader.errors import StorageFullError
from reader.queue import EventQueue

BIG = {"coupon": "x" * 2000, "remaining": 1}  # ~2.5 KB per event: fills megabytes fast


def fill_until_full(queue: EventQueue, limit: int = 5000) -> tuple[list[str], StorageFullError]:
    """Record taps until the queue refuses one; return the recorded ids and the error."""
    ids = []
    for _ in range(limit):
        try:
            ids.append(record(queue, make_event(detail=BIG)).id)
        except StorageFullError as exc:
            return ids, exc
    raise AssertionError(f"{limit} events fitted; the limit was never reached")


def assert_all_kept(queue: EventQueue, path: Path, ids: list[str]) -> None:
    listed = list(queue.iter_events())
    assert [e["id"] for e in listed] == ids
    assert [e["seq"] for e in listed] == list(range(1, len(ids) + 1))
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_over_budget_refuses_the_tap_keeps_the_rest_and_recovers_after_acks(
        tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite3"
    with EventQueue.open(path, warn_mb=1, budget_mb=2) as q:
        ids, error = fill_until_full(q)
        assert "budget of 2 MiB" in str(error) and "not recorded" in str(error)
        assert len(ids) > 100
        with pytest.raises(StorageFullError):  # still full: refused again, same way
            record(q, make_event(detail=BIG))
        assert_all_kept(q, path, ids)
        s = q.summary()
        assert s.last_seq == len(ids) and s.pending == len(ids) and s.over_warn
        # The queue keeps working while full: batches go out, acks free space.
        batch = q.take_batch(max_events=100)
        assert batch is not None
        q.ack(batch.ids)
        assert record(q, make_event(detail=BIG)).seq == len(ids) + 1
    assert path.stat().st_size <= 2 * 1024 * 1024


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    with mounted_tmpfs(tmp_path, 2) as mount_point:
        yield mount_point


def test_full_disk_refuses_the_tap_keeps_the_rest_and_recovers_when_space_returns(
        small_tmpfs: Path) -> None:
    path = small_tmpfs / "events.sqlite3"
    with EventQueue.open(path, budget_mb=1024) as q:
        earlier = [record(q).id for _ in range(20)]
        ballast = fill_disk(small_tmpfs)
        more, error = fill_until_full(q)  # the WAL may still have room for a few
        ids = earlier + more
        assert "disk is full" in str(error) and "not recorded" in str(error)
        assert_all_kept(q, path, ids)
        assert q.summary().last_seq == len(ids)  # the technician can still look

        os.unlink(ballast)  # the technician frees space; no restart
        after = record(q, make_event(detail=BIG))
        assert after.seq == len(ids) + 1  # the refused taps used no seq
        assert_all_kept(q, path, [*ids, after.id])
    with EventQueue.open(path) as q:  # and it reopens clean
        assert q.summary().last_seq == len(ids) + 1 and q.summary().alarms == ()


def test_queue_on_a_full_disk_still_reopens_with_everything(small_tmpfs: Path) -> None:
    path = small_tmpfs / "events.sqlite3"
    with EventQueue.open(path) as q:
        ids = [record(q).id for _ in range(30)]
        fill_disk(small_tmpfs)
        more, _ = fill_until_full(q)
        ids += more
    # A restart while the disk is still full (e.g. the watchdog restarted the daemon).
    with EventQueue.open(path) as q:
        assert_all_kept(q, path, ids)
        with pytest.raises(StorageFullError):
            record(q, make_event(detail=BIG))
