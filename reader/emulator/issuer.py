"""A development issuer: throw-away root, issuer and ops keys, bundles and cards.

For the demo, the tests and the benchmarks only. The city's real keys live in its HSM;
a terminal pinned to a development root (the `root_public_key` printed by
`sukumo-reader issue-card init`) must never be deployed.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cbor2
from cryptography.hazmat.primitives.asymmetric import ec

from reader.card.cose import point_of, private_key_from_scalar, sign1
from reader.card.profiles import MEMBER_AID, NURSERY_AID
from reader.emulator.card import CardFaults, VirtualCard

_TEN_YEARS = 10 * 365 * 86400


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _scalar_hex(key: ec.EllipticCurvePrivateKey) -> str:
    return f"{key.private_numbers().private_value:064x}"


@dataclass
class DevIssuer:
    root: ec.EllipticCurvePrivateKey
    issuer: ec.EllipticCurvePrivateKey
    ops: ec.EllipticCurvePrivateKey
    muni: str = "392081"
    issuer_kid: bytes = b"dev-issuer-1"
    ops_kid: bytes = b"dev-ops-1"

    @classmethod
    def generate(cls, muni: str = "392081") -> DevIssuer:
        # Random kids: two development issuers never vouch for each other's cards.
        tag = os.urandom(3).hex().encode()
        return cls(_new_key(), _new_key(), _new_key(), muni, b"dev-issuer-" + tag,
                   b"dev-ops-" + tag)

    @property
    def root_public_hex(self) -> str:
        return point_of(self.root.public_key()).hex()

    # -- persistence (a directory the demo and `issue-card` share) -----------------------
    def save(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "dev-issuer.json"
        path.write_text(json.dumps({
            "warning": "DEVELOPMENT KEYS - never deploy a terminal pinned to this root",
            "muni": self.muni,
            "root": _scalar_hex(self.root),
            "issuer": _scalar_hex(self.issuer),
            "ops": _scalar_hex(self.ops),
            "issuer_kid": self.issuer_kid.hex(),
            "ops_kid": self.ops_kid.hex(),
            "root_public_hex": self.root_public_hex,
        }, indent=2))
        path.chmod(0o600)
        return path

    @classmethod
    def load(cls, directory: Path) -> DevIssuer:
        spec = json.loads((directory / "dev-issuer.json").read_text())
        root, issuer, ops = (private_key_from_scalar(bytes.fromhex(spec[k]))
                             for k in ("root", "issuer", "ops"))
        return cls(root, issuer, ops, spec["muni"], bytes.fromhex(spec["issuer_kid"]),
                   bytes.fromhex(spec["ops_kid"]))

    # -- bundles (mqtt-v1 §5) -----------------------------------------------------------------
    def _common(self, kind: str, version: int, now: int | None) -> dict[str, Any]:
        return {"kind": kind, "version": version, "muni": self.muni,
                "issued": int(time.time() if now is None else now)}

    def trust_bundle(self, version: int = 1, now: int | None = None,
                     neighbours: Sequence[DevIssuer] = (),
                     floors: dict[str, int] | None = None) -> bytes:
        """This town's trust bundle; with `neighbours`, their issuers too (each bound to its
        town) and their ops keys bound to their towns (横展開: they sign their denylists);
        `floors`: lower the versions held of denylist / config (reader/bundles/versions.py)."""
        t = int(time.time() if now is None else now)
        window = {"nbf": t - 86400, "exp": t + _TEN_YEARS}
        body = self._common("trust", version, now) | {
            "issuers": [{"kid": town.issuer_kid, "muni": town.muni,
                         "pk": point_of(town.issuer.public_key())} | window
                        for town in (self, *neighbours)],
            "ops": [{"kid": self.ops_kid, "pk": point_of(self.ops.public_key())} | window,
                    *({"kid": town.ops_kid, "muni": town.muni,
                       "pk": point_of(town.ops.public_key())} | window
                      for town in neighbours)],
        } | ({"floors": floors} if floors is not None else {})
        return sign1(body, self.root, b"root")

    def denylist_bundle(self, version: int = 1, serials: Sequence[bytes] = (),
                        members: Sequence[str] = (), now: int | None = None) -> bytes:
        body = self._common("denylist", version, now) | {
            "serials": list(serials), "members": list(members)}
        return sign1(body, self.ops, self.ops_kid)

    def config_bundle(self, tid: str, settings: dict[str, Any], version: int = 1,
                      now: int | None = None) -> bytes:
        body = self._common("config", version, now) | {"tid": tid, "settings": settings}
        return sign1(body, self.ops, self.ops_kid)

    # -- cards (card-ap-v1 §3) ----------------------------------------------------------------
    def issue_card(self, mid: str, sn: bytes, *, ap: str = "member", aid: bytes | None = None,
                   iat: int | None = None, exp: int | None = None,
                   attr: dict[str, Any] | None = None,
                   signer: ec.EllipticCurvePrivateKey | None = None,
                   name: str | None = None, faults: CardFaults | None = None) -> VirtualCard:
        """A card with a fresh key pair and a record signed by this issuer (or `signer`)."""
        now = int(time.time())
        card_key = _new_key()
        record = {"v": 1, "muni": self.muni, "ap": ap, "mid": mid, "sn": sn,
                  "pk": point_of(card_key.public_key()),
                  "iat": now - 86400 if iat is None else iat,
                  "exp": now + 5 * 365 * 86400 if exp is None else exp}
        if attr:
            record["attr"] = attr
        signed = sign1(cbor2.dumps(record), signer or self.issuer, self.issuer_kid)
        aid = aid or bytes.fromhex(NURSERY_AID if ap == "nursery" else MEMBER_AID)
        return VirtualCard({aid: len(signed).to_bytes(2, "big") + signed}, card_key,
                           faults or CardFaults(), name or mid)


def clone_of(card: VirtualCard, name: str = "clone") -> VirtualCard:
    """The same record on another chip: the private key does not match `pk`."""
    return VirtualCard(dict(card.apps), _new_key(), CardFaults(), name)


def foreign_card(name: str = "my-number-card") -> VirtualCard:
    """A My Number Card not registered for the service: no Sukumo application on it."""
    return VirtualCard({}, _new_key(), CardFaults(), name)
