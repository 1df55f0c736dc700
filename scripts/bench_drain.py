"""Drain benchmark: a backlog of events through mosquitto to the reference city receiver.

    uv run python scripts/bench_drain.py             # 100,000 events (goal: >= 5,000 ev/s,
    uv run python scripts/bench_drain.py --events 5000   # sync RSS growth <= 20 MB)

Fills a terminal queue (the real EventQueue, one durable append per event, as taps do),
starts the dev broker (TLS, client certificates, ACL) and the reference receiver, then
runs the sync process (`sukumo-reader sync`) and measures, until every event is acked
(the terminal queue is empty): events per second, and the sync process's RSS growth
(peak during the drain minus its RSS when the drain started).
"""

from __future__ import annotations

import argparse
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from reader.config import Settings  # noqa: E402
from reader.devtools.broker import DevBroker  # noqa: E402
from reader.queue import EventQueue  # noqa: E402
from reader.system.uuid7 import uuid7_str  # noqa
from reader.wire.event import CardRef, Event, Mode, Proof  # noqa: E402

ROOT_HEX = ("04fbd0ea5bd96b8586f096b43c0753748e9aea493ce75ea2e1a86b572a15d3aa3a3c96371a3a3f5b91"
            "ddcfb18ffcc8e91652cbdfa0ec44d966e80bac6bca0ce8f2")  # the vectors' test root


def event(n: int) -> Event:
    return Event(id=uuid7_str(), at_ms=1_795_000_000_000 + n, clock_synced=True,
                 mode=Mode.CHECKIN, facility="sukumo-library", reason=None,
                 card=CardRef("392081", f"M{n:08d}", "04a1b2c3d4e5f607", "member"),
                 proof=Proof("AAECAwQFBgcICQoLDA0ODw", "A" * 86))


def fill(db: Path, count: int) -> None:
    queue = EventQueue.open(db)
    t0 = time.monotonic()
    for n in range(count):
        queue.append(event(n), boot_id="bench", mono_ns=n)
        if n and n % 20000 == 0:
            print(f"  filled {n} ({n / (time.monotonic() - t0):.0f}/s)", flush=True)
    queue.close()


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def count(db: Path, sql: str) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db, timeout=30) as conn:
        return conn.execute(sql).fetchone()[0]


def run(events: int, workdir: Path, timeout: float) -> dict[str, float]:
    broker = DevBroker(workdir / "broker", terminals=("t-bench",), verbose_log=False,
                       persistence=False).start()
    receiver = sync = None
    try:
        ident = broker.identity("t-bench")
        settings = Settings(
            terminal={"id": "t-bench", "muni": broker.muni},
            paths={"state_dir": workdir / "terminal"}, verify={"root_public_key": ROOT_HEX},
            log={"level": "WARNING"},
            mqtt={"url": broker.url, "ca_file": broker.ca_file, "cert_file": ident.cert_file,
                  "key_file": ident.key_file})
        print(f"filling the queue with {events} events ...", flush=True)
        fill(settings.paths.database, events)
        city_db, ready = workdir / "city.sqlite3", workdir / "receiver.ready"
        rcv = broker.receiver
        receiver = subprocess.Popen(
            [sys.executable, str(REPO / "scripts/city_receiver.py"), "run",
             "--url", broker.city_url,
             "--ca", str(broker.ca_file), "--cert", str(rcv.cert_file), "--key",
             str(rcv.key_file), "--db", str(city_db), "--ready-file", str(ready)],
            env={"CITY_LOG_LEVEL": "WARNING", "PATH": "/usr/bin:/bin"})
        while not ready.exists():
            time.sleep(0.05)
        print("draining ...", flush=True)
        t0 = time.monotonic()
        sync = subprocess.Popen([sys.executable, "-m", "reader", "sync",
                                 "--settings-json", settings.model_dump_json()], cwd=REPO)
        base = peak = 0
        pending = events
        deadline = t0 + timeout
        while pending and time.monotonic() < deadline:
            time.sleep(0.1)
            rss = rss_kb(sync.pid)
            if not base and count(city_db, "SELECT COUNT(*) FROM events"):
                base = rss  # the drain has started: imports and connection are done
            peak = max(peak, rss)
            pending = count(settings.paths.database,
                            "SELECT COUNT(*) FROM events WHERE state != 'rejected'")
        elapsed = time.monotonic() - t0
        stored = count(city_db, "SELECT COUNT(*) FROM events")
        copies = count(city_db, "SELECT COALESCE(SUM(copies), 0) FROM events")
        return {"events": events, "stored": stored, "copies": copies, "pending": pending,
                "seconds": elapsed, "events_per_s": events / elapsed,
                "rss_base_mb": base / 1024, "rss_peak_mb": peak / 1024,
                "rss_growth_mb": (peak - base) / 1024}
    finally:
        for proc in (sync, receiver):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(15)
        broker.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-drain-") as tmp:
        r = run(args.events, args.workdir or Path(tmp), args.timeout)
    print(f"drained {r['events']:.0f} events in {r['seconds']:.1f} s: "
          f"{r['events_per_s']:.0f} events/s (goal >= 5000)")
    print(f"sync process RSS: {r['rss_base_mb']:.1f} MB at drain start, peak "
          f"{r['rss_peak_mb']:.1f} MB, growth {r['rss_growth_mb']:.1f} MB (goal <= 20 MB)")
    print(f"city store: {r['stored']:.0f} events stored once, {r['copies']:.0f} copies "
          f"received; terminal queue left: {r['pending']:.0f}")
    ok = r["pending"] == 0 and r["stored"] == r["events"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
