"""Reference city receiver for mqtt-v1 — a reference for integrators, not a product.

It shows, in one readable file, what a city server must do to receive from any terminal:

* subscribe to `$share/<group>/sukumo/v1/+/+/events` (QoS 1): several instances in one
  group share the load, and a batch may reach any of them;
* store each event in SQLite under a UNIQUE event id, the whole batch in one transaction
  (a second copy of an event only bumps its `copies` counter: at-least-once delivery);
* only THEN publish the ack (§3) on `sukumo/v1/<muni>/<tid>/acks`, naming stored ids and
  the events refused for good (`rejected`, error "schema");
* report gaps in each terminal's `seq` (`gaps` subcommand, and a log line every minute);
* publish signed bundles, retained, on the right topic (`publish-bundle`).

    python scripts/city_receiver.py run --url mqtts://127.0.0.1:8883 --ca ca.pem \\
        --cert city-receiver.pem --key city-receiver.key --db city.sqlite3 --group city
    python scripts/city_receiver.py gaps --db city.sqlite3
    python scripts/city_receiver.py publish-bundle --url ... --ca ... --cert ... --key ... \\
        --signed denylist.cbor   # or --payload denylist.json --signing-key ops.pem --kid 0905

`--drop-first N` makes it drop the first N batches without storing or acking them: a fault
injection for tests (terminals must send them again after the ack timeout).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from reader.errors import SyncError
from reader.sync.endpoint import tls_context
from reader.system.logs import fields, setup_logging
from reader.wire.event import rfc3339_ms
from reader.wire.messages import build_ack, event_error, parse_batch
from reader.wire.topics import Topics, events_filter, split_terminal_topic

log = logging.getLogger("city_receiver")

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY,            -- the event's idempotency key (§2): stored once
    muni TEXT NOT NULL, tid TEXT NOT NULL, seq INTEGER NOT NULL,
    at TEXT, body TEXT NOT NULL, received_at TEXT NOT NULL,
    copies INTEGER NOT NULL DEFAULT 1,  -- how many times it arrived (re-sends, two receivers)
    receiver TEXT NOT NULL             -- the instance that stored it first
);
CREATE INDEX IF NOT EXISTS events_tid_seq ON events (tid, seq);
CREATE TABLE IF NOT EXISTS terminal_status (
    tid TEXT PRIMARY KEY, muni TEXT NOT NULL, body TEXT NOT NULL, received_at TEXT NOT NULL
);
"""


