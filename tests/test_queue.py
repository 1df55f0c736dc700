"""The durable event queue on real SQLite files: seq, transactions, batches, acks, start-up."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from dataclasses import replace
from pathlib import Path

import pytest
from queue_helpers import make_event, record

from reader.errors import QueueError
from reader.modes.state import Attended, CouponUsed
from reader.queue import EventQueue
from reader.queue.opening import move_aside
from reader.queue.schema import SCHEMA_VERSION
from reader.wire.event import Event
from reader.wire.messages import build_batch


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "events.sqlite3"


@pytest.fixture
def queue(db_path: Path):
    q = EventQueue.open(db_path)
    yield q
    q.close()


def all_seqs(path: Path) -> list[int]:
    with sqlite3.connect(path) as conn:
        return [r[0] for r in conn.execute("SELECT seq FROM events ORDER BY seq")]


# -- seq -------------------------------------------------------------------------------


def test_seq_is_gap_free_across_close_reopen_and_acks(db_path: Path) -> None:
    seqs = []
    for _round in range(3):
        with EventQueue.open(db_path) as q:
            seqs += [record(q).seq for _ in range(5)]
            # Acked events are deleted; their seq must never come back.
            batch = q.take_batch()
            assert batch is not None
            q.ack(batch.ids)
    assert seqs == list(range(1, 16))
    with EventQueue.open(db_path) as q:
        assert q.summary().last_seq == 15
        assert record(q).seq == 16


def test_the_database_is_wal_with_full_sync_and_versioned(queue: EventQueue, db_path: Path
                                                          ) -> None:
    conn = queue._db.conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    with sqlite3.connect(db_path) as other:
        assert other.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_append_returns_the_event_with_seq_and_stores_local_time_facts(queue: EventQueue
                                                                      ) -> None:
    event = replace(make_event(detail={"direction": "arrival"}), clock_synced=False)
    stored = queue.append(event, boot_id="boot-1", mono_ns=987654321)
    assert stored == event.with_seq(1)
    assert event.seq is None  # the caller's event is not modified
    [listed] = queue.iter_events()
    assert listed["local"] == {"boot_id": "boot-1", "mono_ns": 987654321,
                               "clock_synced": False}
    assert {k: listed[k] for k in stored.to_json()} == stored.to_json()
    assert Event.from_json(listed) == stored


def test_append_refuses_an_event_that_already_has_seq_or_lacks_id(queue: EventQueue) -> None:
    with pytest.raises(QueueError, match="seq"):
        record(queue, make_event().with_seq(7))
    with pytest.raises(ValueError):  # an event's id is a UUID, or it is no event
        replace(make_event(), id="x")
    with pytest.raises(QueueError, match="JSON"):
        record(queue, replace(make_event(), detail={"raw": b"bytes"}))
    assert queue.summary().last_seq == 0


def test_duplicate_id_is_refused_without_consuming_a_seq(queue: EventQueue) -> None:
    event = make_event()
    record(queue, event)
    with pytest.raises(QueueError, match="already recorded"):
        record(queue, event)
    assert record(queue).seq == 2


def test_concurrent_writers_on_one_file_keep_seq_gap_free(db_path: Path) -> None:
    EventQueue.open(db_path).close()
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            with EventQueue.open(db_path) as q:
                for _ in range(50):
                    record(q)
        except BaseException as exc:  # surfaced by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert all_seqs(db_path) == list(range(1, 201))


# -- mode state updates in the same transaction ----------------------------------------------


def test_mode_state_updates_commit_with_the_event(queue: EventQueue, db_path: Path) -> None:
    event = record(queue, updates=[CouponUsed("M1", "taxi", "2026-12", 1000),
                                   CouponUsed("M1", "taxi", "2026-12", 2000)])
    with sqlite3.connect(db_path) as other:
        assert other.execute("SELECT used, last_at_ms FROM mode_coupon_uses").fetchall() == [
            (2, 2000)]
    assert event.seq == 1
    assert queue.mode_state.coupon_used("M1", "taxi", "2026-12") == 2


def test_failing_mode_state_update_records_nothing_and_consumes_no_seq(queue: EventQueue,
                                                                        db_path: Path) -> None:
    record(queue)
    failed = make_event()
    with pytest.raises(QueueError):  # the second attendance of one event breaks its key
        record(queue, failed, updates=[Attended("E1", "M1", 1000), Attended("E1", "M1", 2000)])
    with sqlite3.connect(db_path) as other:
        assert other.execute("SELECT COUNT(*) FROM mode_event_attendance").fetchone()[0] == 0
    assert failed.id not in [e["id"] for e in queue.iter_events()]
    assert record(queue).seq == 2  # the failed tap gave its seq back
    assert all_seqs(db_path) == [1, 2]


# -- batches -------------------------------------------------------------------------------


def test_batches_hold_at_most_500_events_in_seq_order(queue: EventQueue) -> None:
    for _ in range(1200):
        record(queue)
    sizes, seqs = [], []
    while (batch := queue.take_batch(now=1000.0)) is not None:
        sizes.append(len(batch))
        seqs += list(batch.seqs)
    assert sizes == [500, 500, 200]
    assert seqs == list(range(1, 1201))
    assert queue.summary().in_flight == 1200


def test_an_urgent_event_jumps_the_backlog_in_a_batch_of_its_own(queue: EventQueue) -> None:
    for _ in range(1200):
        record(queue)
    first = queue.take_batch(now=1000.0)
    watch = record(queue, urgent=True)  # a youth-watch tap behind 700 pending events
    later = record(queue)
    batch = queue.take_batch(now=1000.0)
    assert list(batch.ids) == [watch.id]
    rest = [s for b in iter(lambda: queue.take_batch(now=1000.0), None) for s in b.seqs]
    assert rest == [*range(501, 1201), later.seq]  # then the backlog, in seq order
    assert len(first) == 500


def test_batches_stay_within_256_kib_including_the_envelope(queue: EventQueue) -> None:
    # ~3 KiB events (a long non-ASCII coupon code) so the byte limit binds before 500.
    for _ in range(300):
        record(queue, make_event(detail={"coupon": "宿毛" * 1000, "remaining": 3}))
    limit = 256 * 1024
    taken = []
    while (batch := queue.take_batch(tid="t-0001")) is not None:
        payload = build_batch("t-0001", batch.id, batch.bodies)  # what the sync publishes
        assert len(payload) <= limit
        assert [e["seq"] for e in json.loads(payload)["events"]] == list(batch.seqs)
        one_more = len(payload) + len(batch.bodies[0].encode()) + 1
        taken.append((len(batch), one_more > limit))
    assert sum(n for n, _ in taken) == 300
    assert all(full for _, full in taken[:-1])  # every batch but the last is full
    assert len(taken) > 1


def test_unacked_batch_is_resent_after_the_ack_timeout_with_same_ids_and_seq(
        queue: EventQueue) -> None:
    for _ in range(3):
        record(queue)
    first = queue.take_batch(now=1000.0, ack_timeout_s=30)
    assert first is not None
    assert queue.take_batch(now=1029.0, ack_timeout_s=30) is None  # not yet due
    record(queue)
    newer = queue.take_batch(now=1029.0, ack_timeout_s=30)
    assert newer is not None and list(newer.seqs) == [4]
    again = queue.take_batch(now=1030.0, ack_timeout_s=30)
    assert again is not None and again.id != first.id
    assert (again.ids, again.seqs, again.bodies) == (first.ids, first.seqs, first.bodies)


def test_in_flight_sent_at_a_wall_time_now_in_the_future_is_due(queue: EventQueue) -> None:
    record(queue)
    first = queue.take_batch(now=2_000_000_000.0)  # clock far ahead (stale fake-hwclock)
    assert first is not None
    again = queue.take_batch(now=1_800_000_000.0)  # NTP stepped it back
    assert again is not None and again.bodies == first.bodies


def test_ack_removes_and_ignores_unknown_ids(queue: EventQueue) -> None:
    for _ in range(4):
        record(queue)
    batch = queue.take_batch()
    assert batch is not None
    acked = list(batch.ids[:2])
    assert queue.ack([*acked, "01900000-0000-7000-8000-000000000000", "junk"]) == 2
    left = [e["seq"] for e in queue.iter_events()]
    assert left == [3, 4]
    assert queue.ack(acked) == 0  # a duplicate ack is harmless
    s = queue.summary()
    assert (s.pending, s.in_flight, s.last_seq) == (2, 2, 4)


def test_rejected_events_are_kept_aside_visible_and_never_resent(queue: EventQueue) -> None:
    events = [record(queue) for _ in range(3)]
    batch = queue.take_batch(now=1000.0)
    assert batch is not None
    assert queue.reject([(events[1].id, "schema"), ("unknown-id", "schema")]) == 1
    queue.ack([events[0].id])
    s = queue.summary()
    assert (s.pending, s.in_flight, s.rejected) == (1, 1, 1)
    [rejected] = queue.iter_events(state="rejected")
    assert rejected["id"] == events[1].id and rejected["error"] == "schema"
    resent = queue.take_batch(now=5000.0)
    assert resent is not None and list(resent.seqs) == [3]


def test_requeue_in_flight_makes_them_due_now(queue: EventQueue) -> None:
    for _ in range(2):
        record(queue)
    assert queue.take_batch(now=1000.0) is not None
    assert queue.requeue_in_flight() == 2
    assert [e["state"] for e in queue.iter_events()] == ["pending", "pending"]
    again = queue.take_batch(now=1000.0)
    assert again is not None and list(again.seqs) == [1, 2]


def test_summary_reports_oldest_unacked_and_iter_events_filters(queue: EventQueue) -> None:
    events = [record(queue) for _ in range(5)]
    assert queue.take_batch(max_events=2) is not None
    queue.ack([events[0].id])
    s = queue.summary()
    assert s.oldest_at == events[1].at
    assert (s.pending, s.in_flight, s.last_seq) == (4, 1, 5)
    assert [e["seq"] for e in queue.iter_events("pending")] == [3, 4, 5]
    assert [e["seq"] for e in queue.iter_events("in_flight")] == [2]
    assert [e["seq"] for e in queue.iter_events(limit=2)] == [2, 3]
    with pytest.raises(QueueError, match="unknown queue state"):
        list(queue.iter_events("bogus"))


def test_warn_threshold_sets_over_warn_and_logs_once(db_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="reader.queue")
    with EventQueue.open(db_path, warn_mb=1) as q:
        big = {"coupon": "x" * 4000, "remaining": 1}
        for _ in range(400):  # ~1.6 MB of events
            record(q, make_event(detail=big))
        assert q.summary().over_warn
        crossings = [r for r in caplog.records if "warn threshold" in r.getMessage()]
        assert len(crossings) == 1 and crossings[0].levelno == logging.WARNING


# -- start-up ------------------------------------------------------------------------------


def _assert_moved_aside(db_path: Path, queue: EventQueue, original: bytes,
                        next_seq: int = 1) -> None:
    aside = sorted(db_path.parent.glob("events.sqlite3.corrupt-*"))
    main = [p for p in aside if not p.name.endswith(("-wal", "-shm"))]
    assert len(main) == 1 and main[0].read_bytes() == original  # kept, byte for byte
    alarms = queue.summary().alarms
    assert len(alarms) == 1 and str(main[0]) in alarms[0] and "corrupt" in alarms[0]
    assert record(queue).seq == next_seq  # the fresh database works


def test_garbage_file_is_moved_aside_and_a_fresh_queue_starts(
        db_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db_path.parent.mkdir(parents=True)
    garbage = b"this is not an sqlite database\n" * 200
    db_path.write_bytes(garbage)
    with EventQueue.open(db_path) as q:
        _assert_moved_aside(db_path, q, garbage)
        assert "seq restarts at 1, tell the city" in q.summary().alarms[0]
    assert any(r.levelno == logging.ERROR and "corrupt" in r.getMessage()
               for r in caplog.records)
    with EventQueue.open(db_path) as q:  # the alarm stays until a technician clears it
        assert len(q.summary().alarms) == 1
        assert q.clear_alarms() == 1 and q.summary().alarms == ()


def test_database_failing_integrity_check_is_moved_aside(db_path: Path) -> None:
    with EventQueue.open(db_path) as q:
        for _ in range(300):
            record(q, make_event(detail={"coupon": "c" * 500, "remaining": 1}))
        q._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(db_path.read_bytes())
    # Break the b-tree page headers and cell pointers of pages 3-6 (a torn SD card write).
    for page in range(2, 6):
        data[page * 4096: page * 4096 + 64] = b"\xff" * 64
    db_path.write_bytes(bytes(data))
    with EventQueue.open(db_path) as q:
        # seq is never reused: the city already holds 1..300 under other ids
        _assert_moved_aside(db_path, q, bytes(data), next_seq=301)
        assert "seq continues after 300" in q.summary().alarms[0]
        # every row is still in a leaf page: all 300 are salvaged and owed to the city
        assert "300 event(s) salvaged" in q.summary().alarms[0]
        assert all_seqs(db_path) == [*range(1, 302)]


def test_move_aside_keeps_wal_and_shm_with_the_database(tmp_path: Path) -> None:
    db = tmp_path / "events.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").write_bytes(suffix.encode() or b"main")
    first = move_aside(db)
    db.write_bytes(b"main")
    second = move_aside(db)  # same second: a distinct name, nothing overwritten
    assert first != second and not db.exists()
    assert first.name.startswith("events.sqlite3.corrupt-") and first.name.endswith("Z")
    # Named so that opening the moved file in sqlite3 finds its own WAL.
    assert Path(f"{first}-wal").read_bytes() == b"-wal"
    assert Path(f"{first}-shm").read_bytes() == b"-shm"
    assert first.read_bytes() == second.read_bytes() == b"main"


def test_a_reader_that_must_not_repair_reports_corruption_and_moves_nothing(db_path: Path
                                                                           ) -> None:
    db_path.parent.mkdir(parents=True)
    db_path.write_bytes(b"garbage" * 100)
    with pytest.raises(QueueError, match="corrupt"):
        EventQueue.open(db_path, on_corrupt="raise")
    assert db_path.read_bytes() == b"garbage" * 100
    assert list(db_path.parent.glob("*.corrupt-*")) == []


def test_database_from_a_newer_release_is_refused_untouched(db_path: Path) -> None:
    EventQueue.open(db_path).close()
    with sqlite3.connect(db_path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    before = db_path.read_bytes()
    with pytest.raises(QueueError, match="newer"):
        EventQueue.open(db_path)
    assert db_path.read_bytes() == before
    assert list(db_path.parent.glob("*.corrupt-*")) == []


def test_missing_database_with_create_false_is_a_clear_error(db_path: Path) -> None:
    with pytest.raises(QueueError, match="no queue database"):
        EventQueue.open(db_path, create=False)
    assert not db_path.exists()


# -- the local time facts stored with each event (reader/system/bootinfo.py) ----------------------


def test_boot_id_monotonic_time_and_clock_state_come_from_the_kernel() -> None:
    from reader.system import bootinfo

    assert bootinfo.boot_id() == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    a = bootinfo.monotonic_ns()
    assert bootinfo.monotonic_ns() >= a > 0
    state = bootinfo.read_clock_state()
    assert state.source == "adjtimex"  # Linux: the kernel's own STA_UNSYNC verdict
    assert state.wire in ("synced", "unsynced")
    assert bootinfo.clock_state() is bootinfo.clock_state()  # cached: cheap per tap


# -- the technician's CLI: sukumo-reader queue ---------------------------------------------


@pytest.fixture
def cli_setup(tmp_path: Path) -> tuple[Path, Path]:
    state_dir = tmp_path / "state"
    config = tmp_path / "reader.toml"
    config.write_text(f'[paths]\nstate_dir = "{state_dir}"\n[queue]\nwarn_mb = 64\n')
    db = state_dir / "events.sqlite3"
    with EventQueue.open(db) as q:
        events = [record(q, make_event(i)) for i in range(5)]
        assert q.take_batch(max_events=2) is not None
        q.reject([(events[0].id, "schema")])
    return config, db


def test_cli_summary_text_and_json(cli_setup: tuple[Path, Path],
                                   capsys: pytest.CaptureFixture[str]) -> None:
    from reader.cli import main

    config, db = cli_setup
    assert main(["--config", str(config), "queue"]) == 0
    text = capsys.readouterr().out
    assert "pending    4" in text and "in flight 1" in text and "rejected   1" in text
    assert "warn at 64 MiB" in text and "alarms     none" in text
    assert main(["--config", str(config), "queue", "summary", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["database"] == str(db)
    assert (data["pending"], data["in_flight"], data["rejected"], data["last_seq"]) == (
        4, 1, 1, 5)
    assert main(["--config", str(config), "queue", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["pending"] == 4


def test_cli_list_filters_by_state(cli_setup: tuple[Path, Path],
                                   capsys: pytest.CaptureFixture[str]) -> None:
    from reader.cli import main

    config, _ = cli_setup
    assert main(["--config", str(config), "queue", "list", "--state", "rejected",
                 "--json"]) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert json.loads(line)["seq"] == 1 and json.loads(line)["error"] == "schema"
    assert main(["--config", str(config), "queue", "list", "--limit", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["seq", "time", "state"] and len(lines) == 4
    assert "M00000000" in lines[1] and "error: schema" in lines[1]


def test_cli_export_jsonl_round_trips_and_csv_has_a_header(
        cli_setup: tuple[Path, Path], tmp_path: Path) -> None:
    import csv

    from reader.cli import main

    config, db = cli_setup
    out = tmp_path / "export.jsonl"
    assert main(["--config", str(config), "queue", "export", "--format", "jsonl",
                 "-o", str(out)]) == 0
    exported = [json.loads(line) for line in out.read_text().splitlines()]
    with EventQueue.open(db) as q:
        assert exported == list(q.iter_events())
    out_csv = tmp_path / "export.csv"
    assert main(["--config", str(config), "queue", "export", "--format", "csv",
                 "--state", "unacked", "-o", str(out_csv)]) == 0
    with out_csv.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["seq"] for r in rows] == ["2", "3", "4", "5"]
    assert rows[0]["card_mid"] == "M00000001" and rows[0]["state"] == "in_flight"
    assert json.loads(rows[0]["proof"])["nonce"] == exported[1]["proof"]["nonce"]


def test_cli_reports_a_missing_or_corrupt_database_without_touching_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from reader.cli import main

    config = tmp_path / "reader.toml"
    config.write_text(f'[paths]\nstate_dir = "{tmp_path / "state"}"\n')
    assert main(["--config", str(config), "queue"]) == 1
    assert "no queue database" in capsys.readouterr().err
    assert not (tmp_path / "state" / "events.sqlite3").exists()
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "events.sqlite3").write_bytes(b"junk" * 500)
    assert main(["--config", str(config), "queue", "list"]) == 1
    assert "corrupt" in capsys.readouterr().err
    assert (tmp_path / "state" / "events.sqlite3").read_bytes() == b"junk" * 500
