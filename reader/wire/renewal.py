"""mqtt-v1 §7 payloads: a terminal's certificate request and the city's answer.

Both sides use them: the terminal builds requests and parses answers; the city service
(city/ca/renewal.py) parses requests and builds answers. Pure, like messages.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from reader.errors import SyncError
from reader.wire.event import dumps
from reader.wire.messages import VERSION, _json_object

# §7 error codes: the CSR names another terminal; the current certificate is revoked; the
# city will not sign (expired certificate, bad CSR, unknown terminal); try again later.
ERRORS = ("subject", "revoked", "policy", "busy")


@dataclass(frozen=True)
class CsrRequest:
    tid: str
    req: str
    csr: str  # PEM PKCS#10


@dataclass(frozen=True)
class CertAnswer:
    req: str
    chain: str | None  # PEM: the certificate, then intermediates; None with an error
    error: str | None = None
    retry_after_s: int | None = None


def build_csr_request(tid: str, req: str, csr_pem: str) -> bytes:
    return dumps({"v": VERSION, "tid": tid, "req": req, "csr": csr_pem}).encode()


def parse_csr_request(payload: bytes) -> CsrRequest:
    """A §7 request; SyncError naming what is wrong (no `req`: nothing can be answered)."""
    doc = _json_object(payload, "csr request")
    req = doc.get("req")
    if not isinstance(req, str) or not req:
        raise SyncError("csr request: `req` must be a non-empty string")
    tid, csr = doc.get("tid"), doc.get("csr")
    if doc.get("v") != VERSION or not isinstance(tid, str) or not isinstance(csr, str):
        return CsrRequest(tid if isinstance(tid, str) else "", req, "")
    return CsrRequest(tid, req, csr)


def build_cert_answer(req: str, chain: str) -> bytes:
    return dumps({"v": VERSION, "req": req, "chain": chain}).encode()


def build_cert_error(req: str, error: str, retry_after_s: int | None = None) -> bytes:
    if error not in ERRORS:
        raise ValueError(f"not a §7 error code: {error!r}")
    doc: dict[str, object] = {"v": VERSION, "req": req, "error": error}
    if retry_after_s is not None:
        doc["retry_after_s"] = retry_after_s
    return dumps(doc).encode()


def parse_cert_answer(payload: bytes) -> CertAnswer:
    """The city's §7 answer; SyncError when it is neither a chain nor an error."""
    doc = _json_object(payload, "cert answer")
    req, chain, error = doc.get("req"), doc.get("chain"), doc.get("error")
    if doc.get("v") != VERSION or not isinstance(req, str):
        raise SyncError("cert answer: needs v = 1 and a string `req`")
    if isinstance(chain, str):
        return CertAnswer(req, chain)
    if isinstance(error, str):
        retry = doc.get("retry_after_s")
        return CertAnswer(req, None, error, retry if isinstance(retry, int) else None)
    raise SyncError("cert answer: neither `chain` nor `error`")
