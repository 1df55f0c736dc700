"""What a tap costs the storage, beside a bare SQLite commit of the same row (issue 22).

    uv run python scripts/bench_storage.py [--taps 100] [--json]

On a Pi the SD card's flush, not the CPU, is the cost of a tap (and its wear). Each
figure is measured twice in one run, in the same process, on the same disk:

- a tap: the real tap loop (Terminal.run, as scripts/bench_terminal.py runs it) with a
  card that answers at once, so what is timed and counted is the terminal's own work:
  verify, the mode, the durable commit with its seq and mode state, the sound's start;
- a bare commit: BEGIN IMMEDIATE, one INSERT of the same row (an event of the same
  size and shape) into a table with the queue's own `events` definition (its columns
  and its indexes: by id, which acks need, and by state), COMMIT, on a plain sqlite3
  connection in WAL with synchronous=FULL. That is what SQLite alone needs to store the
  row durably; what a tap writes above it is ours (the seq, the counts, mode state).

Each part runs in a child process under the LD_PRELOAD shim of scripts/io_shim.py (the
counts over the taps in a row, then the commits in a row; the latencies with taps and
commits in turn, one by one, so other jobs on the machine weigh on both alike):
- fsyncs_per_tap / fsyncs_per_bare_commit: fsync + fdatasync calls, counted by the shim;
- bytes_written_per_tap / _bare_commit: /proc/self/io `write_bytes` (what the process
  sent towards the storage, counted when a page is dirtied), the log sent to /dev/null
  (on a terminal it goes to the journal, another process);
- tap_to_chime_ms_p99_sd / bare_commit_ms_p99_sd: the p99 with every fsync made to cost
  10 ms more (the shim sleeps, then syncs): a storage model of an SD card whose cache
  flush takes 10 ms (a class-10 card's typical; a fast SSD's is under 1 ms), so the
  figures show how many flushes a tap waits for, whatever the disk of this machine;
- tap_to_chime_ms_max_sd / bare_commit_ms_max_sd: the slowest of each, 500 of each in
  turn: enough that both pass SQLite's 1,000-page checkpoint at least once. A bare
  commit pays it inside the commit; a tap does not (reader/queue/checkpoint.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
sys.path[:0] = [str(SCRIPTS.parent), str(SCRIPTS)]

import io_shim  # noqa: E402

SD_FSYNC_MS = 10.0


def write_bytes() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    raise RuntimeError("no write_bytes in /proc/self/io")


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(0.99 * len(ordered)) - 1))]


def _counters() -> tuple[int, int]:
    syncs = io_shim.syncs()
    if syncs is None:
        raise RuntimeError("not under the I/O shim (LD_PRELOAD)")
    return syncs, write_bytes()


class BareTable:
    """A plain sqlite3 connection in WAL + synchronous=FULL with the queue's own `events`
    definition (columns and indexes); `commit()` stores one row of the same size."""

    def __init__(self, path: Path) -> None:
        from reader.queue.schema import MIGRATIONS

        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = FULL")
        for migration in (MIGRATIONS[0], MIGRATIONS[2]):  # events, its indexes, `urgent`
            for sql in migration:
                if "events" in sql and "seq_counter" not in sql:
                    self.conn.execute(sql)
        self.n = 0

    def commit(self) -> float:
        """BEGIN IMMEDIATE, one INSERT, COMMIT: ms."""
        from bench_queue import make_event

        self.n += 1
        event = make_event(self.n).with_seq(self.n)
        body = event.dumps()
        row = (self.n, event.id, event.at, body, len(body), "bench", self.n, 1)
        started = time.perf_counter()
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.execute("INSERT INTO events (seq, id, at, body, wire_bytes, boot_id, "
                          "mono_ns, clock_synced) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row)
        self.conn.execute("COMMIT")
        return (time.perf_counter() - started) * 1000


def counts(work: Path, count: int) -> dict:
    """What a tap (the whole loop, per tap) and a bare commit write and flush."""
    import bench_terminal as bt

    probes: list[tuple[int, int]] = []
    bt.measure_tap_to_chime(work / "taps", count, 0.0, 0.0, log_to=os.devnull,
                            probe=lambda: probes.append(_counters()) or 0.0)
    (s0, b0), (s1, b1) = probes
    tap = {"syncs": (s1 - s0) / count, "bytes": (b1 - b0) / count}
    table = BareTable(work / "bare.sqlite3")
    for _ in range(10):  # warm-up, as the tap loop's first tap
        table.commit()
    s0, b0 = _counters()
    for _ in range(count):
        table.commit()
    s1, b1 = _counters()
    table.conn.close()
    return {"tap": tap, "bare": {"syncs": (s1 - s0) / count, "bytes": (b1 - b0) / count}}


def latencies(work: Path, count: int) -> dict:
    """Taps and bare commits in turn, one by one (in either order), so a load change on
    this machine hits both alike: the p99 of each."""
    import bench_terminal as bt

    table = BareTable(work / "bare.sqlite3")
    taps: list[float] = []
    commits: list[float] = []
    with bt.tap_logging(os.devnull) as recorded:
        loop = bt.TapLoop(bt.prepare(work / "terminal"), recorded, 0.0, 0.0)
        try:
            loop.tap()  # warm-up: imports on first use, the sound device
            table.commit()
            for n in range(count):
                for kind in (("tap", "bare") if n % 2 else ("bare", "tap")):
                    if kind == "tap":
                        taps.append(loop.tap()[0])
                    else:
                        commits.append(table.commit())
                    time.sleep(0.05)  # a citizen takes longer to bring the next card
        finally:
            loop.close()
            table.conn.close()
    return {"tap_p99_ms": _p99(taps), "bare_p99_ms": _p99(commits),
            "tap_max_ms": max(taps), "bare_max_ms": max(commits)}


def _run_child(work: Path, count: int, lib: Path, part: str, delay_us: int) -> dict:
    env = io_shim.preload_env(lib, sync_delay_us=str(delay_us))
    out = subprocess.run([sys.executable, __file__, "--child", part, "--dir", str(work),
                          "--taps", str(count)], env=env, capture_output=True, text=True,
                         timeout=600)
    if out.returncode:
        raise RuntimeError(f"bench_storage child failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(work: Path, count: int) -> dict:
    """The six keys of issue 22 and their three comparisons. `count` taps and commits:
    enough (1,000) that both sides pay their share of WAL checkpoints (one per 1,000
    pages written: a tap writes more pages than a bare commit, so it pays more often)."""
    work.mkdir(parents=True, exist_ok=True)
    lib = io_shim.build(work / "shim")
    counted = _run_child(work / "count", count, lib, "count", 0)
    # 500 of each in turn: past one checkpoint of the bare table too (its max).
    sd = _run_child(work / "sd", min(count, 500), lib, "latency", int(SD_FSYNC_MS * 1000))
    tap, bare = counted["tap"], counted["bare"]
    return {
        "fsyncs_per_tap": tap["syncs"], "fsyncs_per_bare_commit": bare["syncs"],
        "bytes_written_per_tap": tap["bytes"], "bytes_written_per_bare_commit": bare["bytes"],
        "storage_model_fsync_ms": SD_FSYNC_MS,
        "tap_to_chime_ms_p99_sd": sd["tap_p99_ms"], "bare_commit_ms_p99_sd": sd["bare_p99_ms"],
        "tap_to_chime_ms_max_sd": sd["tap_max_ms"], "bare_commit_ms_max_sd": sd["bare_max_ms"],
        "fsyncs_tap_vs_bare": tap["syncs"] / bare["syncs"],
        "bytes_written_tap_vs_bare": tap["bytes"] / bare["bytes"],
        "tap_over_bare_ms_p99_sd": sd["tap_p99_ms"] - sd["bare_p99_ms"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--taps", type=int, default=1000)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", choices=("count", "latency"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.dir.mkdir(parents=True)
        part = latencies if args.child == "latency" else counts
        print(json.dumps(part(args.dir, args.taps)))
        return
    # Under the repository by default, not /tmp: the disk the figures are about.
    with tempfile.TemporaryDirectory(prefix="bench-storage-", dir=args.dir or Path.cwd()) as tmp:
        result = run(Path(tmp), args.taps)
    print(json.dumps(result) if args.json else "\n".join(
        f"{key:32} {value:.3f}" for key, value in result.items()))


if __name__ == "__main__":
    main()
