"""City intake benchmark: many terminals' backlogs through mosquitto into PostgreSQL.

    uv run python scripts/bench_city.py                      # the full run (a few minutes)
    uv run python scripts/bench_city.py --smoke              # small, for CI

A private PostgreSQL (reader/devtools/postgres.py) and mosquitto (reader/devtools/broker.py, TLS,
client certificates, the mqtt-v1 §6 ACL) on loopback. A load process plays the terminals:
each connects with its own client certificate (CN = tid), publishes its backlog as
mqtt-v1 §2 batches, waits for the acks of every batch and disconnects; several terminals
at a time. Measured side by side in one run, each on a fresh database:

- `city_intake_events_per_s_1` / `_2`: one and two `sukumo-city run` instances in one
  `$share` group, events acked per second (first publish to last ack);
- `city_intake_vs_bare_ratio`: one instance against a bare paho subscriber that writes the
  same rows with psycopg (executemany, one transaction per batch) and acks — what the
  city's own work (validation, copies, seq ranges, terminals) costs next to the bytes;
- `city_prefecture_day_s`: a prefecture's day (3,000 terminals' sessions, 300,000 taps,
  `--terminals`/`--taps` to change) through two instances, with `city_prefecture_lost`
  and `city_prefecture_stored_twice` counted in the database (both must be 0).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from reader.devtools.broker import DevBroker  # noqa: E402
from reader.devtools.postgres import DevPostgres  # noqa: E402
from reader.sync.endpoint import tls_context  # noqa: E402
from reader.system.uuid7 import uuid7_str  # noqa: E402
from reader.wire.event import CardRef, Event, Mode, Proof  # noqa: E402
from reader.wire.messages import build_batch  # noqa: E402
from reader.wire.topics import Topics  # noqa: E402

MUNI = "392081"
PREFIX = "sukumo/v1"
BATCH = 100  # events per batch: what a terminal's backlog sends (mqtt-v1 §2 allows 500)


# -- the terminals (a subprocess: `bench_city.py load ...`) --------------------------------

def _event(n: int, seq: int) -> Event:
    return Event(id=uuid7_str(), at_ms=time.time_ns() // 1_000_000, clock_synced=True,
                 mode=Mode.CHECKIN, facility=f"facility-{n % 40:02d}", reason=None,
                 card=CardRef(MUNI, f"M{n:08d}", "04a1b2c3d4e5f607", "member"),
                 proof=Proof("AAECAwQFBgcICQoLDA0ODw", "A" * 86), seq=seq)


def _terminal(tid: str, n_events: int, certs: Path, host: str, port: int,
              ack_timeout_s: float, give_up_s: float) -> tuple[int, int]:
    """One terminal's session, as the sync does it: connect, publish the backlog, send
    again what is not acked within the ack timeout, until every batch is acked (or
    `give_up_s`). (events acked, batches sent again)."""
    acked: set[str] = set()
    done = threading.Event()
    payloads: dict[str, bytes] = {}
    sizes: dict[str, int] = {}
    for start in range(0, n_events, BATCH):
        bodies = [_event(i, i + 1).dumps() for i in range(start, min(n_events, start + BATCH))]
        batch_id = uuid7_str()
        sizes[batch_id] = len(bodies)
        payloads[batch_id] = build_batch(tid, batch_id, bodies)

    def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        ack = json.loads(msg.payload)
        if ack.get("batch") in payloads:
            acked.add(ack["batch"])
            if len(acked) == len(payloads):
                done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=tid, protocol=mqtt.MQTTv5)
    client.tls_set_context(tls_context(certs / "ca.pem", certs / f"{tid}.pem",
                                       certs / f"{tid}.key"))
    client.max_inflight_messages_set(len(payloads) + 1)
    client.on_message = on_message
    topics = Topics(PREFIX, MUNI, tid)
    client.connect(host, port, keepalive=30, clean_start=True)
    client.loop_start()  # paho's own thread does every socket write (one TLS stream)
    resent = 0
    try:
        client.subscribe(topics.acks, qos=1)
        deadline = time.monotonic() + give_up_s
        first = True
        while not done.is_set() and time.monotonic() < deadline:
            for batch_id, payload in payloads.items():
                if batch_id not in acked:
                    client.publish(topics.events, payload, qos=1)
                    resent += 0 if first else 1
            first = False
            done.wait(ack_timeout_s)
        return sum(n for b, n in sizes.items() if b in acked), resent
    finally:
        client.disconnect()
        client.loop_stop()


def load_main(args: argparse.Namespace) -> int:
    """Play `args.terminals` terminals, `args.parallel` at a time; print one JSON line."""
    todo: queue.Queue[str] = queue.Queue()
    for i in range(args.terminals):
        todo.put(f"t-{i:05d}")
    acked = [0] * args.parallel
    resent = [0] * args.parallel
    per_terminal = args.events // args.terminals

    def worker(k: int) -> None:
        while True:
            try:
                tid = todo.get_nowait()
            except queue.Empty:
                return
            got, again = _terminal(tid, per_terminal, args.certs, args.host, args.port,
                                   args.ack_timeout, args.timeout)
            acked[k] += got
            resent[k] += again

    start = time.monotonic()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(args.parallel)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"seconds": time.monotonic() - start, "acked": sum(acked),
                      "sent": per_terminal * args.terminals, "batches_resent": sum(resent)}))
    return 0


# -- the bare subscriber (a subprocess: `bench_city.py bare ...`) --------------------------

BARE_TABLE = """CREATE TABLE IF NOT EXISTS bare_events (
    id uuid PRIMARY KEY, muni text, tid text, seq bigint, at timestamptz, body jsonb)"""


def bare_main(args: argparse.Namespace) -> int:
    """A bare paho subscriber: json.loads, one executemany per batch in one transaction,
    commit, ack. No validation, no copies counted, no seq ranges."""
    import psycopg

    inbox: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bare-acker",
                         protocol=mqtt.MQTTv5)
    client.tls_set_context(tls_context(args.ca, args.cert, args.key))
    client.max_inflight_messages_set(100)
    client.on_message = lambda _c, _u, msg: inbox.put(msg)
    client.on_connect = lambda c, *_: c.subscribe(f"$share/bare/{PREFIX}/+/+/events", qos=1)

    def store() -> None:
        with psycopg.connect(args.dsn) as conn:
            conn.execute(BARE_TABLE)
            conn.commit()
            while True:
                msg = inbox.get()
                batch = json.loads(msg.payload)
                _, muni, tid, _ = msg.topic.rsplit("/", 3)
                with conn.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO bare_events VALUES (%s, %s, %s, %s, %s, %s) "
                        "ON CONFLICT (id) DO NOTHING",
                        [(e["id"], muni, tid, e["seq"], e["at"], json.dumps(e))
                         for e in batch["events"]])
                conn.commit()
                client.publish(Topics(PREFIX, muni, tid).acks, json.dumps(
                    {"v": 1, "batch": batch["batch"], "ids": [e["id"] for e in batch["events"]],
                     "rejected": []}), qos=1)

    for _ in range(2):  # as many workers as the city's default
        threading.Thread(target=store, daemon=True).start()
    host, port = args.url.split("://")[1].split(":")
    client.connect(host, int(port))
    # paho's thread writes every packet: publish() from the workers only queues, so one
    # TLS stream is never used by two threads at once.
    client.loop_start()
    args.ready.write_text("ready")
    threading.Event().wait()
    return 0


# -- the run (the parent) ------------------------------------------------------------------

class Setup:
    """PostgreSQL and mosquitto for the whole run; the terminals' certificates in one dir."""

    def __init__(self, work: Path, terminals: int) -> None:
        self.work = work
        # In /tmp, not under `work`: the cluster's system user must reach its directory.
        self.pg = DevPostgres(Path(tempfile.mkdtemp(prefix="sukumo-bench-pg-"))).start()
        self.broker = DevBroker(work / "broker", terminals=(), verbose_log=False)
        self.broker.start()
        self.certs = work / "certs"
        self.certs.mkdir()
        (self.certs / "ca.pem").write_bytes(self.broker.ca_file.read_bytes())
        for i in range(terminals):
            ident = self.broker.identity(f"t-{i:05d}")
            os.link(ident.cert_file, self.certs / f"{ident.cn}.pem")
            os.link(ident.key_file, self.certs / f"{ident.cn}.key")
        self.runs = 0

    def database(self) -> str:
        self.runs += 1
        self.admin(f"CREATE DATABASE bench_{self.runs}")
        return self.pg.dsn(f"bench_{self.runs}")

    def admin(self, sql: str, dbname: str = "postgres") -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.pg.dsn(dbname), autocommit=True) as conn:
            cur = conn.execute(sql)  # type: ignore[arg-type]  # the bench's own statements
            return cur.fetchall() if cur.description else []

    def city_config(self, dsn: str) -> Path:
        ident = self.broker.receiver
        path = self.work / f"city-{self.runs}.toml"
        path.write_text(
            f"[database]\ndsn = {dsn!r}\n[mqtt]\nurl = {self.broker.city_url!r}\n"
            f"ca_file = '{self.broker.ca_file}'\ncert_file = '{ident.cert_file}'\n"
            f"key_file = '{ident.key_file}'\ngroup = 'bench'\n[log]\nlevel = 'WARNING'\n")
        return path

    def close(self) -> None:
        self.broker.stop()
        self.pg.destroy()


