"""City intake benchmark: a backlog of many terminals drained into PostgreSQL.

    .venv/bin/python scripts/bench_city.py                       # 50 terminals, 20,000 events
    .venv/bin/python scripts/bench_city.py --terminals 200 --events 100000 --json

Side by side on one broker (TLS, one client certificate per terminal, the ACL) and one
throw-away PostgreSQL: the same backlog, published at once by every terminal's own MQTT
session, drained by one `sukumo-city run`, by two in one `$share` group, and by a bare
paho subscriber that writes the same rows with psycopg (`executemany`, one transaction
per batch) and acks. Each run is timed from the first publish to the last ack; each ends
with every event stored once. `city_intake_vs_bare_ratio` = one instance / bare.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from reader.devtools.broker import DevBroker  # noqa: E402
from reader.devtools.postgres import DevPostgres  # noqa: E402
from reader.sync.endpoint import tls_context  # noqa: E402
from reader.system.uuid7 import uuid7_str  # noqa: E402
from reader.wire.event import CardRef, Event, Mode, Proof  # noqa: E402
from reader.wire.messages import build_ack, build_batch, parse_batch  # noqa: E402
from reader.wire.topics import Topics  # noqa: E402

BATCH = 100
MAX_TERMINALS = 250  # one publishing process: see main()
BARE_TABLE = ("CREATE TABLE IF NOT EXISTS bare (id uuid PRIMARY KEY, muni text, tid text, "
              "seq bigint, at timestamptz, body jsonb)")
BARE_INSERT = ("INSERT INTO bare (id, muni, tid, seq, at, body) VALUES (%s, %s, %s, %s, "
               "to_timestamp(%s / 1000.0), %s) ON CONFLICT (id) DO NOTHING")


def backlog(tids: list[str], events: int) -> dict[str, list[tuple[bytes, list[str]]]]:
    """Per terminal, its batches (payload, ids), `events` in all."""
    out: dict[str, list[tuple[bytes, list[str]]]] = {t: [] for t in tids}
    per = max(1, events // len(tids))
    for tid in tids:
        bodies = [Event(id=uuid7_str(), at_ms=int(time.time() * 1000), clock_synced=True,
                        mode=Mode.CHECKIN, facility="sukumo-library", reason=None,
                        card=CardRef("392081", f"M{n:08d}", "04a1b2c3d4e5f607", "member"),
                        proof=Proof("AAECAwQFBgcICQoLDA0ODw", "A" * 86),
                        seq=n + 1).to_json() for n in range(per)]
        for at in range(0, per, BATCH):
            part = bodies[at:at + BATCH]
            out[tid].append((build_batch(tid, uuid7_str(), [json.dumps(e) for e in part]),
                             [e["id"] for e in part]))
    return out


def drain(broker: DevBroker, batches: dict[str, list[tuple[bytes, list[str]]]],
          timeout: float) -> float:
    """Every terminal publishes its batches at once; seconds until every id is acked."""
    wanted = sum(len(ids) for b in batches.values() for _p, ids in b)
    acked: set[str] = set()
    lock, done = threading.Lock(), threading.Event()
    clients = []

    def on_ack(_c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        with lock:
            acked.update(json.loads(msg.payload)["ids"])
            if len(acked) >= wanted:
                done.set()

    subscribed = threading.Semaphore(0)
    for tid in batches:
        ident = broker.identity(tid)
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=tid, protocol=mqtt.MQTTv5)
        client.tls_set_context(tls_context(broker.ca_file, ident.cert_file, ident.key_file))
        client.on_message = on_ack
        client.on_subscribe = lambda *_a: subscribed.release()
        client.connect(broker.host, broker.port)
        client.loop_start()
        client.subscribe(Topics(broker.prefix, broker.muni, tid).acks, 1)
        clients.append((tid, client))
    for _tid in batches:
        subscribed.acquire(timeout=30)
    t0 = time.monotonic()
    for tid, client in clients:
        topic = Topics(broker.prefix, broker.muni, tid).events
        for payload, _ids in batches[tid]:
            client.publish(topic, payload, qos=1)
    finished = done.wait(timeout)
    took = time.monotonic() - t0
    for _tid, client in clients:
        client.disconnect()
        client.loop_stop()
    if not finished:
        raise RuntimeError(f"only {len(acked)} of {wanted} events acked in {timeout} s")
    return took


def city_config(broker: DevBroker, dsn: str, path: Path, name: str) -> Path:
    rcv = broker.receiver
    path.write_text(
        f'[database]\ndsn = "{dsn}"\n[mqtt]\nurl = "{broker.city_url}"\n'
        f'ca_file = "{broker.ca_file}"\ncert_file = "{rcv.cert_file}"\n'
        f'key_file = "{rcv.key_file}"\nclient_id = "{name}"\n[log]\nlevel = "WARNING"\n')
    return path


def start(cmd: list[str], ready: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(cmd, cwd=REPO)
    while not ready.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd} exited ({proc.returncode})")
        time.sleep(0.05)
    return proc


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(15)


def run_city(broker: DevBroker, pg: DevPostgres, work: Path, instances: int,
             batches: dict, timeout: float) -> float:
    db = f"city_{instances}"
    pg.psql(f"CREATE DATABASE {db}")
    configs = [city_config(broker, pg.dsn(db), work / f"{db}-{n}.toml", f"city-{db}-{n}")
               for n in range(instances)]
    city = [sys.executable, "-m", "city.cli", "--config"]
    subprocess.run([*city, str(configs[0]), "migrate"], check=True, capture_output=True)
    procs = [start([*city, str(c), "run", "--ready-file", str(c.with_suffix(".ready"))],
                   c.with_suffix(".ready")) for c in configs]
    try:
        took = drain(broker, batches, timeout)
    finally:
        stop(procs)
    wanted = sum(len(ids) for b in batches.values() for _p, ids in b)
    stored = int(pg.psql("SELECT count(*) FROM city.events", db).strip())
    assert stored == wanted, f"{stored} stored of {wanted}"
    return took


def run_bare(broker: DevBroker, pg: DevPostgres, work: Path, batches: dict,
             timeout: float) -> float:
    pg.psql("CREATE DATABASE bare")
    ready = work / "bare.ready"
    rcv = broker.receiver
    proc = start([sys.executable, __file__, "bare", "--dsn", pg.dsn("bare"),
                  "--host", broker.host, "--port", str(broker.city_port),
                  "--ca", str(broker.ca_file), "--cert", str(rcv.cert_file),
                  "--key", str(rcv.key_file), "--ready-file", str(ready)], ready)
    try:
        return drain(broker, batches, timeout)
    finally:
        stop([proc])


def bare(args: argparse.Namespace) -> int:
    """The bare intake: paho's thread parses, inserts (one transaction), commits, acks."""
    conn = psycopg.connect(args.dsn)
    conn.execute(BARE_TABLE)
    conn.commit()

    def on_message(client: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        _p, muni, tid, _leaf = msg.topic.rsplit("/", 3)
        batch = parse_batch(msg.payload)
        with conn.cursor() as cur:
            cur.executemany(BARE_INSERT, [(e["id"], muni, tid, e["seq"], e["at_ms"],
                                           json.dumps(e)) for e in batch.events])
        conn.commit()
        client.publish(f"sukumo/v1/{muni}/{tid}/acks",
                       build_ack(batch.batch, [e["id"] for e in batch.events]), qos=1)

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bare-intake",
                         protocol=mqtt.MQTTv5)
    client.tls_set_context(tls_context(Path(args.ca), Path(args.cert), Path(args.key)))
    client.on_message = on_message
    client.on_subscribe = lambda *_a: Path(args.ready_file).write_text("ok")
    client.connect(args.host, args.port)
    client.subscribe("$share/bare/sukumo/v1/+/+/events", 1)
    client.loop_forever()  # until the benchmark's SIGTERM
    return 0


