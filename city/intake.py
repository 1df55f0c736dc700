"""`sukumo-city run`: receive every terminal's batches and statuses, store them in
PostgreSQL, and only then acknowledge (mqtt-v1 §3).

Theory of operation. Three kinds of thread, and the database is never touched by the
one that talks to the broker:

- the link (this process's main thread) runs paho's network loop. Its on_message only
  puts the message on a bounded queue and returns, so a slow, locked or lost database
  never stalls the MQTT link (keepalives, other terminals' batches, acks). When the queue
  is full the batch is dropped without an ack: the terminal keeps it and sends it again
  after its ack timeout. Nothing is lost, nothing is acked before it is committed.
- workers (`intake.workers`) take a batch, store it in ONE transaction (city/db.py), and
  after the commit publish the ack. A database error is retried for `intake.retry_s`,
  then the batch is left to the terminal's re-send; a re-sent event is counted, never
  stored twice, whichever instance gets it.
- maintenance makes the coming months' partitions and drops expired ones.

All state is in PostgreSQL: any number of instances share one `$share` group, and any of
them may be killed at any moment.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import queue
import signal
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from psycopg_pool import PoolTimeout

from city.db import Store
from city.health import Health, PahoErrors
from city.inbox import check_batch, terminal_state
from city.metrics import IntakeMetrics, make_registry
from city.settings import CitySettings, require_broker, require_database
from city.web.server import serve_web
from reader.errors import ConfigError, SyncError
from reader.sync.endpoint import tls_context
from reader.system.i18n import _, use_english
from reader.system.logs import fields
from reader.wire.messages import build_ack
from reader.wire.topics import Topics, events_filter, split_terminal_topic

log = logging.getLogger("city.intake")
DATABASE_PING_S = 5.0


@dataclass
class IntakeStats:
    """What the intake has done, for the health endpoint and the metrics (read-only
    outside this module; ints are updated under the GIL, one writer per field kind)."""

    batches: int = 0  # batches received
    events_stored: int = 0
    events_copies: int = 0  # re-sent events counted, not stored again
    events_rejected: int = 0  # refused for good (ack `rejected`)
    acks_sent: int = 0
    dropped_queue_full: int = 0  # batches left to the terminal's re-send
    dropped_database: int = 0
    database_up: bool = False
    broker_up: bool = False
    last_lag_s: float = 0.0  # received → committed, the last batch
    started: float = field(default_factory=time.time)


@dataclass(frozen=True)
class Message:
    muni: str
    tid: str
    leaf: str  # events | status
    payload: bytes
    received: float  # time.monotonic()
    received_at: dt.datetime


class Intake:
    def __init__(self, settings: CitySettings, *, ready_file: Path | None = None,
                 drop_first: int = 0) -> None:
        self.settings = settings
        m = settings.mqtt
        self.prefix = m.topic_prefix
        self.client_id = m.client_id or f"city-{socket.gethostname()}-{os.getpid()}"
        self.ready_file = ready_file
        self.to_drop = drop_first
        self.stats = IntakeStats()
        self.stopping = threading.Event()
        self.inbox: queue.Queue[Message | None] = queue.Queue(settings.intake.queue_max)
        db = settings.database
        self.store = Store(require_database(settings), pool_size=max(db.pool_size,
                                                                      settings.intake.workers),
                           statement_timeout_s=db.statement_timeout_s, name=self.client_id)
        self.client = self._client()
        # /metrics: this instance's counters and link states (city/metrics.py, health.py).
        self.registry = make_registry()
        self.health = Health(self.registry)
        self.metrics = IntakeMetrics(self.registry)
        self.metrics.queued.set_function(self.inbox.qsize)
        self._db_lock = threading.Lock()
        self._db_state: bool | None = None
        self._threads: list[threading.Thread] = []

    # -- the link (main thread) -----------------------------------------------------------

    def _client(self) -> mqtt.Client:
        m = self.settings.mqtt
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             protocol=mqtt.MQTTv5)
        client.suppress_exceptions = True
        client.max_inflight_messages_set(100)
        client.max_queued_messages_set(10000)
        if m.url.startswith("mqtts://"):
            try:
                client.tls_set_context(tls_context(m.ca_file, m.cert_file, m.key_file))
            except (ssl.SSLError, OSError, ValueError) as exc:
                raise ConfigError(_("settings mqtt.cert_file / mqtt.key_file / mqtt.ca_file: "
                                    "cannot be used for TLS ({error}): check that the key "
                                    "belongs to the certificate and both are PEM").format(
                                        error=exc)) from None
        self.paho_errors = PahoErrors()
        client.enable_logger(self.paho_errors.logger)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        return client

    def _on_connect(self, client: mqtt.Client, _ud: Any, _flags: Any, reason: Any,
                    _props: Any) -> None:
        if reason.is_failure:
            self.health.broker_failed(f"CONNACK {reason}", url=self.settings.mqtt.url)
            return
        self._broker(True)
        group = self.settings.mqtt.group
        client.subscribe([(events_filter(self.prefix, group), 1),
                          (f"$share/{group}/{self.prefix}/+/+/status", 1)])

    def _on_subscribe(self, *_args: Any) -> None:
        log.info("subscribed", **fields(group=self.settings.mqtt.group,
                                        client_id=self.client_id))
        if self.ready_file:
            self.ready_file.write_text(str(os.getpid()))

    def _on_disconnect(self, _c: Any, _ud: Any, _flags: Any, reason: Any, _p: Any) -> None:
        if not self.stopping.is_set():
            self._broker(False, str(reason))

    def _on_message(self, _c: Any, _ud: Any, msg: mqtt.MQTTMessage) -> None:
        parts = split_terminal_topic(msg.topic, self.prefix)
        if parts is None or parts[2] not in ("events", "status"):
            return
        if parts[2] == "events":
            self.stats.batches += 1
        item = Message(*parts, bytes(msg.payload), time.monotonic(), dt.datetime.now(dt.UTC))
        try:
            self.inbox.put_nowait(item)
        except queue.Full:
            # No ack: the terminal sends the batch again after its ack timeout.
            self.stats.dropped_queue_full += 1
            self.metrics.deferred.labels("queue_full").inc()
            log.warning("intake queue full; batch left to the terminal's re-send",
                        **fields(tid=item.tid, queue_max=self.inbox.maxsize))

    def _broker(self, up: bool, why: str = "") -> None:
        if up:
            self.health.broker_up(url=self.settings.mqtt.url)
        elif self.stats.broker_up:
            self.health.broker_lost(why, url=self.settings.mqtt.url)
        else:  # closed before its CONNACK: what paho last logged says why
            error = self.paho_errors.take()
            if error is not None or self.health.broker_state == "connecting":
                self.health.broker_failed(error or why, url=self.settings.mqtt.url)
        self.stats.broker_up = up

    def _connect(self) -> bool:
        """One connection attempt; False (after saying why and how to fix it) if it failed."""
        m = self.settings.mqtt
        url = urlsplit(m.url)
        host, port = url.hostname or "", url.port or (8883 if url.scheme == "mqtts" else 1883)
        try:
            self.client.connect(host, port, keepalive=m.keepalive_s, clean_start=True)
            return True
        except OSError as exc:  # ssl.SSLError too: health names the problem and its fix
            self.health.broker_failed(exc, url=m.url, ca_file=str(m.ca_file),
                                      cert_file=str(m.cert_file))
        return False

    def _link(self) -> None:
        backoff = 0.5
        while not self.stopping.is_set():
            if self._connect():
                backoff = 0.5
                while not self.stopping.is_set():
                    rc = self.client.loop(timeout=0.5)
                    if rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS,):
                        self._broker(False, mqtt.error_string(rc))
                        break
            self.stopping.wait(backoff)
            backoff = min(backoff * 2, self.settings.mqtt.reconnect_max_s)

    # -- workers --------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            item = self.inbox.get()
            if item is None or self.stopping.is_set():
                return
            try:
                self._handle(item)
            except Exception:  # a worker never dies: the terminal re-sends what we missed
                log.exception("message not handled", **fields(tid=item.tid))

    def _handle(self, item: Message) -> None:
        if item.leaf == "status":
            state = terminal_state(item.muni, item.tid, item.payload, item.received_at)
            if state is None:
                log.warning("not a status; ignored", **fields(tid=item.tid))
                return
            self._with_database(item, lambda: self.store.save_status(state))
            return
        try:
            checked = check_batch(item.tid, item.payload)
        except SyncError as exc:
            log.warning("not a batch; dropped", **fields(tid=item.tid, why=str(exc)))
            return
        with self._db_lock:
            drop = self.to_drop > 0
            self.to_drop -= int(drop)
        if drop:
            log.info("batch dropped without ack (fault injection)",
                     **fields(batch=checked.batch))
            return
        stored = None
        if checked.good:
            stored = self._with_database(item, lambda: self.store.store_batch(
                item.muni, item.tid, checked.good, self.client_id))
            if stored is None:
                return  # not committed: no ack
            self.stats.events_stored += stored.new
            self.stats.events_copies += stored.copies
            self.stats.last_lag_s = time.monotonic() - item.received
        if not (checked.good or checked.rejected):
            return
        # Only now, with the transaction committed, may the terminal forget these events.
        self.stats.events_rejected += len(checked.rejected)
        self.client.publish(Topics(self.prefix, item.muni, item.tid).acks,
                            build_ack(checked.batch, [e.id for e in checked.good],
                                      checked.rejected), qos=1)
        self.stats.acks_sent += 1
        self.metrics.batch_stored(item.muni, stored.new if stored else 0,
                                  stored.copies if stored else 0, len(checked.rejected),
                                  time.monotonic() - item.received)
        log.debug("batch stored", **fields(tid=item.tid, batch=checked.batch,
                                           new=stored.new if stored else 0,
                                           copies=stored.copies if stored else 0))

    def _with_database(self, item: Message, operation: Any) -> Any:
        """`operation()`, retried while the database is away for up to intake.retry_s
        after the message came; None when it never succeeded (then nothing is acked)."""
        delay = 0.2
        while True:
            try:
                result = operation()
            except (psycopg.Error, PoolTimeout) as exc:
                self._database(False, exc)
                if self.stopping.is_set() or \
                        time.monotonic() + delay > item.received + self.settings.intake.retry_s:
                    self.stats.dropped_database += 1
                    self.metrics.deferred.labels("database").inc()
                    return None
                self.stopping.wait(delay)
                delay = min(delay * 2, 5.0)
            else:
                # Only new events stored prove the disk has room again (health.py).
                self._database(True, wrote=getattr(result, "new", 0) > 0)
                return result

    def _database(self, up: bool, exc: BaseException | None = None, *,
                  wrote: bool = False) -> None:
        """The database's state to health (its log line once per change, its gauges)."""
        with self._db_lock:
            self._db_state = up
            self.stats.database_up = up
        if up:
            self.health.database_up(wrote=wrote)
        else:
            self.health.database_failed(exc or RuntimeError("database unavailable"))

    def _watch_database(self) -> None:
        """A lost database is seen (log, metric) within seconds even with no batch coming."""
        while not self.stopping.wait(DATABASE_PING_S):
            try:
                self.store.ping()
            except (psycopg.Error, PoolTimeout) as exc:
                self._database(False, exc)
            else:
                self.health.database_reachable()

    # -- maintenance ----------------------------------------------------------------------

    def _maintain(self) -> None:
        db = self.settings.database
        while not self.stopping.is_set():
            try:
                done = self.store.maintain(retention_months=db.retention_months,
                                           months_ahead=db.months_ahead)
            except (psycopg.Error, PoolTimeout) as exc:
                # At start this is the first word of a database that is not there.
                self._database(False, exc)
                self.stopping.wait(10)
                continue
            self._database(True, wrote=False)
            if done.created or done.dropped:
                log.info("partitions maintained", **fields(created=done.created,
                                                           dropped=done.dropped))
            if done.outside:
                log.warning("events outside every monthly partition (terminal clocks far "
                            "off?); kept in events_default", **fields(events=done.outside))
            self.stopping.wait(self.settings.intake.maintain_interval_s)

    # -- the whole ------------------------------------------------------------------------

    def run(self) -> int:
        def _stop(*_: Any) -> None:
            self.stopping.set()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        log.info("city intake starting", **fields(
            url=self.settings.mqtt.url, group=self.settings.mqtt.group,
            client_id=self.client_id, workers=self.settings.intake.workers))
        self.store.open(wait=False)
        threads = [threading.Thread(target=self._work, name=f"worker-{n}", daemon=True)
                   for n in range(self.settings.intake.workers)]
        threads.append(threading.Thread(target=self._maintain, name="maintain", daemon=True))
        threads.insert(0, threading.Thread(target=self._watch_database, name="db-watch",
                                           daemon=True))
        for thread in threads:
            thread.start()
        web = serve_web(self.settings, self.store.pool, self.registry)
        try:
            self._link()
        finally:
            self.stopping.set()
            for _n in range(self.settings.intake.workers):
                try:
                    self.inbox.put_nowait(None)
                except queue.Full:
                    break
            for thread in threads[:-1]:
                thread.join(timeout=10)
            for _n in range(10):  # the last acks out before we go
                self.client.loop(timeout=0.05)
            self.client.disconnect()
            if web is not None:
                web.stop()
            self.store.close()
        log.info("city intake stopped")
        return 0


def run(settings: CitySettings, *, ready_file: Path | None = None, drop_first: int = 0) -> int:
    require_database(settings)
    require_broker(settings)
    intake = Intake(settings, ready_file=ready_file, drop_first=drop_first)
    # A service writes only to the journal: its lines stay English whatever the locale
    # (docs/languages.md), as the terminal's daemon's do.
    use_english()
    return intake.run()