class CityStore:
    """The city's durable store. Safe for several receiver processes on one file."""

    def __init__(self, path: Path, receiver: str = "") -> None:
        self.receiver = receiver
        self.db = sqlite3.connect(path, timeout=30, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")  # "durably stored" before the ack
        self.db.executescript(SCHEMA)

    def store(self, muni: str, tid: str, events: list[dict]) -> None:
        """All of `events` (already validated) in one transaction, each id once."""
        now = rfc3339_ms()
        rows = [(e["id"], muni, tid, e["seq"], e["at"], json.dumps(e, ensure_ascii=False), now,
                 self.receiver) for e in events]
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.executemany(
                "INSERT INTO events (id, muni, tid, seq, at, body, received_at, receiver)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET copies = copies + 1", rows)
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def save_status(self, muni: str, tid: str, body: bytes) -> None:
        self.db.execute("INSERT OR REPLACE INTO terminal_status VALUES (?, ?, ?, ?)",
                        (tid, muni, body.decode(errors="replace"), rfc3339_ms()))

    def gaps(self) -> list[tuple[str, int, int]]:
        """(tid, first missing seq, last missing seq) for every hole, including before the
        first stored seq (seq starts at 1)."""
        return self.db.execute(
            "SELECT tid, prev + 1, seq - 1 FROM (SELECT tid, seq, "
            " LAG(seq, 1, 0) OVER (PARTITION BY tid ORDER BY seq) AS prev FROM events)"
            " WHERE seq > prev + 1 ORDER BY tid, prev").fetchall()


class Receiver:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        client_id = args.client_id or f"city-receiver-{os.getpid()}"
        self.store = CityStore(args.db, client_id)
        self.to_drop = args.drop_first
        self.client = _client(args, client_id, clean_start=True)
        self.client.on_connect = self.on_connect
        self.client.on_message = self.on_message
        self.client.on_subscribe = self.on_subscribe
        self.next_gap_report = time.monotonic() + args.gap_interval

    def on_connect(self, client: mqtt.Client, _ud: Any, _flags: Any, reason: Any,
                   _props: Any) -> None:
        if reason.is_failure:
            log.error("connection refused", **fields(reason=str(reason)))
            return
        group = self.args.group or None
        client.subscribe([(events_filter(self.args.prefix, group), 1),
                          (f"{self.args.prefix}/+/+/status", 1)])

    def on_subscribe(self, *_args: Any) -> None:
        log.info("subscribed", **fields(group=self.args.group))
        if self.args.ready_file:
            Path(self.args.ready_file).write_text(str(os.getpid()))

    def on_message(self, client: mqtt.Client, _ud: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            self._handle(client, msg)
        except Exception:  # keep receiving; the terminal sends again if we did not ack
            log.exception("message not handled", **fields(topic=msg.topic))
        if time.monotonic() >= self.next_gap_report:
            self.next_gap_report = time.monotonic() + self.args.gap_interval
            for tid, first, last in self.store.gaps():
                log.info("seq gap", **fields(tid=tid, first=first, last=last))

    def _handle(self, client: mqtt.Client, msg: mqtt.MQTTMessage) -> None:
        parts = split_terminal_topic(msg.topic, self.args.prefix)
        if parts is None:
            return
        muni, tid, leaf = parts
        if leaf == "status":
            self.store.save_status(muni, tid, msg.payload)
            return
        try:
            batch = parse_batch(msg.payload)
        except SyncError as exc:
            log.warning("not a batch; dropped", **fields(tid=tid, why=str(exc)))
            return
        if self.to_drop > 0:
            self.to_drop -= 1
            log.info("batch dropped without ack (fault injection)", **fields(batch=batch.batch))
            return
        good: list[dict] = []
        rejected: list[tuple[str, str]] = []
        for event in batch.events:
            # The topic's tid is the authenticated one (ACL); a payload claiming another
            # terminal is refused rather than filed under the wrong terminal.
            error = event_error(event) or (None if batch.tid == tid else "schema")
            if error is None:
                good.append(event)
            elif isinstance(event, dict) and isinstance(event.get("id"), str):
                rejected.append((event["id"], error))
        if good:
            self.store.store(muni, tid, good)
        if not (good or rejected):
            return  # nothing an ack could name
        # Only now, with the transaction committed, may the terminal forget these events.
        client.publish(Topics(self.args.prefix, muni, tid).acks,
                       build_ack(batch.batch, [e["id"] for e in good], rejected), qos=1)
        log.debug("batch stored", **fields(tid=tid, batch=batch.batch, events=len(good)))

    def run(self) -> int:
        def _stop(*_: Any) -> None:
            self.client.disconnect()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        self.client.loop_forever(retry_first_connection=True)
        return 0


def _client(args: argparse.Namespace, client_id: str, *, clean_start: bool) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv5)
    client.suppress_exceptions = True
    client.max_inflight_messages_set(100)
    client.reconnect_delay_set(1, 2)  # the reference city side: quick to come back
    if args.url.startswith("mqtts://"):
        client.tls_set_context(tls_context(args.ca, args.cert, args.key))
    host, _, port = args.url.split("://", 1)[1].partition(":")
    client.connect_async(host, int(port or (8883 if args.url.startswith("mqtts") else 1883)),
                         keepalive=30, clean_start=clean_start)
    return client


def publish_bundle(args: argparse.Namespace) -> int:
    from reader.bundles.files import declared_kind, read_bundle_file

    data = read_bundle_file(Path(args.signed)) if args.signed else _sign(args)
    kind = args.kind or declared_kind(data)
    if kind is None:
        print("cannot tell the bundle's kind: give --kind", file=sys.stderr)
        return 2
    if kind == "config" and not args.tid:
        print("a config bundle goes to one terminal: give --tid", file=sys.stderr)
        return 2
    topic = Topics(args.prefix, args.muni, args.tid or "-").bundle(kind)
    client = _client(args, f"city-publisher-{os.getpid()}", clean_start=True)
    client.loop_start()
    deadline = time.monotonic() + 10
    while not client.is_connected() and time.monotonic() < deadline:
        time.sleep(0.05)
    info = client.publish(topic, data, qos=1, retain=True)  # queued even if not connected
    try:
        info.wait_for_publish(timeout=10)
    except RuntimeError as exc:
        print(f"not published: {exc}", file=sys.stderr)
    client.disconnect()
    client.loop_stop()
    print(f"published {kind} bundle ({len(data)} bytes) retained on {topic}")
    return 0 if info.is_published() else 3


def _sign(args: argparse.Namespace) -> bytes:
    """Sign the payload of a JSON file (byte fields `kid`, `pk`, `serials` as hex)."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    from reader.card.cose import private_key_from_scalar, sign1

    if not (args.payload and args.signing_key and args.kid):
        raise SystemExit("give --signed FILE, or --payload, --signing-key and --kid")
    doc = json.loads(Path(args.payload).read_text())
    doc.setdefault("muni", args.muni)
    doc.setdefault("issued", int(time.time()))
    for entry in (*doc.get("issuers", ()), *doc.get("ops", ())):
        for name in ("kid", "pk"):
            entry[name] = bytes.fromhex(entry[name])
    if "serials" in doc:
        doc["serials"] = [bytes.fromhex(s) for s in doc["serials"]]
    key_text = Path(args.signing_key).read_bytes()
    key = (load_pem_private_key(key_text, None) if key_text.startswith(b"-----")
           else private_key_from_scalar(bytes.fromhex(key_text.decode().strip())))
    return sign1(doc, key, bytes.fromhex(args.kid))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="city_receiver", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def broker_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--url", required=True, help="mqtts://host:port (or mqtt:// loopback)")
        p.add_argument("--ca", type=Path, help="city CA certificate (PEM)")
        p.add_argument("--cert", type=Path, help="this receiver's client certificate (PEM)")
        p.add_argument("--key", type=Path, help="its private key (PEM)")
        p.add_argument("--prefix", default="sukumo/v1")

    run = sub.add_parser("run", help="receive, store, ack")
    broker_args(run)
    run.add_argument("--db", type=Path, required=True)
    run.add_argument("--group", default="city", help="shared subscription group ('' = none)")
    run.add_argument("--client-id", default="")
    run.add_argument("--drop-first", type=int, default=0, metavar="N")
    run.add_argument("--gap-interval", type=float, default=60.0, metavar="S")
    run.add_argument("--ready-file", type=Path, help="written once subscribed (tests)")
    gaps = sub.add_parser("gaps", help="print the holes in each terminal's seq")
    gaps.add_argument("--db", type=Path, required=True)
    pub = sub.add_parser("publish-bundle", help="sign and publish a bundle, retained")
    broker_args(pub)
    pub.add_argument("--muni", default="392081")
    pub.add_argument("--tid", default="", help="the terminal, for a config bundle")
    pub.add_argument("--kind", choices=("trust", "denylist", "config"))
    pub.add_argument("--signed", help="an already signed bundle (binary or hex)")
    pub.add_argument("--payload", help="JSON payload to sign")
    pub.add_argument("--signing-key", help="PEM private key, or a file with the hex scalar")
    pub.add_argument("--kid", help="key id (hex) for the COSE header")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(os.environ.get("CITY_LOG_LEVEL", "INFO"))
    if args.command == "gaps":
        holes = CityStore(args.db).gaps()
        for tid, first, last in holes:
            print(f"{tid}: seq {first}..{last} missing")
        print(f"{len(holes)} gap(s)")
        return 1 if holes else 0
    if args.command == "publish-bundle":
        return publish_bundle(args)
    log.info("receiver starting", **fields(url=args.url, group=args.group,
                                           started=dt.datetime.now(dt.UTC).isoformat()))
    return Receiver(args).run()


if __name__ == "__main__":
    sys.exit(main())