def run(terminals: int, events: int, timeout: float,
        runs: tuple[str, ...] = ("1", "2", "bare")) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="sukumo-bench-city-"))
    tids = [f"t-{n:05d}" for n in range(terminals)]
    broker = DevBroker(work / "broker", terminals=tuple(tids), verbose_log=False,
                       persistence=False).start()
    pg = DevPostgres(Path(tempfile.mkdtemp(prefix="sukumo-bench-city-pg-"))).start()
    try:
        result: dict[str, float] = {"terminals": terminals}
        for name, runner in (("1", lambda b: run_city(broker, pg, work, 1, b, timeout)),
                             ("2", lambda b: run_city(broker, pg, work, 2, b, timeout)),
                             ("bare", lambda b: run_bare(broker, pg, work, b, timeout))):
            if name not in runs:
                continue
            batches = backlog(tids, events)  # fresh ids for each run
            total = sum(len(ids) for b in batches.values() for _p, ids in b)
            result["events"] = total
            result[f"city_intake_events_per_s_{name}"] = total / runner(batches)
            print(f"{name}: {result[f'city_intake_events_per_s_{name}']:.0f} events/s",
                  flush=True)
        if {"1", "bare"} <= set(runs):
            result["city_intake_vs_bare_ratio"] = (result["city_intake_events_per_s_1"]
                                                   / result["city_intake_events_per_s_bare"])
        return result
    finally:
        pg.destroy()
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bare"]:
        parser = argparse.ArgumentParser()
        for name in ("--dsn", "--host", "--ca", "--cert", "--key", "--ready-file"):
            parser.add_argument(name, required=True)
        parser.add_argument("--port", type=int, required=True)
        return bare(parser.parse_args(argv[1:]))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--terminals", type=int, default=50)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--runs", default="1,2,bare", help="which of 1,2,bare (a day: 1)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.terminals > MAX_TERMINALS:
        parser.error(f"at most {MAX_TERMINALS} terminals: each paho client holds three file "
                     "descriptors and paho's select() cannot watch one above 1023 (the "
                     "terminals are not yet spread over several publisher processes)")
    result = run(args.terminals, args.events, args.timeout, tuple(args.runs.split(",")))
    print(json.dumps(result) if args.json or args.runs != "1,2,bare" else
          f"one instance {result['city_intake_events_per_s_1']:.0f} ev/s, two "
          f"{result['city_intake_events_per_s_2']:.0f} ev/s, bare "
          f"{result['city_intake_events_per_s_bare']:.0f} ev/s: ratio "
          f"{result['city_intake_vs_bare_ratio']:.2f} (goal >= 0.5; two >= one)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
