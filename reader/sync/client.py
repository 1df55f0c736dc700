"""CitySync: the terminal's side of mqtt-v1, one thread driving paho.

Theory of operation. The SQLite queue is the truth; paho's session lives in memory and dies
with the process, so it is only a transport. One sync thread owns a paho client and its own
EventQueue connection; it calls `client.loop()` itself (paho callbacks therefore run on this
thread, never racing the queue) and schedules reconnects itself, with exponential backoff
and jitter. Each turn it: reconnects when due, moves bytes, then sends what is due — the
retained status, and batches from `EventQueue.take_batch` while the SendWindow allows.
An event leaves the queue only when an app-level ack (§3) names it; a PUBACK only means the
broker has the batch. Every callback is guarded: an exception is logged, never raised into
paho's loop.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from reader.config import Settings
from reader.sync.acks import SentBatches, apply_ack
from reader.sync.backoff import Backoff
from reader.sync.bundles import BundleIntake
from reader.sync.endpoint import parse_endpoint
from reader.sync.limits import MIN_ROOM, PacketLimits
from reader.sync.renewal import LinkCertificate
from reader.sync.session import MQTT5, fallback, guarded, make_client, refused_version
from reader.sync.standalone import standalone_status
from reader.sync.window import SendWindow
from reader.system.logs import fields
from reader.wire.event import rfc3339_ms
from reader.wire.messages import build_batch
from reader.wire.status import SyncCounters, SyncStatus, TerminalStatus, offline_payload
from reader.wire.topics import Topics

if TYPE_CHECKING:
    from reader.bundles.store import TrustStore
    from reader.queue import EventQueue

log = logging.getLogger(__name__)

NO_MATCHING_SUBSCRIBERS = 0x10  # MQTT 5 PUBACK: the broker had nowhere to send it
LOOP_S = 0.1  # longest wait in select: bounds how late a wake() is noticed
MARK_AFTER_S = 1.0  # a batch unacked this long is marked in flight in the queue
POLL_S = 1.0  # look at the queue this often even without wake() (other writers, timeouts)


class CitySync:
    def __init__(self, settings: Settings, trust: TrustStore,
                 status_source: Callable[[], TerminalStatus] | None = None) -> None:
        """`status_source` is the terminal's status (None: the sync runs alone, with no
        reader, and reports what it knows itself)."""
        self._settings = settings
        self._mqtt = settings.mqtt
        self._trust = trust
        self._status_source = status_source
        self.tid = settings.terminal.id
        self.topics = Topics(self._mqtt.topic_prefix, settings.terminal.muni, self.tid)
        self._endpoint = parse_endpoint(self._mqtt) if self._mqtt.url else None
        self.cert = (LinkCertificate(settings, self.topics)  # TLS files checked here
                     if self._endpoint is not None and self._endpoint.tls else None)
        self.state = "offline"
        self.last_ack_at: str | None = None
        self.counters = SyncCounters()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._backoff = Backoff(self._mqtt.reconnect_min_s, self._mqtt.reconnect_max_s)
        self._window = SendWindow(ack_timeout_s=self._mqtt.ack_timeout_s)
        self._intake = BundleIntake(trust, settings.paths.bundle_dir, self.topics)
        self._client: mqtt.Client | None = None
        self._queue: EventQueue | None = None
        self._link_up = False  # a socket is open (CONNECT sent or CONNACK received)
        self._connacked = False  # this link got its CONNACK
        self.protocol = MQTT5  # of the link now (or being tried), see session.py
        self.no_receiver = False  # the last batch PUBACK said "no matching subscribers"
        self._next_attempt = self._next_status = self._next_poll = 0.0
        self._sent = SentBatches()
        self._limits = PacketLimits(self._mqtt.broker_max_packet_bytes)

    # -- public -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the sync thread; does nothing when no broker is configured (offline)."""
        if self._endpoint is None:
            log.info("no broker configured: running offline, taps are queued")
            return
        if self._endpoint.tls is False:
            log.warning("mqtt without TLS (development only)", **fields(url=self._mqtt.url))
        self._stopping.clear()
        self.state = "connecting"
        self._thread = threading.Thread(target=self._run, name="city-sync", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Publish the offline status, disconnect (the session stays), join the thread."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.state = "offline"

    def status(self) -> SyncStatus:
        """The link as status.json, `status`, doctor and the MQTT status show it."""
        cert = self.cert.status_fields() if self.cert else {}
        return SyncStatus(self.state, self.last_ack_at, self.counters,
                          protocol=self.protocol, no_receiver=self.no_receiver,
                          packet_too_large=self._limits.problem,
                          packet_limit=self._limits.limit, **cert)

    def wake(self) -> None:
        """A new event is in the queue: send it now rather than at the next poll."""
        self._wake.set()

    # -- the sync thread ----------------------------------------------------------------

    def _run(self) -> None:
        from reader.queue import EventQueue

        q = self._settings.queue
        failures = 0
        try:
            while not self._stopping.is_set():
                try:
                    if self._queue is None:
                        # on_corrupt="raise": only the daemon's start-up moves a corrupt file
                        # aside; check=False: it has just run integrity_check on it.
                        self._queue = EventQueue.open(
                            self._settings.paths.database, on_corrupt="raise", check=False,
                            warn_mb=q.warn_mb, budget_mb=q.budget_mb)
                        # Most acks come in milliseconds: mark only the late batches.
                        self._queue.defer_marks(min(MARK_AFTER_S, self._mqtt.ack_timeout_s / 2))
                    if self._client is None:
                        self._client = self._make_client()  # TLS files are read here
                    self._turn()
                    failures = 0
                except Exception as exc:  # nothing may end syncing for good: retry, slower
                    failures += 1
                    self.state = "failed" if self._client is None else self.state
                    if failures == 1 or failures % 100 == 0:
                        log.exception("sync loop error", **fields(failures=failures,
                                                                   why=str(exc)))
                    self._stopping.wait(min(LOOP_S * 2 ** min(failures, 10), 30.0))
        finally:
            self._shutdown()

    def _turn(self) -> None:
        client = self._client
        assert client is not None
        if not self._link_up:
            delay = self._next_attempt - time.monotonic()
            if delay > 0:
                self._wake.wait(min(delay, POLL_S))
                self._wake.clear()
                return
            self._connect()
            return
        rc = client.loop(timeout=LOOP_S)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._link_lost(f"loop: {mqtt.error_string(rc)}")
            return
        if self.state == "online":
            self._pump()

    def _make_client(self) -> mqtt.Client:
        assert self._endpoint is not None
        w = self._window
        client = make_client(self._settings, self._endpoint, self.protocol,
                             will=offline_payload(self.tid),
                             inflight=(w.max_unpubacked + 4, w.max_unpubacked + 16),
                             tls_pair=self.cert.for_client() if self.cert else None)
        client.enable_logger(logging.getLogger("paho"))
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    def _connect(self) -> None:
        assert self._client is not None
        if self.cert is not None and self.cert.give_up_new_pair():
            self._client = None  # made again by the next turn, with the pair before
            return
        self.state = "connecting"
        try:
            self._client.reconnect()
        except Exception as exc:  # refused, unreachable, TLS: all mean "later"
            self._schedule_retry(f"{exc.__class__.__name__}: {exc}")
            return
        self._link_up = True
        self._connacked = False

    def _link_lost(self, why: str, reason_code: int | None = None) -> None:
        if not self._link_up:
            return
        self._link_up = False
        if not self._connacked:
            # Closed after CONNECT without a CONNACK: how a 3.1.1-only broker refuses 5.
            self._switch_protocol(why)
            return
        if self._limits.link_lost(reason_code if self.protocol == MQTT5 else None):
            self._client = None  # paho would send the packet it keeps again, for ever
        if self.protocol != MQTT5:
            self._client, self.protocol = None, MQTT5  # every new link tries 5 first
        self._schedule_retry(why)

    def _switch_protocol(self, why: str) -> None:
        # The client is made again, for the other protocol, by the next turn.
        self._client, self.protocol = None, fallback(self.protocol)
        if self.protocol == MQTT5:
            self._schedule_retry(why)  # 3.1.1 refused too: a real failure, back off
            return
        self.state, self._next_attempt = "connecting", 0.0  # try 3.1.1 at once
        log.warning("broker refused MQTT 5, trying MQTT 3.1.1", **fields(why=why))

    def _schedule_retry(self, why: str) -> None:
        self._link_up = False
        self.state = "connecting"
        delay = self._backoff.next_delay()
        self._next_attempt = time.monotonic() + delay
        log.warning("broker unreachable, retrying", **fields(
            why=why, retry_in_s=round(delay, 2), attempt=self._backoff.attempts))

    def _shutdown(self) -> None:
        client, queue = self._client, self._queue
        try:
            if client is not None and self.state == "online":
                info = client.publish(self.topics.status, offline_payload(self.tid), qos=1,
                                      retain=True)
                deadline = time.monotonic() + 2.0
                while not info.is_published() and time.monotonic() < deadline:
                    client.loop(timeout=LOOP_S)
            if client is not None and self._link_up:
                client.disconnect()  # normal disconnect: the session outlives us (expiry)
        except Exception:
            log.exception("error while disconnecting")
        finally:
            if queue is not None:
                with contextlib.suppress(Exception):  # unmarked, they would only go again
                    queue.flush_marks(every=True)
                queue.close()
            self.state = "offline"

    # -- sending ------------------------------------------------------------------------

    def _pump(self) -> None:
        assert self._client is not None
        self._intake.follow_neighbours(self._client)
        now = time.monotonic()
        if now >= self._next_status:
            self._publish_status()
            self._next_status = now + self._mqtt.status_interval_s
        assert self._queue is not None
        self._queue.flush_marks()
        late = self._window.expire(now)
        if late:
            log.info("acks overdue, events will be sent again", **fields(
                batches=len(late), next_wait_s=round(self._window.rto, 2)))
        if self._wake.is_set():
            self._wake.clear()
            self._next_poll = now
        while now >= self._next_poll and self._window.can_send():
            if not self._send_batch(now):
                self._next_poll = now + POLL_S

    def _send_batch(self, now: float) -> bool:
        assert self._queue is not None and self._client is not None
        m = self._mqtt
        room = self._limits.room(self.topics.events, self.protocol == MQTT5)
        if room < MIN_ROOM:
            return False  # the status names the problem; taps stay queued
        batch = self._queue.take_batch(max_events=m.batch_max_events,
                                       max_bytes=min(m.batch_max_bytes, room),
                                       ack_timeout_s=self._window.rto, tid=self.tid)
        if batch is None:
            return False
        info = self._limits.publish(self._client, self.topics.events,
                                    build_batch(self.tid, batch.id, batch.bodies),
                                    v5=self.protocol == MQTT5)
        if info is None or info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS,
                                           MQTTErrorCode.MQTT_ERR_NO_CONN):
            # The events are marked in flight: they go again after the ack timeout.
            log.warning("batch not sent", **fields(
                rc=mqtt.error_string(info.rc) if info else "too large"))
            return False
        self._window.sent(info.mid, batch.id, now)
        self._sent.add(batch)
        self.counters.batches_sent += 1
        log.debug("batch sent", **fields(batch=batch.id, events=len(batch),
                                         first_seq=batch.seqs[0]))
        return True

    def _publish_status(self) -> None:
        assert self._client is not None
        try:
            payload = (self._status_source or self._own_status)().mqtt_payload()
        except Exception:
            log.exception("status source failed")
            payload = self._own_status().mqtt_payload()
        self._limits.publish(self._client, self.topics.status, payload,
                             v5=self.protocol == MQTT5, retain=True)
        if self.cert is not None:
            self.cert.maybe_ask(self._client)  # §7: renew the certificate when due

    def _own_status(self) -> TerminalStatus:  # the sync running alone: no reader
        assert self._queue is not None
        return standalone_status(self._settings, self._queue.summary(), self.status(),
                                 self._trust)

    # -- paho callbacks (all on the sync thread, all guarded) ---------------------------

    @guarded
    def _on_connect(self, client: mqtt.Client, _ud: Any, flags: Any, reason: Any,
                    props: Any) -> None:
        if reason.is_failure:
            if refused_version(reason):
                self._link_up = False
                return self._switch_protocol(str(reason))
            self._connacked = True  # a refusal with a reason: back off, same protocol
            log.error("broker refused the connection", **fields(reason=str(reason)))
            return  # paho closes the socket; loop() reports it and we back off
        self._connacked = True
        self._limits.connected(props)
        self.state = "online"
        self.counters.connects += 1
        self._backoff.reset()
        if not flags.session_present:
            # Acks published while we were away went to a session that no longer exists:
            # send what is in flight again now instead of waiting for the ack timeout.
            self._window.forget_unacked()
            assert self._queue is not None
            requeued = self._queue.requeue_in_flight()
            if requeued:
                log.info("no session on the broker: in-flight events due again",
                         **fields(events=requeued))
        serial = self.cert.connected() if self.cert else None  # the old pair may go (§7)
        log.info("connected to the city broker", **fields(
            cert=serial, session_present=bool(flags.session_present), mqtt=self.protocol,
            host=self._endpoint.host if self._endpoint else None))
        client.subscribe([(t, 1) for t in self.topics.subscriptions()])
        self._intake.connected(client)  # and the neighbours' denylists, from _pump
        self._next_status = 0.0
        self._next_poll = 0.0

    @guarded
    def _on_disconnect(self, _c: mqtt.Client, _ud: Any, _flags: Any, reason: Any,
                       _props: Any) -> None:
        if not self._stopping.is_set():
            self._link_lost(f"disconnected: {reason}", getattr(reason, "value", None))

    @guarded
    def _on_publish(self, _c: mqtt.Client, _ud: Any, mid: int, reason: Any,
                    _props: Any) -> None:
        self._limits.puback(mid)
        if self._window.puback(mid):
            self._next_poll = 0.0  # room in the window: send more now
            self._note_receiver(getattr(reason, "value", 0) != NO_MATCHING_SUBSCRIBERS)
        if reason is not None and reason.is_failure:
            self.counters.refused_publishes += 1
            log.error("broker refused a publish (check the ACL)", **fields(reason=str(reason)))

    @guarded
    def _on_message(self, _c: mqtt.Client, _ud: Any, message: mqtt.MQTTMessage) -> None:
        topic, payload = message.topic, bytes(message.payload)
        if topic == self.topics.acks:
            self._handle_ack(payload)
        elif topic == self.topics.cert and self.cert is not None:
            if self.cert.receive(payload):  # §7: reconnect with the new pair, now
                _c.disconnect()  # a normal DISCONNECT: the session and its acks stay
                self._link_up, self._client, self._next_attempt = False, None, 0.0
        elif not self._intake.on_message(topic, payload):
            log.warning("message on an unexpected topic", **fields(topic=topic))

    def _note_receiver(self, present: bool) -> None:
        if present == (not self.no_receiver):
            return
        self.no_receiver = not present
        # PUBACK 0x10: the broker dropped the batch; its events go again after the timeout.
        (log.info if present else log.warning)(
            "a city receiver takes the batches again" if present else
            "no city receiver subscribed: the broker drops our batches; taps stay queued")

    def _handle_ack(self, payload: bytes) -> None:
        assert self._queue is not None
        outcome = apply_ack(self._queue, payload, self.counters, self._sent)
        if outcome is None:
            return  # malformed or unknown: apply_ack logged and counted it
        if outcome.acked or outcome.rejected:
            self.last_ack_at = rfc3339_ms()
            self._note_receiver(True)
        if self._window.acked(outcome.batch, time.monotonic()):
            self._next_poll = 0.0  # room in the window: send more now
