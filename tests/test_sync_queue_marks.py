"""The sync's side of the queue, on a real SQLite file: marks put off until an ack is late,
acks applied by seq range, and neither ever loses, repeats or wrongly deletes an event."""

from __future__ import annotations

from pathlib import Path

from queue_helpers import make_event, record

from reader.queue import EventQueue


def filled(path: Path, count: int) -> tuple[EventQueue, list[str]]:
    queue = EventQueue.open(path)
    return queue, [record(queue, make_event()).id for _ in range(count)]


def states(queue: EventQueue) -> dict[int, str]:
    return {e["seq"]: e["state"] for e in queue.iter_events()}


def test_put_off_marks_take_each_event_once_and_mark_only_late_batches(tmp_path: Path) -> None:
    queue, _ = filled(tmp_path / "q.sqlite3", 30)
    queue.defer_marks(1.0)
    first = queue.take_batch(max_events=10, now=1000.0)
    second = queue.take_batch(max_events=10, now=1000.2)
    assert first and second and first.seqs == tuple(range(1, 11))
    assert second.seqs == tuple(range(11, 21))  # not the first batch again
    assert set(states(queue).values()) == {"pending"}  # nothing written yet
    assert queue.ack(first.ids, dict(zip(first.ids, first.seqs, strict=True)), first.id) == 10
    queue.flush_marks(now=1001.5)  # the second batch's ack is late: now it is marked
    marked = [e for e in queue.iter_events() if e["state"] == "in_flight"]
    assert [e["seq"] for e in marked] == list(range(11, 21))
    assert {e["batch"] for e in marked} == {second.id}
    third = queue.take_batch(max_events=10, now=1001.6)
    assert third and third.seqs == tuple(range(21, 31))
    # The marked batch goes again after the ack timeout, with the time it was really sent.
    assert queue.take_batch(max_events=10, now=1029.9) is None
    again = queue.take_batch(max_events=10, now=1030.3)
    assert again and again.seqs == second.seqs
    queue.close()


def test_a_partly_acked_put_off_batch_keeps_the_rest_in_flight(tmp_path: Path) -> None:
    queue, ids = filled(tmp_path / "q.sqlite3", 10)
    queue.defer_marks(1.0)
    batch = queue.take_batch(now=1000.0)
    assert batch is not None
    seqs = dict(zip(batch.ids, batch.seqs, strict=True))
    assert queue.ack(batch.ids[:4], seqs, batch.id) == 4
    assert queue.reject([(batch.ids[4], "schema")]) == 1
    assert states(queue) == {5: "rejected", **{s: "in_flight" for s in range(6, 11)}}
    assert queue.take_batch(now=1001.0) is None  # in flight, not due: not sent twice
    again = queue.take_batch(now=1031.0)
    assert again and again.ids == tuple(ids[5:])  # the unacked rest, after the timeout
    queue.close()


def test_range_acks_delete_exactly_the_named_events(tmp_path: Path) -> None:
    queue, ids = filled(tmp_path / "q.sqlite3", 12)
    batch = queue.take_batch(now=1000.0)
    assert batch is not None and len(batch) == 12
    seqs = dict(zip(batch.ids, batch.seqs, strict=True))
    # A duplicated id and a hole: seq 1, 3 and 4 go; 2 stays (a run must never cover it).
    named = [ids[0], ids[0], ids[2], ids[3], "01900000-0000-7000-8000-000000000000"]
    assert queue.ack(named, seqs, batch.id) == 3
    assert sorted(states(queue)) == [2, *range(5, 13)]
    assert queue.ack(named, seqs, batch.id) == 0  # a duplicate ack is harmless
    queue.close()


def test_a_stop_marks_what_was_put_off(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite3"
    queue, _ = filled(path, 5)
    queue.defer_marks(1.0)
    batch = queue.take_batch(now=1000.0)
    assert batch is not None
    queue.flush_marks(every=True)  # what the sync does before closing its connection
    queue.close()
    with EventQueue.open(path) as other:  # the next process waits for the ack, or the timeout
        assert set(states(other).values()) == {"in_flight"}
        assert other.take_batch(now=1010.0) is None
