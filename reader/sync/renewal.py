"""mqtt-v1 §7 on the terminal: when to ask for a new certificate, and what to accept.

`CertRenewal` is driven by the sync thread (client.py): `due()` says whether to send a
request now, `request()` makes it (a new P-256 key, kept in the state directory, and a
CSR with our own subject), `receive()` checks the city's answer and installs the new
pair through the PairStore (pairs.py), returning it so the link reconnects with it.

When: once less than a third of the certificate's validity is left, and at the latest
30 days before it expires; then at most once a day until a new one is in force (a
`busy` answer's retry_after_s only ever makes the wait longer). Both sides may leave
§7 out: a city that never answers leaves us on the current certificate, and from 14
days before it expires an alarm says so (status, doctor, the city's fleet view).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reader.config import Settings
from reader.errors import ConfigError, SyncError
from reader.sync.endpoint import certificate_problem, check_tls_files, make_csr
from reader.sync.pairs import Pair, PairStore, crash_point, load_pair
from reader.system.i18n import _
from reader.system.logs import fields
from reader.wire.event import rfc3339_ms
from reader.wire.renewal import build_csr_request, parse_cert_answer
from reader.wire.status import CertInfo
from reader.wire.topics import Topics

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt
    from cryptography import x509


log = logging.getLogger(__name__)

DAY_S = 24 * 3600
LATEST_DAYS = 30  # §7: ask at the latest this many days before expiry
ALARM_DAYS = 14  # §7: alarm when less than this is left and no renewal succeeded
REVERT_AFTER = 5  # connection attempts a renewed pair gets before the old one is back


class CertRenewal:
    def __init__(self, store: PairStore, tid: str, muni: str, ca_file: Path) -> None:
        self.store = store
        self.tid = tid
        self.muni = muni
        self.ca_file = ca_file
        self._cache: tuple[Pair, float, x509.Certificate] | None = None

    # -- what is in force -----------------------------------------------------------------

    def certificate(self, pair: Pair | None = None) -> x509.Certificate | None:
        """The certificate of `pair` (default: the one in force), read once per change."""
        pair = pair or self.store.active()
        try:
            mtime = pair.cert_file.stat().st_mtime
        except OSError:
            return None
        if self._cache and self._cache[0] == pair and self._cache[1] == mtime:
            return self._cache[2]
        loaded = load_pair(pair)
        if loaded is None:
            return None
        self._cache = (pair, mtime, loaded[0])
        return loaded[0]

    def info(self, pair: Pair | None = None) -> CertInfo | None:
        cert = self.certificate(pair)
        if cert is None:
            return None
        return CertInfo(f"{cert.serial_number:x}",
                        rfc3339_ms(int(cert.not_valid_after_utc.timestamp() * 1000)))

    def due(self, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        cert = self.certificate()
        if cert is None:
            return False
        start, end = cert.not_valid_before_utc.timestamp(), cert.not_valid_after_utc.timestamp()
        threshold = max((end - start) / 3, LATEST_DAYS * DAY_S)
        if end - now >= threshold:
            return False
        pending = self.store.pending_request()
        return pending is None or now >= float(pending.get("next_at", 0))

    def alarms(self, now: float | None = None) -> list[str]:
        now = time.time() if now is None else now
        cert = self.certificate()
        if cert is None:
            return []
        left = cert.not_valid_after_utc.timestamp() - now
        if left >= ALARM_DAYS * DAY_S:
            return []
        pending = self.store.pending_request() or {}
        why = pending.get("error") or _("no answer from the city")
        return [_("client certificate expires on {date} (in {days} days) and renewal has not "
                  "succeeded: {why}").format(date=f"{cert.not_valid_after_utc:%Y-%m-%d}",
                                             days=max(0, int(left // DAY_S)), why=why)]

    # -- asking ---------------------------------------------------------------------------

    def request(self, now: float | None = None) -> bytes:
        """A new request (same key as an unanswered earlier one), recorded before it is
        sent so that a restart does not ask again before a day has passed."""
        from cryptography.hazmat.primitives import serialization

        now = time.time() if now is None else now
        key = self.store.pending_key()
        req = str(uuid.uuid4())
        self.store.save_request({"req": req, "asked_at": now, "next_at": now + DAY_S})
        crash_point("asked")
        csr = make_csr(key, self.tid, self.muni).public_bytes(serialization.Encoding.PEM)
        log.info("asking the city for a new client certificate", **fields(req=req))
        return build_csr_request(self.tid, req, csr.decode())

    # -- the answer -----------------------------------------------------------------------

    def receive(self, payload: bytes, now: float | None = None) -> Pair | None:
        """Check the city's answer; install the new pair and return it, or None (an error
        answer, a stale one, or a certificate we refuse — all logged)."""
        now = time.time() if now is None else now
        try:
            answer = parse_cert_answer(payload)
        except SyncError as exc:
            log.warning("malformed certificate answer ignored", **fields(why=str(exc)))
            return None
        pending = self.store.pending_request()
        if pending is None or answer.req != pending.get("req"):
            log.info("certificate answer for another request ignored", **fields(req=answer.req))
            return None
        if answer.chain is None:
            wait = max(DAY_S, answer.retry_after_s or 0)
            self.store.save_request({**pending, "error": answer.error,
                                     "next_at": float(pending["asked_at"]) + wait})
            log.warning("the city refused our certificate request", **fields(
                req=answer.req, error=answer.error, retry_after_s=answer.retry_after_s))
            return None
        crash_point("received")
        problem, serial = self._check(answer.chain, now)
        if problem:
            self.store.save_request({**pending, "error": problem})
            log.error("certificate from the city refused", **fields(req=answer.req,
                                                                     why=problem))
            return None
        pair = self.store.install(answer.chain.encode(), serial)
        log.info("new client certificate installed", **fields(req=answer.req, serial=serial))
        return pair

    def _check(self, chain_pem: str, now: float) -> tuple[str, str]:
        """("", serial) when the chain is ours to use, else (why not, "")."""
        from cryptography import x509
        from cryptography.x509.oid import NameOID

        try:
            chain = x509.load_pem_x509_certificates(chain_pem.encode())
            trusted = x509.load_pem_x509_certificates(self.ca_file.read_bytes())
        except (OSError, ValueError) as exc:
            return _("not a PEM certificate chain ({why})").format(why=exc), ""
        leaf = chain[0]
        subject = {(a.oid, a.value) for a in leaf.subject}
        if subject != {(NameOID.COMMON_NAME, self.tid), (NameOID.ORGANIZATION_NAME, self.muni)}:
            return _("subject {subject} is not CN={tid}, O={muni}").format(
                subject=leaf.subject.rfc4514_string(), tid=self.tid, muni=self.muni), ""
        issuer = _issuer(leaf, trusted, chain[1:])
        if issuer is None:
            return _("it does not chain to the CA this terminal trusts ({ca})").format(
                ca=self.ca_file), ""
        try:
            key = self.store.pending_key()
        except ConfigError as exc:
            return str(exc), ""
        problem = certificate_problem(leaf, key, issuer, self.tid,
                                      dt.datetime.fromtimestamp(now, dt.UTC))
        return problem, ("" if problem else f"{leaf.serial_number:x}")


def _issuer(leaf: x509.Certificate, trusted: list[x509.Certificate],
            intermediates: list[x509.Certificate]) -> x509.Certificate | None:
    """The certificate that signed `leaf`: a trusted one, or an intermediate of the chain
    that a trusted one signed."""
    def signed(child: x509.Certificate, parent: x509.Certificate) -> bool:
        try:
            child.verify_directly_issued_by(parent)
        except Exception:  # InvalidSignature, ValueError, TypeError: not this parent
            return False
        return True

    for ca in trusted:
        if signed(leaf, ca):
            return ca
    for mid in intermediates:
        if signed(leaf, mid) and any(signed(mid, ca) for ca in trusted):
            return mid
    return None


class LinkCertificate:
    """The client certificate of the sync's link, renewed over the air: all client.py
    knows of §7. The pair in force at start is checked like a provisioned one."""

    def __init__(self, settings: Settings, topics: Topics) -> None:
        self.renewal = make_renewal(settings)
        self.topics = topics
        pair = self.renewal.store.active()
        check_tls_files(settings.mqtt, settings.terminal.id, (pair.cert_file, pair.key_file))
        self.pair: Pair | None = None  # the pair of the client now
        self._attempts = 0  # connection attempts since the last CONNACK

    def for_client(self) -> tuple[Path, Path]:
        """(certificate, key) for a new client: the pair in force now."""
        self.pair = self.renewal.store.active()
        return self.pair.cert_file, self.pair.key_file

    def connected(self) -> str | None:
        """The link is up with `pair`: the pairs before it may go (§7). Its serial."""
        self._attempts = 0
        if self.pair is None:
            return None
        self.renewal.store.confirm(self.pair)
        info = self.renewal.info(self.pair)
        return info.serial if info else None

    def give_up_new_pair(self) -> bool:
        """Before each connection attempt: True when a renewed pair has failed
        REVERT_AFTER attempts in a row without ever connecting and the pair before it is
        back in force (§7 keeps the old pair until the new one connects): make the client
        again. A broker that is merely down costs only a renewal asked again later."""
        self._attempts += 1
        if self._attempts <= REVERT_AFTER or not self.renewal.store.revert():
            return False
        self._attempts = 0
        return True

    def status_fields(self) -> dict[str, Any]:
        return {"cert": self.renewal.info(self.pair), "alarms": tuple(self.renewal.alarms())}

    def maybe_ask(self, client: mqtt.Client) -> None:
        if self.renewal.due():
            client.publish(self.topics.csr, self.renewal.request(), qos=1)

    def receive(self, payload: bytes) -> bool:
        """The city's answer; True when a new pair is in force (reconnect with it)."""
        return self.renewal.receive(payload) is not None


def make_renewal(settings: Settings) -> CertRenewal:
    """The renewal of this terminal's client certificate, its pairs in the state
    directory, after finishing whatever a power cut interrupted (`PairStore.recover`)."""
    m = settings.mqtt
    assert m.cert_file is not None and m.key_file is not None and m.ca_file is not None
    store = PairStore(settings.paths.state_dir / "tls", Pair(m.cert_file, m.key_file))
    store.recover()
    return CertRenewal(store, settings.terminal.id, settings.terminal.muni, m.ca_file)
