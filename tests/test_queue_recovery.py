"""The queue's recovery on real SQLite files (issue 13): the seq mark that outlives the
file, counts that cost the same whatever the backlog, the full check after start-up."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from disk_env import io_shim, preload_env
from queue_helpers import make_event, record

from reader.queue import EventQueue, event_queue, voiding
from reader.queue.seqmark import RESERVE, mark_path

TESTS = Path(__file__).resolve().parent

PAGE = 4096


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "events.sqlite3"


def test_deleting_the_queue_file_does_not_reset_seq(db_path: Path) -> None:
    with EventQueue.open(db_path) as q:
        for _ in range(5):
            record(q)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    with EventQueue.open(db_path) as q:
        assert record(q).seq == 6  # the city holds 1..5 already
        [alarm] = q.summary().alarms
        assert "missing" in alarm and "seq continues after 5" in alarm
    with EventQueue.open(db_path) as q:  # an intact file: no new alarm, seq goes on
        assert record(q).seq == 7 and len(q.summary().alarms) == 1


def test_an_unreadable_seq_mark_is_an_alarm_and_is_rewritten(db_path: Path) -> None:
    with EventQueue.open(db_path) as q:
        record(q)
    mark_path(db_path).write_bytes(b"\x00" * 21)
    with EventQueue.open(db_path) as q:
        [alarm] = q.summary().alarms
        assert "seq high-water mark unreadable" in alarm
        assert record(q).seq == 2
    assert mark_path(db_path).read_text().split() == [f"{2:020d}", "exact"]  # a clean stop


def test_a_mark_one_above_the_file_is_an_append_that_never_committed(db_path: Path) -> None:
    with EventQueue.open(db_path) as q:
        record(q)
    mark_path(db_path).write_text(f"{2:020d}\n")  # killed between the mark and the commit
    with EventQueue.open(db_path) as q:
        assert record(q).seq == 2 and q.summary().alarms == ()  # no gap, no alarm


def test_counts_are_kept_by_triggers_and_the_summary_counts_nothing(db_path: Path) -> None:
    with EventQueue.open(db_path) as q:
        for _ in range(12):
            record(q)
        batch = q.take_batch(max_events=5)
        assert batch is not None
        q.ack(batch.ids[:2])
        q.reject([(batch.ids[2], "schema")])
        q.take_batch(max_events=3)
        q.requeue_in_flight()
        q.take_batch(max_events=4)
        statements: list[str] = []
        q._db.conn.set_trace_callback(statements.append)
        summary = q.summary()
        q._db.conn.set_trace_callback(None)
        assert not [s for s in statements if "COUNT(" in s.upper()]
    with sqlite3.connect(db_path) as conn:
        counts = dict(conn.execute("SELECT state, COUNT(*) FROM events GROUP BY state"))
    assert (summary.pending, summary.in_flight, summary.rejected) == (
        counts["pending"] + counts["in_flight"], counts["in_flight"], counts["rejected"])
    assert (summary.pending, summary.in_flight, summary.rejected) == (9, 4, 1)


def _index_leaf_pages(data: bytes) -> list[int]:
    return [n for n in range(1, len(data) // PAGE) if data[n * PAGE] == 0x0A]


def test_damage_deep_in_an_index_is_found_after_start_and_salvaged_at_the_next(
        db_path: Path) -> None:
    with EventQueue.open(db_path) as q:
        ids = [record(q).id for _ in range(3000)]
        q._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(db_path.read_bytes())
    leaves = _index_leaf_pages(bytes(data))
    assert len(leaves) > 20
    middle = leaves[len(leaves) // 2]  # neither end of any index: not on a probed path
    data[middle * PAGE:(middle + 1) * PAGE] = b"\x00" * PAGE
    db_path.write_bytes(bytes(data))

    with EventQueue.open(db_path) as q:  # the bounded start-up check lets it through
        assert q.summary().alarms == ()
        q.start_integrity_check(quiet_s=0).join(60)
        [alarm] = q.summary().alarms
        assert "integrity check while in use" in alarm
    with EventQueue.open(db_path) as q:  # the next start moves it aside, salvages all
        alarms = q.summary().alarms
        assert any("3000 event(s) salvaged" in a and "seq continues after 3000" in a
                   for a in alarms), alarms
        assert [e["id"] for e in q.iter_events("pending")] == ids
        assert record(q).seq == 3001
    aside = [p for p in db_path.parent.glob("events.sqlite3.corrupt-*")
             if not p.name.endswith(("-wal", "-shm"))]
    assert len(aside) == 1 and not Path(f"{db_path}.damaged").exists()


def test_the_background_check_waits_for_a_quiet_moment_and_gives_way_to_taps(
        db_path: Path) -> None:
    """At a million events the check's seconds of reading raised the taps' p99 (issue 22):
    it runs only when no tap came for `quiet_s`, and a tap interrupts it."""
    with EventQueue.open(db_path) as q:
        for _ in range(3000):
            record(q)
        q._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(db_path.read_bytes())
    middle = _index_leaf_pages(bytes(data))[len(_index_leaf_pages(bytes(data))) // 2]
    data[middle * PAGE:(middle + 1) * PAGE] = b"\x00" * PAGE
    db_path.write_bytes(bytes(data))
    with EventQueue.open(db_path) as q:
        check = q.start_integrity_check(quiet_s=0.5)
        busy_until = time.monotonic() + 2.0
        while time.monotonic() < busy_until:  # a tap every 0.1 s: never quiet
            record(q)
            time.sleep(0.1)
        assert check.is_alive() and q.summary().alarms == ()  # it waited
        check.join(30)  # then the first quiet moment
        [alarm] = q.summary().alarms
        assert "integrity check while in use" in alarm


def test_a_deleted_file_whose_wal_was_left_gives_its_taps_back(db_path: Path) -> None:
    q = EventQueue.open(db_path)
    ids = [record(q).id for _ in range(5)]  # in the WAL: no checkpoint yet
    wal = Path(f"{db_path}-wal").read_bytes()
    q.close()  # the last close checkpoints and removes the WAL...
    db_path.unlink()
    Path(f"{db_path}-wal").write_bytes(wal)  # ...as after a crash, then the file deleted
    with EventQueue.open(db_path) as q:
        [alarm] = q.summary().alarms
        assert "WAL was left" in alarm and "5 event(s) salvaged" in alarm
        assert [e["id"] for e in q.iter_events("pending")] == ids
        assert record(q).seq == 6


def test_pages_freed_by_acks_are_not_salvaged_when_the_header_is_readable(
        db_path: Path) -> None:
    with EventQueue.open(db_path) as q:
        # Debian's SQLite zeroes deleted content (secure_delete); builds that do not
        # leave acked rows in freed pages, which must not be sent again by the thousand.
        q._db.execute("PRAGMA secure_delete = OFF")
        ids = [record(q).id for _ in range(600)]
        while (batch := q.take_batch()) is not None and batch.ids[0] in ids[:500]:
            q.ack(batch.ids[:500 - ids.index(batch.ids[0])])
        q.requeue_in_flight()
        q._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        root = q._db.execute("SELECT rootpage FROM sqlite_schema WHERE name = 'events'"
                             ).fetchone()[0]
    data = bytearray(db_path.read_bytes())
    data[(root - 1) * PAGE:root * PAGE] = b"\x00" * PAGE  # SQLite cannot walk the table
    db_path.write_bytes(bytes(data))
    stale = sum(data.count(f'{{"id":"{i}"'.encode()) for i in ids[:500])
    assert stale  # acked rows are still in the freed pages' bytes
    with EventQueue.open(db_path) as q:
        # only the 100 the city never acked: the freed pages are skipped
        assert [e["id"] for e in q.iter_events("pending")] == ids[500:]
        assert record(q).seq == 601


def _crash(q: EventQueue) -> None:
    """The process dies: no clean stop, the mark keeps its reservation."""
    q._db.close()


def test_a_crash_mid_block_goes_on_gap_free_and_a_lost_file_above_the_block(
        db_path: Path) -> None:
    q = EventQueue.open(db_path)
    assert [record(q).seq for _ in range(5)] == [1, 2, 3, 4, 5]
    assert mark_path(db_path).read_text().split() == [f"{RESERVE:020d}", "reserved"]
    _crash(q)
    q = EventQueue.open(db_path)  # an intact file is trusted over its reservation
    assert record(q).seq == 6 and q.summary().alarms == ()
    _crash(q)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    with EventQueue.open(db_path) as q:  # lost after a crash: above the whole block
        assert record(q).seq == RESERVE + 1
        [alarm] = q.summary().alarms
        assert f"seq continues after {RESERVE}" in alarm


def test_an_older_copy_put_back_is_told_after_a_clean_stop_and_after_a_block(
        db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(event_queue, "RESERVE", 10)
    with EventQueue.open(db_path) as q:
        for _ in range(3):
            record(q)
    copy = db_path.read_bytes()  # after a clean stop: checkpointed, exact mark 3
    with EventQueue.open(db_path) as q:
        for _ in range(2):
            record(q)
    db_path.write_bytes(copy)
    with EventQueue.open(db_path) as q:
        [alarm] = q.summary().alarms
        assert "below the seq mark 5" in alarm and record(q).seq == 6
        q._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        copy = db_path.read_bytes()  # seq 6, reservation 6..15
        for _ in range(12):  # seq 7..18: the next block reserved at 16 (up to 25)
            record(q)
        _crash(q)
    for suffix in ("-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    db_path.write_bytes(copy)
    with EventQueue.open(db_path) as q:
        alarms = q.summary().alarms
        assert any("below the seq mark 25" in a for a in alarms), alarms
        assert record(q).seq == 26


def test_one_fsync_per_append(tmp_path: Path) -> None:
    """The seq mark's fsync comes once per RESERVE taps, not once per tap (issue 22)."""
    shim = io_shim(tmp_path / "shim")
    script = f"""
import sys
sys.path[:0] = {[str(TESTS), str(TESTS.parent / "scripts")]!r}
import io_shim
from queue_helpers import make_event, record
from reader.queue import EventQueue
q = EventQueue.open({str(tmp_path / "events.sqlite3")!r})
record(q)
before = io_shim.syncs()
for _ in range(100):
    record(q)
print(io_shim.syncs() - before)
"""
    out = subprocess.run([sys.executable, "-c", script], env=preload_env(shim),
                         capture_output=True, text=True, timeout=120, check=True)
    assert int(out.stdout) == 100  # the WAL commit's, and nothing else


def test_taps_a_dead_process_could_not_void_are_voided_at_the_next_start(
        db_path: Path) -> None:
    """The note beside the file (voiding.py): a process killed between a failed fsync and
    the voided record leaves it; the next start voids before anything is sent."""
    with EventQueue.open(db_path) as q:
        record(q)
        came_back = record(q)  # the failed commit, back from the -wal as accepted
    lost = make_event(7).with_seq(3)  # the other: never reached the file
    voiding.write_note(db_path, [voiding.Void.of(came_back, "b", 1, "disk I/O error"),
                                 voiding.Void.of(lost, "b", 2, "disk I/O error")])
    with EventQueue.open(db_path) as q:
        events = {e["id"]: e for e in q.iter_events()}
        assert [e["seq"] for e in events.values()] == [1, 2, 3]  # gap-free
        for event in (came_back, lost):
            voided = events[event.id]
            assert (voided["result"], voided["reason"]) == ("rejected", "voided")
            assert voided["card"]["mid"] == event.card.mid  # whose tap it was
        assert len(q.summary().alarms) == 2 and record(q).seq == 4
    assert not voiding.note_path(db_path).exists()
    with EventQueue.open(db_path) as q:  # done once
        assert len(q.summary().alarms) == 2
