"""Benchmark the event queue on this machine's disk.

    uv run python scripts/bench_queue.py [--dir DIR] [--appends N] [--drain N]

Prints durable commits per second and p50/p99 latency of `EventQueue.append` (WAL,
synchronous=FULL: every commit is fsynced), then the start-up cost of a queue holding N
events (the bounded start-up check of reader/queue/opening.py) and the throughput of
draining them with take_batch + ack (500-event batches, as the sync engine sends them).
The database lives in a temporary directory under DIR (default: the current
directory, so the figures are for the disk the repository is on, not a tmpfs).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from reader.queue import EventQueue
from reader.system.bootinfo import boot_id, clock_synced, monotonic_ns
from reader.system.uuid7 import uuid7_str
from reader.wire.event import CardRef, Event, Mode, Proof


def make_event(n: int) -> Event:
    """A realistic accepted check-in: every mqtt-v1 §2 field, with a tap receipt."""
    return Event(id=uuid7_str(), at_ms=time.time_ns() // 1_000_000,
                 clock_synced=clock_synced(), mode=Mode.CHECKIN, facility="sukumo-library",
                 reason=None, card=CardRef("392081", f"M{n:08d}", "04a1b2c3d4e5f607", "member"),
                 proof=Proof.of(os.urandom(16), os.urandom(64)))


def bench_append(queue: EventQueue, n: int) -> list[float]:
    latencies = []
    for i in range(n):
        event = make_event(i)
        started = time.perf_counter()
        queue.append(event, boot_id=boot_id(), mono_ns=monotonic_ns())
        latencies.append(time.perf_counter() - started)
    return latencies


def fill_fast(queue: EventQueue, n: int) -> None:
    # Only to prepare the drain benchmark: 100,000 fsynced commits would take minutes.
    queue._db.execute("PRAGMA synchronous = OFF")
    queue._mark.sync = False  # the seq mark's fsync too (reader/queue/seqmark.py)
    for i in range(n):
        queue.append(make_event(i), boot_id="bench", mono_ns=i)
    queue._db.execute("PRAGMA synchronous = FULL")
    queue._mark.sync = True


def bench_drain(queue: EventQueue) -> tuple[int, int, float]:
    events = batches = 0
    started = time.perf_counter()
    while (batch := queue.take_batch(tid="t-bench")) is not None:
        queue.ack(batch.ids)
        events += len(batch)
        batches += 1
    return events, batches, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path.cwd())
    parser.add_argument("--appends", type=int, default=2000)
    parser.add_argument("--drain", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="bench-queue-") as tmp:
        with EventQueue.open(Path(tmp) / "append.sqlite3") as queue:
            lat = bench_append(queue, args.appends)
        ms = sorted(x * 1000 for x in lat)
        print(f"append: {args.appends} durable commits in {sum(lat):.2f} s = "
              f"{args.appends / sum(lat):.0f} commits/s; latency p50 "
              f"{statistics.median(ms):.2f} ms, p99 {ms[int(len(ms) * 0.99) - 1]:.2f} ms, "
              f"max {ms[-1]:.2f} ms  (dir {args.dir})")
        drain_db = Path(tmp) / "drain.sqlite3"
        with EventQueue.open(drain_db) as queue:
            fill_fast(queue, args.drain)
            size_mb = queue.summary().db_bytes / 1024 / 1024
        started = time.perf_counter()
        with EventQueue.open(drain_db) as queue:  # start-up runs the bounded check
            opened = time.perf_counter() - started
            events, batches, took = bench_drain(queue)
            assert queue.summary().pending == 0
        print(f"open (bounded start-up check): {args.drain} events, {size_mb:.0f} MiB: "
              f"{opened:.2f} s")
        print(f"take_batch+ack: {events} events in {batches} batches in {took:.2f} s = "
              f"{events / took:.0f} events/s ({took / batches * 1000:.1f} ms per batch)")


if __name__ == "__main__":
    main()
