"""The terminal's status, typed once: status.json, systemd's `STATUS=` line and the
mqtt-v1 §4 status message are three views of one `TerminalStatus`.

Only the §4 fields cross to the city (`mqtt_payload`); the rest is for the technician
on the terminal itself (`sukumo-reader status`, `systemctl status`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from reader.wire.event import dumps, rfc3339_ms

VERSION = 1


@dataclass(frozen=True)
class QueueSummary:
    pending: int  # not yet acked: never sent, or sent and waiting (includes in_flight)
    in_flight: int  # sent in a batch, waiting for the city's ack
    rejected: int  # refused by the city, kept aside for the technician
    oldest_at: str | None  # `at` of the oldest unacked event
    last_seq: int  # highest seq ever allocated (0 when none)
    db_bytes: int  # bytes the queue's data takes (free pages reused by new events excluded)
    over_warn: bool  # db_bytes over queue.warn_mb
    alarms: tuple[str, ...]  # e.g. "database was corrupt (...); moved aside to <path>"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "alarms": list(self.alarms)}


@dataclass
class SyncCounters:
    batches_sent: int = 0
    events_acked: int = 0
    events_rejected: int = 0
    malformed_acks: int = 0
    unknown_ack_ids: int = 0  # duplicate acks, or ids this terminal never had
    refused_publishes: int = 0  # PUBACK reason code >= 0x80 (e.g. 0x87 not authorized)
    connects: int = 0


NO_RECEIVER = "no city receiver subscribed"
PACKET_TOO_LARGE = "broker packet size limit too small"


@dataclass(frozen=True)
class CertInfo:
    """The client certificate the link uses (mqtt-v1 §7: `cert` in the status)."""

    serial: str  # lowercase hex
    not_after: str  # RFC 3339 UTC


@dataclass(frozen=True)
class SyncStatus:
    state: str  # offline | connecting | online
    last_ack_at: str | None = None
    counters: SyncCounters = field(default_factory=SyncCounters)
    protocol: str | None = None  # MQTT "5" or "3.1.1" (the fallback), None with no broker
    no_receiver: bool = False  # the last batch PUBACK was 0x10 (no matching subscribers)
    # The broker closed the link for a packet's size, or its limit leaves no room for a
    # batch (reader/sync/limits.py); `packet_limit`: the outgoing limit now, in bytes.
    packet_too_large: bool = False
    packet_limit: int | None = None
    cert: CertInfo | None = None  # the client certificate in force (None: no TLS)
    alarms: tuple[str, ...] = ()  # e.g. the certificate expires soon and was not renewed

    @property
    def problems(self) -> list[str]:
        return ([NO_RECEIVER] if self.no_receiver else []) + (
            [PACKET_TOO_LARGE] if self.packet_too_large else [])


@dataclass(frozen=True)
class LastTap:
    at: str
    result: str
    reason: str | None
    mid: str | None  # the member's pseudonym (reader/queue/pseudonym.py), never the id


@dataclass(frozen=True)
class TerminalStatus:
    tid: str
    mode: str
    facility: str
    reader: str  # ok | missing | ... (TapSource.state); "none" for the sync alone
    audio: str
    queue: QueueSummary
    sync: SyncStatus
    app_version: str
    bundle_versions: dict[str, int]  # trust / denylist / config held
    rejected_bundles: int
    pid: int
    started_at_ms: int
    updated_at_ms: int
    last_tap: LastTap | None = None
    taps: int = 0
    unrecorded: int = 0  # taps not stored, whatever the cause (full, EIO, read-only)
    # What the technician and the city must act on beyond the queue's own alarms, e.g.
    # "denylist bundle version 100 is in force but not stored: ...".
    alarms: tuple[str, ...] = ()

    @property
    def needs_technician(self) -> bool:
        """Something only a technician can mend: the reader, storage, an alarm."""
        return self.reader != "ok" or self.unrecorded > 0 or bool(self.all_alarms)

    @property
    def all_alarms(self) -> list[str]:
        """The queue's alarms and the terminal's own (e.g. a bundle not stored)."""
        return [*self.queue.alarms, *self.alarms, *self.sync.alarms]

    @property
    def versions(self) -> dict[str, int | str]:
        return {"app": self.app_version, **self.bundle_versions}

    def to_json(self, *, running: bool) -> dict[str, Any]:
        """status.json: what `sukumo-reader status` and doctor read."""
        return {
            "pid": self.pid, "started_at": rfc3339_ms(self.started_at_ms),
            "updated_at": rfc3339_ms(self.updated_at_ms), "tid": self.tid,
            "mode": self.mode, "facility": self.facility, "reader": self.reader,
            "audio": self.audio,
            "last_tap": asdict(self.last_tap) if self.last_tap else None,
            "taps": self.taps, "unrecorded": self.unrecorded, "queue": self.queue.as_dict(),
            "sync": {"state": self.sync.state, "last_ack_at": self.sync.last_ack_at,
                     "protocol": self.sync.protocol, "no_receiver": self.sync.no_receiver,
                     "packet_limit": self.sync.packet_limit,
                     "problems": self.sync.problems, **asdict(self.sync.counters),
                     "cert": asdict(self.sync.cert) if self.sync.cert else None},
            "versions": self.versions, "rejected_bundles": self.rejected_bundles,
            "alarms": self.all_alarms, "running": running,
        }

    def systemd_line(self) -> str:
        """What `systemctl status sukumo-reader` shows the technician in one line."""
        last = self.last_tap
        return (f"{self.mode}: reader {self.reader}, audio {self.audio}, "
                f"{self.queue.pending} waiting for the city ({self.sync.state}"
                + "".join(f"; {p}" for p in self.sync.problems) + "), "
                + (f"last tap {last.at} {last.result}" if last else "no tap yet")
                + "".join(f"; ALARM: {alarm}" for alarm in self.all_alarms))

    def mqtt_payload(self) -> bytes:
        """The mqtt-v1 §4 status message (retained). `link` is an addition receivers may
        ignore (docs/city-integration.md): the MQTT version in use and the link's problems."""
        return dumps({
            "v": VERSION, "tid": self.tid, "state": "online",
            "at": rfc3339_ms(self.updated_at_ms),
            "queue": {"pending": self.queue.pending, "oldest_at": self.queue.oldest_at},
            "last_ack_at": self.sync.last_ack_at, "reader": self.reader,
            "versions": self.versions, "rejected_bundles": self.rejected_bundles,
            # Additions to §4 (docs/city-integration.md): receivers may ignore them.
            "alarms": self.all_alarms,
            "link": {"mqtt": self.sync.protocol, "problems": self.sync.problems},
            # mqtt-v1 §7: the client certificate's serial and expiry, for the fleet view.
            **({"cert": asdict(self.sync.cert)} if self.sync.cert else {}),
        }).encode()


def offline_payload(tid: str) -> bytes:
    """The §4 Will, also published by an orderly stop (the broker sends the Will only when
    the connection dies without a DISCONNECT)."""
    return dumps({"v": VERSION, "tid": tid, "state": "offline"}).encode()
