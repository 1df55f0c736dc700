"""Drain benchmark: a backlog of events through mosquitto to the city service.

    uv run python scripts/bench_drain.py             # 100,000 events (goal: >= 5,000 ev/s,
    uv run python scripts/bench_drain.py --events 5000   # sync RSS growth <= 20 MB)

Fills a terminal queue (the real EventQueue, one durable append per event, as taps do),
starts the dev broker (TLS, client certificates, ACL) and the city service (`sukumo-city
run` on a throw-away PostgreSQL, reader/devtools/postgres.py), then
runs the sync process (`sukumo-reader sync`) and measures, until every event is acked
(the terminal queue is empty): events per second, and the sync process's RSS growth
(peak during the drain minus its RSS when the drain started).

Then, on the same broker, side by side: the same backlog drained by the sync process
against a bare acking subscriber, and by a bare paho publisher (same window, batches and
TLS) against that subscriber. Their ratio is `drain_vs_bare_ratio` (goal >= 0.5): what
the sync's own work (SQLite marks and acks, the loop) costs next to moving the bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from reader.config import Settings  # noqa: E402
from reader.devtools.broker import DevBroker  # noqa: E402
from reader.devtools.postgres import DevPostgres  # noqa: E402
from reader.queue import EventQueue  # noqa: E402
from reader.queue.batching import fill as batch_fill  # noqa: E402
from reader.sync.endpoint import tls_context  # noqa: E402
from reader.sync.window import SendWindow  # noqa: E402
from reader.system.uuid7 import uuid7_str  # noqa: E402
from reader.wire.event import CardRef, Event, Mode, Proof  # noqa: E402
from reader.wire.messages import (  # noqa: E402
    MAX_BYTES,
    MAX_EVENTS,
    build_ack,
    build_batch,
    envelope_bytes,
    parse_ack,
)
from reader.wire.topics import Topics  # noqa: E402

SIDE_BY_SIDE_MIN = 20_000
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


def city_count(dsn: str, sql: str) -> int:
    import psycopg

    with psycopg.connect(dsn) as conn:
        row = conn.execute(sql).fetchone()  # type: ignore[arg-type]  # our constant SQL
    return int(row[0]) if row else 0


def start_city(broker: DevBroker, workdir: Path) -> tuple[DevPostgres, subprocess.Popen[bytes]]:
    """A throw-away PostgreSQL and `sukumo-city run` on it, subscribed."""
    pg = DevPostgres(Path(tempfile.mkdtemp(prefix="sukumo-bench-pg-"))).start()
    pg.psql("CREATE DATABASE city")
    rcv, config, ready = broker.receiver, workdir / "city.toml", workdir / "receiver.ready"
    config.write_text(
        f'[database]\ndsn = "{pg.dsn("city")}"\n[mqtt]\nurl = "{broker.city_url}"\n'
        f'ca_file = "{broker.ca_file}"\ncert_file = "{rcv.cert_file}"\n'
        f'key_file = "{rcv.key_file}"\n[log]\nlevel = "WARNING"\n')
    city = [sys.executable, "-m", "city.cli", "--config", str(config)]
    subprocess.run([*city, "migrate"], check=True, capture_output=True, cwd=REPO)
    receiver = subprocess.Popen([*city, "run", "--ready-file", str(ready)], cwd=REPO)
    while not ready.exists():
        if receiver.poll() is not None:
            raise RuntimeError("sukumo-city run exited (see its output)")
        time.sleep(0.05)
    return pg, receiver


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a running process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def terminal_settings(broker: DevBroker, workdir: Path, tid: str) -> Settings:
    ident = broker.identity(tid)
    return Settings(
        terminal={"id": tid, "muni": broker.muni},
        paths={"state_dir": workdir / tid}, verify={"root_public_key": ROOT_HEX},
        log={"level": "WARNING"},
        mqtt={"url": broker.url, "ca_file": broker.ca_file, "cert_file": ident.cert_file,
              "key_file": ident.key_file})


def sync_process(settings: Settings) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "reader", "sync",
                             "--settings-json", settings.model_dump_json()], cwd=REPO)


def run(events: int, workdir: Path, timeout: float, bare: bool = True) -> dict[str, float]:
    broker = DevBroker(workdir / "broker", terminals=("t-bench",), verbose_log=False,
                       persistence=False).start()
    receiver = sync = None
    pg = None
    try:
        settings = terminal_settings(broker, workdir, "t-bench")
        print(f"filling the queue with {events} events ...", flush=True)
        fill(settings.paths.database, events)
        pg, receiver = start_city(broker, workdir)
        dsn = pg.dsn("city")
        print("draining ...", flush=True)
        t0 = time.monotonic()
        sync = sync_process(settings)
        base = peak = 0
        pending = events
        deadline = t0 + timeout
        while pending and time.monotonic() < deadline:
            time.sleep(0.1)
            rss = rss_kb(sync.pid)
            if not base and city_count(dsn, "SELECT 1 FROM city.events LIMIT 1"):
                base = rss  # the drain has started: imports and connection are done
            peak = max(peak, rss)
            pending = count(settings.paths.database,
                            "SELECT COUNT(*) FROM events WHERE state != 'rejected'")
        elapsed = time.monotonic() - t0
        stored = city_count(dsn, "SELECT count(*) FROM city.events")
        copies = city_count(dsn, "SELECT coalesce(sum(copies), 0) FROM city.event_ids")
        result = {"events": events, "stored": stored, "copies": copies, "pending": pending,
                  "seconds": elapsed, "events_per_s": events / elapsed,
                  "rss_base_mb": base / 1024, "rss_peak_mb": peak / 1024,
                  "rss_growth_mb": (peak - base) / 1024}
        for proc in (sync, receiver):
            stop(proc)
        if bare:
            # At least 20,000 events: CPU is read in 10 ms ticks, and a smaller drain is
            # over in a few of them.
            result.update(run_side_by_side(broker, max(events, SIDE_BY_SIDE_MIN), workdir,
                                           timeout))
        return result
    finally:
        for proc in (sync, receiver):
            stop(proc)
        if pg is not None:
            pg.destroy()
        broker.stop()


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        proc.wait(15)


def run_side_by_side(broker: DevBroker, events: int, workdir: Path,
                     timeout: float) -> dict[str, float]:
    """The sync and the bare publisher, one after the other, against one bare acker. Each
    drain is timed from its first batch reaching the acker to its last event acked."""
    rcv, arrivals = broker.receiver, workdir / "arrivals"
    common = ["--host", broker.host, "--port", str(broker.port), "--ca", str(broker.ca_file),
              "--prefix", broker.prefix]
    # The acker is the city: its certificate comes from the city CA, its listener is the
    # broker's city one (the terminals' listener takes terminal certificates only).
    city = [*common[:2], "--port", str(broker.city_port), *common[4:]]
    acker = subprocess.Popen([sys.executable, __file__, "bare-acker", *city, "--cert",
                              str(rcv.cert_file), "--key", str(rcv.key_file),
                              "--ready-file", str(workdir / "acker.ready"),
                              "--arrivals", str(arrivals)])
    sync = None
    try:
        ready_by = time.monotonic() + 30
        while not (workdir / "acker.ready").exists():
            if acker.poll() is not None or time.monotonic() > ready_by:
                raise RuntimeError("the bare acker did not subscribe (see its output)")
            time.sleep(0.05)
        settings = terminal_settings(broker, workdir, "t-bench-sync")
        fill(settings.paths.database, events)
        sync = sync_process(settings)
        deadline, cpu0 = time.monotonic() + timeout, None
        while (span := acked_span(arrivals, "t-bench-sync", events)) is None:
            if time.monotonic() > deadline:
                raise RuntimeError("sync drain against the bare acker did not finish")
            time.sleep(0.01)  # a small file: this poll costs the drain nothing
            if cpu0 is None and acked_span(arrivals, "t-bench-sync", 0) is not None:
                cpu0 = cpu_s(sync.pid)
        sync_cpu = cpu_s(sync.pid) - (cpu0 or 0.0)
        sync_s = span[1] - span[0]
        wait_until = time.monotonic() + 30  # the last acks applied: the queue is empty
        while count(settings.paths.database, "SELECT COUNT(*) FROM events WHERE state != "
                    "'rejected'") and time.monotonic() < wait_until:
            time.sleep(0.1)
        stop(sync)
        ident = broker.identity("t-bench-bare")
        out = subprocess.run([sys.executable, __file__, "bare-publisher", *common, "--cert",
                              str(ident.cert_file), "--key", str(ident.key_file),
                              "--muni", broker.muni, "--tid", "t-bench-bare",
                              "--events", str(events)], capture_output=True, text=True,
                             check=True, timeout=timeout)
        pub = json.loads(out.stdout.strip().splitlines()[-1])
        span = acked_span(arrivals, "t-bench-bare", events)
        bare_s = span[1] - span[0] if span else pub["end"] - pub["start"]
        sync_rate, bare_rate = events / sync_s, events / bare_s
        return {"sync_vs_acker_events_per_s": sync_rate, "bare_events_per_s": bare_rate,
                "drain_vs_bare_ratio": sync_rate / bare_rate,
                "sync_cpu_us_per_event": sync_cpu / events * 1e6,
                "bare_cpu_us_per_event": pub["cpu_s"] / events * 1e6}
    finally:
        stop(sync)
        stop(acker)


def acked_span(arrivals: Path, tid: str, events: int) -> tuple[float, float] | None:
    """(first batch of `tid` at the acker, the ack that made `events` acked), in
    CLOCK_MONOTONIC (shared by processes); None until then."""
    first, done = None, 0
    if arrivals.exists():
        for line in arrivals.read_text().splitlines():
            name, n, at = line.split()
            if name == tid:
                first = float(at) if first is None else first
                done += int(n)
                if done >= events:
                    return first, float(at)
    return None


# -- the bare pair: what the broker allows ------------------------------------------------
# A paho publisher with nothing but the sync's window (4 batches awaiting PUBACK, 16
# awaiting the city's ack), the same batches (500 events, 256 KiB, the same stored JSON
# built in memory beforehand) and the same TLS broker, against a subscriber that only
# decodes each batch and acks every id. The sync drained against the same subscriber is
# the ratio's numerator: what the sync costs beyond moving the bytes.

def _tls_client(client_id: str, ca: str, cert: str, key: str) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv5)
    client.tls_set_context(tls_context(Path(ca), Path(cert), Path(key)))
    client.max_inflight_messages_set(100)
    client.max_queued_messages_set(0)
    return client


def bare_acker(args: argparse.Namespace) -> int:
    """Subscribe to every terminal's events; ack each batch's ids at once (no storage)."""
    client = _tls_client(f"bare-acker-{os.getpid()}", args.ca, args.cert, args.key)
    with open(args.arrivals, "a", buffering=1) as log:  # a line per batch: tid, events, when

        def on_message(c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
            doc = json.loads(msg.payload)
            ids = [e["id"] for e in doc["events"]]
            c.publish(msg.topic[: -len("events")] + "acks", build_ack(doc["batch"], ids),
                      qos=1)
            log.write(f"{doc['tid']} {len(ids)} {time.monotonic()}\n")

        client.on_connect = lambda c, *_: c.subscribe(f"{args.prefix}/+/+/events", 1)
        client.on_message = on_message
        client.on_subscribe = lambda *_: Path(args.ready_file).write_text("ready")
        client.connect(args.host, args.port, keepalive=30, clean_start=True)
        signal.signal(signal.SIGTERM, lambda *_: client.disconnect())
        client.loop_forever()
    return 0


def bare_publisher(args: argparse.Namespace) -> int:
    """Publish `events` events in batches through the window; print seconds and CPU."""
    topics = Topics(args.prefix, args.muni, args.tid)
    rows = [(n + 1, e.id, body, len(body.encode())) for n in range(args.events)
            for e in [event(n).with_seq(n + 1)] for body in [e.dumps()]]
    batches: list[tuple[str, bytes]] = []
    while rows:
        batch_id = uuid7_str()
        chosen = batch_fill(iter(rows), MAX_EVENTS, MAX_BYTES - envelope_bytes(args.tid, batch_id))
        rows = rows[len(chosen):]
        batches.append((batch_id, build_batch(args.tid, batch_id, [r[2] for r in chosen])))
    window = SendWindow(ack_timeout_s=3600.0)
    client = _tls_client(args.tid, args.ca, args.cert, args.key)
    subscribed = threading.Event()
    acked = [0]
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_connect = lambda c, *_: c.subscribe(topics.acks, 1)
    client.on_publish = lambda _c, _u, mid, *_: window.puback(mid)

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        ack = parse_ack(msg.payload)
        if window.acked(ack.batch):
            acked[0] += len(ack.ids)

    client.on_message = on_message
    client.connect(args.host, args.port, keepalive=30, clean_start=True)
    while not subscribed.is_set():
        client.loop(timeout=0.1)
    cpu0, t0 = time.process_time(), time.monotonic()
    todo = iter(batches)
    left = len(batches)
    while acked[0] < args.events:
        while left and window.can_send():
            batch_id, payload = next(todo)
            left -= 1
            window.sent(client.publish(topics.events, payload, qos=1).mid, batch_id, 0.0)
        client.loop(timeout=0.1)
    end, cpu = time.monotonic(), time.process_time() - cpu0
    client.disconnect()
    print(json.dumps({"start": t0, "end": end, "cpu_s": cpu}))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["bare-acker"], ["bare-publisher"]):
        return bare_main(argv)
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
    print(f"side by side, one bare acker: sync {r['sync_vs_acker_events_per_s']:.0f} ev/s "
          f"({r['sync_cpu_us_per_event']:.1f} us CPU/event), bare paho publisher "
          f"{r['bare_events_per_s']:.0f} ev/s ({r['bare_cpu_us_per_event']:.1f} us CPU/event):"
          f" ratio {r['drain_vs_bare_ratio']:.2f} (goal >= 0.5)")
    ok = r["pending"] == 0 and r["stored"] == r["events"]
    return 0 if ok else 1


def bare_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="the bare pair of the drain benchmark")
    parser.add_argument("role", choices=("bare-acker", "bare-publisher"))
    for name in ("--host", "--ca", "--cert", "--key", "--prefix"):
        parser.add_argument(name, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ready-file", default="")
    parser.add_argument("--arrivals", default="")
    parser.add_argument("--muni", default="")
    parser.add_argument("--tid", default="")
    parser.add_argument("--events", type=int, default=0)
    args = parser.parse_args(argv)
    return bare_acker(args) if args.role == "bare-acker" else bare_publisher(args)


if __name__ == "__main__":
    sys.exit(main())