def _start(cmd: list[str], ready: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=out, cwd=REPO)
    deadline = time.monotonic() + 30
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{cmd[2:4]} did not start: see {log}")
        time.sleep(0.05)
    return proc


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def _load(setup: Setup, terminals: int, events: int, parallel: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "load", "--terminals", str(terminals), "--events",
         str(events), "--parallel", str(parallel), "--certs", str(setup.certs),
         "--host", setup.broker.host, "--port", str(setup.broker.port)],
        capture_output=True, text=True, timeout=3600, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def city_run(setup: Setup, instances: int, terminals: int, events: int,
             parallel: int) -> dict[str, Any]:
    from city.db import migrate

    dsn = setup.database()
    migrate(dsn)
    config = setup.city_config(dsn)
    procs = []
    try:
        for k in range(instances):
            ready = setup.work / f"city-{setup.runs}-{k}.ready"
            procs.append(_start([sys.executable, "-m", "city.cli", "--config", str(config),
                                 "run", "--ready-file", str(ready)], ready,
                                setup.work / f"city-{setup.runs}-{k}.log"))
        result = _load(setup, terminals, events, parallel)
    finally:
        _stop(procs)
    rows, distinct = setup.admin("SELECT count(*), count(DISTINCT id) FROM city.events",
                                 dbname=f"bench_{setup.runs}")[0]
    return {**result, "rows": rows, "distinct": distinct}


