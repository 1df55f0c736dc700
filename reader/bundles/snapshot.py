"""What a terminal holds of its signed bundles, as data: the keys it trusts, the denylists
(its own town's and its neighbours'), and a bundle's payload turned into them. Pure: no
I/O, no locks (store.py swaps these snapshots in whole)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from reader.bundles.serials import SerialSet
from reader.bundles.versions import floors
from reader.card.cose import public_key_from_point
from reader.errors import BundleError
from reader.system.i18n import _
from reader.wire.topics import BUNDLE_KINDS


@dataclass(frozen=True)
class TrustedKey:
    kid: bytes
    key: ec.EllipticCurvePublicKey
    nbf: int
    exp: int
    # Issuers are bound to one municipality. An ops key may be (it then signs only that
    # town's denylist and config bundles); one without `muni` signs for every town.
    muni: str | None = None

    def valid_at(self, t: float) -> bool:
        return self.nbf <= t <= self.exp


@dataclass(frozen=True)
class Snapshot:
    versions: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BUNDLE_KINDS, 0))
    issuers: dict[bytes, tuple[TrustedKey, ...]] = field(default_factory=dict)
    ops: dict[bytes, tuple[TrustedKey, ...]] = field(default_factory=dict)
    denied_serials: SerialSet = field(default_factory=SerialSet)
    denied_members: frozenset[str] = frozenset()
    config_settings: dict[str, Any] | None = None
    issued: dict[str, int] = field(default_factory=dict)
    floors: dict[str, int] = field(default_factory=dict)  # the trust bundle's `floors`
    # Neighbouring towns' denylists (muni -> the list and its version), for their
    # residents' cards: a card revoked by its own town is refused here too.
    neighbours: dict[str, Denylist] = field(default_factory=dict)


@dataclass(frozen=True)
class Denylist:
    serials: SerialSet
    members: frozenset[str]
    version: int


def build(kind: str, body: dict[str, Any], snap: Snapshot, tid: str) -> Snapshot:
    try:
        if kind == "trust":
            return replace(snap, issuers=trusted_keys(body.get("issuers"), with_muni=True),
                           ops=trusted_keys(body.get("ops"), with_muni=False),
                           floors=floors(body.get("floors", {})),
                           neighbours=snap.neighbours)
        if kind == "denylist":
            serials, members = body.get("serials"), body.get("members")
            if not isinstance(serials, list | tuple) or not isinstance(members, list | tuple):
                raise ValueError(_("serials and members must be arrays"))
            serial_set = SerialSet.of(serials)
            if not all(isinstance(m, str) for m in members):
                raise ValueError(_("every member must be text"))
            return replace(snap, denied_serials=serial_set, denied_members=frozenset(members))
        if body.get("tid") != tid:
            raise BundleError("wrong_tid", _(
                "the config bundle is for terminal {found!r}, this terminal is {tid}").format(
                    found=body.get("tid"), tid=tid))
        settings = body.get("settings")
        if not isinstance(settings, Mapping) or not all(isinstance(k, str) for k in settings):
            raise ValueError(_("settings must be a map with text keys"))
        return replace(snap, config_settings=dict(settings))
    except (ValueError, TypeError) as exc:
        raise BundleError("malformed", _("{kind} bundle payload: {why}").format(
            kind=kind, why=exc)) from None


def trusted_keys(entries: Any, *, with_muni: bool) -> dict[bytes, tuple[TrustedKey, ...]]:
    if not isinstance(entries, list | tuple):
        raise ValueError(_("key list missing"))
    out: dict[bytes, list[TrustedKey]] = {}
    for entry in entries:
        if not isinstance(entry, Mapping):
            raise ValueError(_("key entry is not a map"))
        kid, pk, nbf, exp = entry.get("kid"), entry.get("pk"), entry.get("nbf"), entry.get("exp")
        muni = entry.get("muni")
        if not isinstance(kid, bytes) or not isinstance(pk, bytes):
            raise ValueError(_("kid and pk must be byte strings"))
        if not isinstance(nbf, int) or not isinstance(exp, int):
            raise ValueError(_("nbf and exp must be integers"))
        if (with_muni or muni is not None) and not isinstance(muni, str):
            raise ValueError(_("issuer muni must be text"))
        out.setdefault(kid, []).append(TrustedKey(kid, public_key_from_point(pk), nbf, exp, muni))
    return {kid: tuple(keys) for kid, keys in out.items()}



def kid_text(kid: bytes) -> str:
    """A key id as a person reads it: the text when it is printable ASCII (issuers name
    their keys, e.g. "dev-ops-80c559"), else hex."""
    text = kid.decode("ascii", "replace")
    return repr(text) if kid.isascii() and text.isprintable() else kid.hex()
