"""Does the terminal do the same work whatever its backlog? (issue 13, item 3)

    uv run python scripts/bench_backlog.py [--backlog 1000000] [--taps 3000] [--json]

Two terminals prepared alike (scripts/bench_terminal.py), one with an empty queue and one
with `--backlog` events waiting for the city (written fast: synchronous=OFF and
executemany, the rows exactly as `append` writes them, so the event_counts triggers
and the seq mark are what a real backlog leaves):

- tap_ms_p99_backlog_0 / _1m: tap to sound start through the real tap loop
  (Terminal.run in this process, real SQLite, real ALSA on whatever device
  ALSA_CONFIG_PATH names) with a card that answers at once, so the figure is the
  terminal's own work: verify, the mode, the durable commit, the status written every
  2 s, and the background integrity check (which waits for a quiet moment). The two
  terminals run side by side and take the taps in turn, one by one, so a load change
  on the machine hits both alike.
- ready_s_backlog_1m (and _0): a real `sukumo-reader run` process from spawn to READY=1
  on NOTIFY_SOCKET, median of 3 (the file is in the page cache: a cold SD card adds
  the reads of the start-up check, a few pages per tree).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
sys.path[:0] = [str(SCRIPTS.parent), str(SCRIPTS)]

import bench_terminal as bt  # noqa: E402
from bench_queue import make_event  # noqa: E402

from reader.queue import EventQueue  # noqa: E402
from reader.system.uuid7 import uuid7_str  # noqa: E402
from reader.wire.messages import body_bytes  # noqa: E402

# A backlog of a million events takes about 0.8 GB: room in the budget for it.
QUEUE_TOML = "\n[queue]\nwarn_mb = 2048\nbudget_mb = 4096\n"
_INSERT = ("INSERT INTO events (seq, id, at, body, wire_bytes, boot_id, mono_ns, "
           "clock_synced) VALUES (?, ?, ?, ?, ?, 'bench', ?, 1)")


def fill_backlog(database: Path, count: int, chunk: int = 20_000) -> None:
    """`count` pending events, each a distinct §2 event (own id and seq) of real size."""
    with EventQueue.open(database, budget_mb=4096) as queue:
        start = queue.summary().last_seq
        template = make_event(0).with_seq(1)
        body = template.dumps()
        marker_id, marker_seq = f'"id":"{template.id}"', '"seq":1,'
        assert marker_id in body and marker_seq in body
        db = queue._db
        db.execute("PRAGMA synchronous = OFF")
        for first in range(start + 1, start + count + 1, chunk):
            rows = []
            for seq in range(first, min(first + chunk, start + count + 1)):
                event_id = uuid7_str()
                text = body.replace(marker_id, f'"id":"{event_id}"').replace(
                    marker_seq, f'"seq":{seq},')
                rows.append((seq, event_id, template.at, text, body_bytes(text), seq))
            db.execute("BEGIN IMMEDIATE")
            db.conn.executemany(_INSERT, rows)
            db.execute("UPDATE seq_counter SET last_seq = ? WHERE id = 1", (rows[-1][0],))
            db.execute("COMMIT")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.execute("PRAGMA synchronous = FULL")


def _setup(root: Path, backlog: int) -> bt.DaemonSetup:
    setup = bt.prepare(root)
    for config in (setup.config, setup.feed_config):
        config.write_text(config.read_text() + QUEUE_TOML)
    if backlog:
        fill_backlog(setup.database, backlog)
    return setup


def _ready_s(setup: bt.DaemonSetup, runs: int) -> float:
    times = []
    for n in range(runs):
        with bt.Daemon(setup.config, setup.root / f"ready-{n}.log") as daemon:
            times.append(daemon.start())
    return statistics.median(times)


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(0.99 * len(ordered)) - 1))]


def run(work: Path, backlog: int, taps: int, ready_runs: int = 3) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    empty, full = _setup(work / "backlog-0", 0), _setup(work / "backlog-n", backlog)
    # The backlog was written without a flush: ~0.8 GB of dirty pages the kernel would
    # write back 30 s later, in the middle of the taps. A terminal's backlog built over
    # weeks is on its card already.
    os.sync()
    fill_s = time.monotonic() - started
    result: dict = {"backlog_events": backlog, "backlog_fill_s": round(fill_s, 1),
                    "ready_s_backlog_0": _ready_s(empty, ready_runs),
                    "ready_s_backlog_1m": _ready_s(full, ready_runs)}
    totals: dict[str, list[float]] = {"0": [], "1m": []}
    with bt.tap_logging(work / "terminal.log") as recorded:
        loops = {"0": bt.TapLoop(empty, recorded, 0.0, 0.0),
                 "1m": bt.TapLoop(full, recorded, 0.0, 0.0)}
        try:
            for loop in loops.values():
                loop.tap()  # warm-up: imports on first use, the sound device
                time.sleep(0.05)
            for n in range(taps):
                # Tap by tap, in turn (in either order): a load change on this machine
                # hits both queues alike.
                for key in (("0", "1m") if n % 2 else ("1m", "0")):
                    totals[key].append(loops[key].tap()[0])
                    time.sleep(0.05)  # a citizen takes longer to bring the next card
        finally:
            for loop in loops.values():
                loop.close()
    for key, values in totals.items():
        result[f"tap_ms_p50_backlog_{key}"] = statistics.median(values)
        result[f"tap_ms_p99_backlog_{key}"] = _p99(values)
    result["tap_p99_backlog_ratio"] = (result["tap_ms_p99_backlog_1m"]
                                       / result["tap_ms_p99_backlog_0"])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path.cwd() / "bench-backlog")
    parser.add_argument("--backlog", type=int, default=1_000_000)
    parser.add_argument("--taps", type=int, default=3000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args.dir, args.backlog, args.taps)
    print(json.dumps(result) if args.json else "\n".join(
        f"{key:28} {value}" for key, value in result.items()))


if __name__ == "__main__":
    main()
