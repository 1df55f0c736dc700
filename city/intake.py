"""`sukumo-city run`: receive every terminal's batches and statuses, store them in
PostgreSQL, and only then acknowledge (mqtt-v1 §3).

Theory of operation. Three kinds of thread, and the database is never touched by the
one that talks to the broker:

- the link (this process's main thread, city/link.py) runs paho's network loop. Its
  on_message only puts the message on a bounded queue and returns, so a slow, locked or
  lost database never stalls the MQTT link (keepalives, other terminals' batches, acks).
  When the queue is full the batch is dropped without an ack: the terminal keeps it and
  sends it again after its ack timeout. Nothing is lost, nothing is acked before it is
  committed.
- workers (`intake.workers`) take a batch, store it in ONE transaction (city/db.py), and
  after the commit hand the ack to the link, which publishes it. A database error is
  retried for `intake.retry_s`, then the batch is left to the terminal's re-send; a
  re-sent event is counted, never stored twice, whichever instance gets it.
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
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg_pool import PoolTimeout

from city.db import Store
from city.health import Health
from city.inbox import check_batch, terminal_state
from city.link import BrokerLink
from city.metrics import IntakeMetrics, make_registry
from city.settings import CitySettings, require_broker, require_database
from city.web.server import serve_web
from reader.errors import SyncError
from reader.system.i18n import use_english
from reader.system.logs import fields
from reader.wire.messages import build_ack
from reader.wire.topics import Topics, split_terminal_topic

log = logging.getLogger("city.intake")
DATABASE_PING_S = 5.0


@dataclass
class IntakeStats:
    """What the intake has done, for the health endpoint and the metrics (read-only
    outside this module; ints are updated under the GIL, one writer per field kind).
    The link's own state: `Intake.link.up`, `Intake.link.acks_sent`."""

    batches: int = 0  # batches received
    events_stored: int = 0
    events_copies: int = 0  # re-sent events counted, not stored again
    events_rejected: int = 0  # refused for good (ack `rejected`)
    dropped_queue_full: int = 0  # batches left to the terminal's re-send
    dropped_database: int = 0
    database_up: bool = False
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
        self.to_drop = drop_first
        self.stats = IntakeStats()
        # /metrics: this instance's counters and link states (city/metrics.py, health.py).
        self.registry = make_registry()
        self.health = Health(self.registry)
        self.metrics = IntakeMetrics(self.registry)
        self.link = BrokerLink(m, self.client_id, self._on_message, self.health,
                               ready_file=ready_file)
        self.stopping = self.link.stopping
        self.inbox: queue.Queue[Message | None] = queue.Queue(settings.intake.queue_max)
        self.metrics.queued.set_function(self.inbox.qsize)
        db = settings.database
        self.store = Store(require_database(settings), pool_size=max(db.pool_size,
                                                                      settings.intake.workers),
                           statement_timeout_s=db.statement_timeout_s, name=self.client_id)
        self._db_lock = threading.Lock()
        self._db_state: bool | None = None

    def _on_message(self, topic: str, payload: bytes) -> None:
        """In the link's thread: queue it and return at once (never the database here)."""
        parts = split_terminal_topic(topic, self.prefix)
        if parts is None or parts[2] not in ("events", "status"):
            return
        if parts[2] == "events":
            self.stats.batches += 1
        item = Message(*parts, payload, time.monotonic(), dt.datetime.now(dt.UTC))
        try:
            self.inbox.put_nowait(item)
        except queue.Full:
            # No ack: the terminal sends the batch again after its ack timeout.
            self.stats.dropped_queue_full += 1
            self.metrics.deferred.labels("queue_full").inc()
            log.warning("intake queue full; batch left to the terminal's re-send",
                        **fields(tid=item.tid, queue_max=self.inbox.maxsize))

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
        self.link.send(Topics(self.prefix, item.muni, item.tid).acks,
                       build_ack(checked.batch, [e.id for e in checked.good],
                                 checked.rejected))
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
            except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
                # Away, restarting, full, locked too long: it may be back in a moment.
                self._database(False, exc)
                if self.stopping.is_set() or \
                        time.monotonic() + delay > item.received + self.settings.intake.retry_s:
                    self.stats.dropped_database += 1
                    self.metrics.deferred.labels("database").inc()
                    return None
                self.stopping.wait(delay)
                delay = min(delay * 2, 5.0)
            except psycopg.Error as exc:
                # The database is there and refused this one (a bug, not an outage): no
                # ack, so the terminal keeps the events and the log says which.
                log.error("the database refused a batch; it stays with the terminal "
                          "(report this)", **fields(tid=item.tid, error=str(exc).strip()))
                self.stats.dropped_database += 1
                self.metrics.deferred.labels("refused").inc()
                return None
            else:
                # Only new events stored say a full disk has room again: a status or the
                # maintenance may pass where a batch does not (health.py).
                self._database(True, wrote=getattr(result, "new", 0) > 0)
                return result

    def _database(self, up: bool, exc: BaseException | None = None, *,
                  wrote: bool = False) -> None:
        """The database's state to health: its error line once per change (with the
        fix), its gauges."""
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
            self.link.stop()

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
            self.link.run()
        finally:
            self.stopping.set()
            for _n in range(self.settings.intake.workers):
                try:
                    self.inbox.put_nowait(None)
                except queue.Full:
                    break
            for thread in threads[:-1]:
                thread.join(timeout=10)
            self.link.close()
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
