"""The city's signed bundles (mqtt-v1 §5): made from a JSON payload, signed by a Signer
(city/signing.py), checked against the version registry, published retained.

A terminal applies a bundle only when its version is above the one it holds, and refuses
the others silently as far as the city can see (a count in its status). So the city keeps
a registry of every version it signed and published, per (muni, kind, tid): a version
that does not go up is refused here, before anything is published, and every signature is
recorded (who, when, what, its SHA-256). The trust bundle is signed by the root key on an
offline machine (`bundle sign --version N` with no database), then carried over and
published: `publish` checks and records it then.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from city.signing import Signer
from reader.card.cose import CoseError, decode_sign1, sign1
from reader.errors import ConfigError
from reader.wire.topics import Topics

KINDS = ("trust", "denylist", "config")
_BYTE_FIELDS = ("kid", "pk")  # hex in the JSON, byte strings in the CBOR payload


class StaleVersion(ConfigError):
    """A version not above the last one the registry holds: terminals would refuse it."""


@dataclass(frozen=True)
class Facts:
    """What a signed bundle says of itself (read without verifying: the city signed it)."""

    kind: str
    version: int
    muni: str
    tid: str  # "" unless a config bundle
    sha256: str
    size: int

    @property
    def topic_tid(self) -> str:
        return self.tid or "-"


class Registry(Protocol):
    """The versions the city signed (city/db.py's Store implements it on PostgreSQL)."""

    def last_bundle_version(self, muni: str, kind: str, tid: str, *,
                            published: bool) -> int:
        """The highest version recorded (only those published, when `published`); 0."""
        ...

    def record_bundle(self, facts: Facts, *, action: str, by: str, key: str) -> None: ...


def payload_from_json(doc: dict[str, Any], kind: str, muni: str, tid: str,
                      version: int) -> dict[str, Any]:
    """The CBOR payload of `doc` (byte fields written as hex in JSON), with the common
    fields of §5 set here, not trusted from the file."""
    if kind not in KINDS:
        raise ConfigError(f"unknown bundle kind {kind!r}: one of {', '.join(KINDS)}")
    if kind == "config" and not tid:
        raise ConfigError("a config bundle goes to one terminal: give --tid")
    payload = {k: v for k, v in doc.items() if k not in ("kind", "version", "muni", "issued")}
    try:
        for entry in (*payload.get("issuers", ()), *payload.get("ops", ())):
            for name in _BYTE_FIELDS:
                entry[name] = bytes.fromhex(entry[name])
        if "serials" in payload:
            payload["serials"] = [bytes.fromhex(s) for s in payload["serials"]]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(f"the payload's keys and serials must be hex strings ({exc})") from exc
    payload.update(kind=kind, version=version, muni=muni, issued=int(time.time()))
    if kind == "config":
        payload["tid"] = tid
    return payload


def read_payload(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path} is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: the payload is a JSON object")
    return doc


def read_signed(path: Path) -> bytes:
    """A signed bundle file: raw COSE, or hex text (the spec's vectors and many tools)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        return bytes.fromhex(raw.decode().strip())
    except (UnicodeDecodeError, ValueError):
        return raw


def facts_of(data: bytes) -> Facts:
    try:
        body = decode_sign1(data).payload_map()
    except CoseError as exc:
        raise ConfigError(f"not a signed bundle: {exc}") from exc
    kind, version, muni = body.get("kind"), body.get("version"), body.get("muni")
    if (kind not in KINDS or not isinstance(version, int) or isinstance(version, bool)
            or not isinstance(muni, str)):
        raise ConfigError("the bundle's payload lacks kind, version or muni (mqtt-v1 §5)")
    tid = body.get("tid", "") if kind == "config" else ""
    return Facts(kind, version, muni, str(tid), hashlib.sha256(data).hexdigest(), len(data))


def check_version(registry: Registry, facts: Facts, *, published: bool) -> None:
    """Signing: above every version signed before. Publishing: above every version
    published before (a version signed and not yet published may go out once)."""
    last = registry.last_bundle_version(facts.muni, facts.kind, facts.tid,
                                        published=published)
    if facts.version <= last:
        where = f"{facts.kind} of {facts.muni}" + (f"/{facts.tid}" if facts.tid else "")
        done = "published" if published else "signed"
        raise StaleVersion(f"version {facts.version} is not above {last}, the last {where} "
                           f"the city {done}: every terminal would refuse it as a rollback")


def sign(doc: dict[str, Any], *, kind: str, muni: str, tid: str, signer: Signer,
         kid: bytes | None, registry: Registry | None, version: int | None, by: str,
         ) -> bytes:
    """Sign `doc`. The version is the registry's next one (or the one given, checked), and
    the signature is recorded; with no registry (the offline root machine) it must be
    given, and `publish` checks it later."""
    if version is None:
        if registry is None:
            raise ConfigError("offline (no database): give the version with --version")
        version = registry.last_bundle_version(muni, kind, tid, published=False) + 1
    payload = payload_from_json(doc, kind, muni, tid, version)
    data = sign1(payload, signer.sign, kid if kid is not None else signer.kid)
    facts = facts_of(data)
    if registry is not None:
        check_version(registry, facts, published=False)
        registry.record_bundle(facts, action="signed", by=by, key=signer.where)
    return data


def topic_of(facts: Facts, prefix: str) -> str:
    return Topics(prefix, facts.muni, facts.topic_tid).bundle(facts.kind)