def bare_run(setup: Setup, terminals: int, events: int, parallel: int) -> dict[str, Any]:
    dsn = setup.database()
    ident = setup.broker.receiver
    ready = setup.work / "bare.ready"
    proc = _start([sys.executable, __file__, "bare", "--dsn", dsn, "--url",
                   setup.broker.city_url, "--ca", str(setup.broker.ca_file), "--cert",
                   str(ident.cert_file), "--key", str(ident.key_file), "--ready", str(ready)],
                  ready, setup.work / "bare.log")
    try:
        return _load(setup, terminals, events, parallel)
    finally:
        _stop([proc])


def measure(work: Path, *, terminals: int, events: int, day_terminals: int, day_taps: int,
            parallel: int = 16) -> dict[str, float]:
    setup = Setup(work, max(terminals, day_terminals))
    try:
        one = city_run(setup, 1, terminals, events, parallel)
        two = city_run(setup, 2, terminals, events, parallel)
        bare = bare_run(setup, terminals, events, parallel)
        day = city_run(setup, 2, day_terminals, day_taps, parallel)
    finally:
        setup.close()
    rate = {name: r["acked"] / r["seconds"] for name, r in
            (("one", one), ("two", two), ("bare", bare))}
    return {
        "city_intake_events_per_s_1": rate["one"],
        "city_intake_events_per_s_2": rate["two"],
        "city_intake_bare_events_per_s": rate["bare"],
        "city_intake_vs_bare_ratio": rate["one"] / rate["bare"],
        "city_intake_events": float(one["sent"]),
        "city_prefecture_day_s": day["seconds"],
        "city_prefecture_taps": float(day["sent"]),
        "city_prefecture_terminals": float(day_terminals),
        "city_prefecture_lost": float(day["sent"] - day["distinct"]),
        "city_prefecture_stored_twice": float(day["rows"] - day["distinct"]),
        "city_prefecture_batches_resent": float(day["batches_resent"]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command")
    load = sub.add_parser("load")
    load.add_argument("--terminals", type=int, required=True)
    load.add_argument("--events", type=int, required=True)
    load.add_argument("--parallel", type=int, default=16)
    load.add_argument("--certs", type=Path, required=True)
    load.add_argument("--host", default="127.0.0.1")
    load.add_argument("--port", type=int, required=True)
    load.add_argument("--ack-timeout", type=float, default=30.0)  # the terminal's default
    load.add_argument("--timeout", type=float, default=300.0)
    bare = sub.add_parser("bare")
    for name in ("dsn", "url", "ca", "cert", "key"):
        bare.add_argument(f"--{name}", required=True)
    bare.add_argument("--ready", type=Path, required=True)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--terminals", type=int, default=3000)
    parser.add_argument("--taps", type=int, default=300_000)
    args = parser.parse_args(argv)
    if args.command == "load":
        return load_main(args)
    if args.command == "bare":
        return bare_main(args)
    print(json.dumps(run(smoke=args.smoke, day_terminals=args.terminals, day_taps=args.taps),
                     indent=2))
    return 0


def run(*, smoke: bool, day_terminals: int = 3000, day_taps: int = 300_000,
        ) -> dict[str, float]:
    """The figures of scripts/bench's city part (smoke: small, for CI)."""
    with tempfile.TemporaryDirectory(prefix="sukumo-bench-city-") as tmp:
        if smoke:
            return measure(Path(tmp), terminals=20, events=2_000, day_terminals=50,
                           day_taps=5_000)
        return measure(Path(tmp), terminals=300, events=60_000,
                       day_terminals=day_terminals, day_taps=day_taps)


if __name__ == "__main__":
    sys.exit(main())
