"""mqtt-v1 §7 on the city's side: the answer to one terminal's certificate request.

`answer(ca, muni, tid, payload)` is pure apart from the CA's log: the caller (the city
service's MQTT intake) takes `muni` and `tid` from the topic the request came on — the
broker lets a terminal publish only on its own topics (§6: username = certificate CN =
tid), so the topic is who asked — and publishes the answer on that terminal's `cert`
topic only. The broker has already checked the TLS certificate the terminal connected
with; here the CA's own log says whether the terminal's current certificate is revoked
or expired.
"""

from __future__ import annotations

import datetime as dt
import logging

from cryptography import x509

from city.ca.authority import CLOCK_SKEW, CaError, CertificateAuthority, CsrRefused
from city.ca.log import CaBusy
from reader.errors import SyncError
from reader.system.logs import fields
from reader.wire.renewal import (
    build_cert_answer,
    build_cert_error,
    parse_csr_request,
)
from reader.wire.topics import Topics, split_terminal_topic

log = logging.getLogger(__name__)

# A terminal renews about once a year; one a few minutes after another is a terminal
# gone wrong (or a stolen key minting spares): answer `busy` until this much has passed.
MIN_INTERVAL = dt.timedelta(hours=1)
BUSY_RETRY_S = 60  # the CA's lock was held (another signing): ask again in a minute


def reply(ca: CertificateAuthority, prefix: str, topic: str,
          payload: bytes) -> tuple[str, bytes] | None:
    """(topic, payload) of the answer to a request that came on `topic`: always the `cert`
    topic of the terminal whose session sent it. None: nothing to answer (logged)."""
    parts = split_terminal_topic(topic, prefix)
    if parts is None or parts[2] != "csr":
        return None
    muni, tid, _leaf = parts
    out = answer(ca, muni, tid, payload)
    return None if out is None else (Topics(prefix, muni, tid).cert, out)


def _error(req: str, code: str, retry_after_s: int | None = None) -> bytes:
    return build_cert_error(req, code, retry_after_s)


def answer(ca: CertificateAuthority, muni: str, tid: str, payload: bytes,
           now: dt.datetime | None = None) -> bytes | None:
    """The §7 answer to `payload`, which came on `tid`'s own csr topic; None when the
    request is so malformed that it has no `req` to answer to (it is logged)."""
    now = now or dt.datetime.now(dt.UTC)
    try:
        request = parse_csr_request(payload)
    except SyncError as exc:
        log.warning("certificate request not answered", **fields(tid=tid, why=str(exc)))
        return None
    req = request.req
    if not request.csr:
        return _error(req, "policy")
    if request.tid != tid:
        return _error(req, "subject")
    if muni != ca.muni:
        return _error(req, "policy")  # this CA issues for another municipality
    try:
        csr = x509.load_pem_x509_csr(request.csr.encode())
        csr_tid, csr_muni = ca.check_csr(csr)
    except CsrRefused as exc:
        log.info("certificate request refused", **fields(
            tid=tid, req=req, error=exc.code, why=str(exc)))
        return _error(req, exc.code)
    except ValueError:
        return _error(req, "policy")
    if (csr_tid, csr_muni) != (tid, muni):
        log.info("certificate request refused: subject is another terminal's",
                 **fields(tid=tid, req=req, csr_tid=csr_tid))
        return _error(req, "subject")

    mine = [c for c in ca.log.issued() if c.tid == tid and c.muni == muni]
    again = next((c for c in mine if c.req == req), None)
    if again is not None:  # the same request twice (QoS 1, a lost answer): same answer
        pem = ca.log.certificate_pem(again.serial)
        assert pem is not None
        return build_cert_answer(req, ca.chain_pem(x509.load_pem_x509_certificate(
            pem.encode())))
    if not mine:
        return _error(req, "policy")  # not a terminal this CA ever issued for
    current = mine[-1]  # the last one issued (the log is in issuance order)
    if current.revoked:
        return _error(req, "revoked")
    if current.expired(now):
        return _error(req, "policy")
    # not_before (issued a few minutes before it, CLOCK_SKEW) is when the current
    # certificate came into use.
    age = now - current.not_before - CLOCK_SKEW
    if age < MIN_INTERVAL:
        wait = MIN_INTERVAL - age
        return _error(req, "busy", int(wait.total_seconds()) + 1)
    try:
        cert = ca.sign(csr, req=req, by=f"renewal:{tid}", lock_timeout=2.0)
    except CaBusy:
        return _error(req, "busy", BUSY_RETRY_S)
    except CaError as exc:
        log.warning("certificate request not signed", **fields(
            tid=tid, req=req, why=str(exc)))
        return _error(req, "policy")
    log.info("certificate renewed", **fields(
        tid=tid, req=req, serial=f"{cert.serial_number:x}",
        not_after=cert.not_valid_after_utc.isoformat()))
    return build_cert_answer(req, ca.chain_pem(cert))
