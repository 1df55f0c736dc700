"""Signed bundles (mqtt-v1 §5): the trust, denylist and config a terminal holds.

A bundle is applied only if its signature verifies with the key trusted for the kind
(trust: the pinned root; denylist and config: an `ops` key of the current trust
bundle), its payload `kind` is the kind of the topic it came on, `muni` (and `tid` for
config) are ours, `version` is greater than the one held and (config) its settings pass
the owner's `config_check`. Otherwise what is held stays in force and the refusal is
counted (versions: versions.py). Applied bundles are written to disk atomically, so a
terminal restarted with no network verifies with the last good ones.

Readers (the tap thread) see an immutable snapshot swapped in one assignment; writers
(the sync thread, the CLI) serialise on a lock.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from reader.bundles.serials import SerialSet
from reader.bundles.snapshot import Denylist, Snapshot, build, kid_text
from reader.bundles.versions import DEFAULT_MAX_STEP, check_version, floored
from reader.card.cose import CoseError, Sign1, decode_sign1, public_key_from_point
from reader.config import Settings
from reader.errors import BundleError, ConfigError
from reader.system.atomic import fsync_dir
from reader.system.i18n import _
from reader.system.logs import fields
from reader.system.ownership import adopt, repair_command
from reader.wire.topics import BUNDLE_KINDS

log = logging.getLogger(__name__)

KINDS = BUNDLE_KINDS


@dataclass(frozen=True)
class Unstored:
    version: int
    data: bytes
    why: str  # English: the alarm in status.json and the MQTT status (a wire value)
    said: str = ""  # the same for the person at the CLI, in their language


class TrustStore:
    def __init__(self, root_public_key: bytes, muni: str, tid: str,
                 bundle_dir: Path | None = None, max_step: int = DEFAULT_MAX_STEP) -> None:
        self._root = public_key_from_point(root_public_key)
        self.max_step = max_step
        self.muni = muni
        self.tid = tid
        self.bundle_dir = bundle_dir
        self._snap = Snapshot()
        self._lock = threading.Lock()
        self._listeners: list[Callable[[str, int], None]] = []
        self._unstored: dict[str, Unstored] = {}
        self.refused = 0
        self.accepted: frozenset[str] = frozenset()  # neighbours: [verify] accept_munis
        # Set by the daemon: raises ConfigError for settings it cannot run with, so such a
        # config bundle is refused like a badly signed one (not held, not on disk, not in
        # the status versions) and the last good one stays in force, across restarts too.
        self.config_check: Callable[[Mapping[str, Any]], object] | None = None

    @classmethod
    def from_settings(cls, settings: Settings,
                      config_check: Callable[[Mapping[str, Any]], object] | None = None
                      ) -> TrustStore:
        """The terminal's store, with the bundles it saved loaded: the one way to build it.

        ConfigError when no root key is pinned (nothing could ever be verified)."""
        if not settings.verify.root_public_key:
            raise ConfigError(_(
                "setting verify.root_public_key is empty: pin the deployment's root key "
                "with `sukumo-reader provision` (or the demo's dev root)"))
        store = cls(bytes.fromhex(settings.verify.root_public_key), settings.terminal.muni,
                    settings.terminal.id, settings.paths.bundle_dir,
                    settings.verify.max_version_step)
        store.accept(settings.verify.accept_munis)
        store.config_check = config_check
        store.load_persisted()
        return store

    # -- what the tap path reads ------------------------------------------------------
    @property
    def versions(self) -> dict[str, int]:
        return dict(self._snap.versions)

    @property
    def config_settings(self) -> dict[str, Any] | None:
        return self._snap.config_settings

    @property
    def issued(self) -> dict[str, int]:
        """Each held bundle's `issued` time (Unix s), for status and doctor."""
        return dict(self._snap.issued)

    def issuer_keys(self, kid: bytes, muni: str, at: float) -> list[ec.EllipticCurvePublicKey]:
        """Issuer keys trusted for `muni` at time `at` under `kid` (check 3)."""
        return [entry.key for entry in self._snap.issuers.get(kid, ())
                if entry.muni == muni and entry.valid_at(at)]

    def accepts(self, muni: str) -> bool:
        return muni == self.muni or muni in self.accepted

    def accept(self, munis: Iterable[str]) -> None:
        """The neighbouring towns whose cards are accepted (the settings in force)."""
        self.accepted = frozenset(munis) - {self.muni}

    def is_denied(self, sn: bytes, mid: str, muni: str | None = None) -> bool:
        """Check 7 against the denylist of the card's own town. A neighbour's card whose
        town's denylist never arrived is not refused for that: its issuer key, its
        validity and its signature still are checked, as a home card's are before the
        first denylist; `neighbour_versions` in status shows what is held."""
        snap = self._snap
        if muni is None or muni == self.muni:
            return sn in snap.denied_serials or mid in snap.denied_members
        held = snap.neighbours.get(muni)
        return held is not None and (sn in held.serials or mid in held.members)

    @property
    def neighbour_versions(self) -> dict[str, int]:
        return {muni: d.version for muni, d in sorted(self._snap.neighbours.items())}

    @property
    def denied_serials(self) -> SerialSet:
        return self._snap.denied_serials

    def add_listener(self, fn: Callable[[str, int], None]) -> None:
        self._listeners.append(fn)

    # -- bundles in force but not on disk ----------------------------------------------
    @property
    def unstored(self) -> dict[str, Unstored]:
        return dict(self._unstored)

    @property
    def alarms(self) -> tuple[str, ...]:
        """One line per bundle in force but not stored (status.json, STATUS=, MQTT)."""
        return tuple(f"{kind} bundle version {u.version} is in force but not stored: {u.why}"
                     for kind, u in sorted(self._unstored.items()))

    def store_pending(self) -> bool:
        """Try again to store what could not be stored; True when nothing is left."""
        with self._lock:
            for kind, pending in list(self._unstored.items()):
                self._store(kind, pending.version, pending.data)
            return not self._unstored

    # -- applying bundles ---------------------------------------------------------------
    def apply(self, kind: str, data: bytes, *, now: int | None = None,
              muni: str | None = None) -> int:
        """Verify and apply one bundle that arrived as `kind`; return its version. `muni`:
        the town whose topic it came on, when not this terminal's (a neighbour's
        denylist)."""
        try:
            with self._lock:
                version = self._apply_locked(kind, data, now=now, persist=True, muni=muni)
        except BundleError as exc:
            self.refused += 1
            log.warning("bundle refused", **fields(kind=kind, reason=exc.reason, why=str(exc),
                                                   muni=muni or self.muni))
            raise
        log.info("bundle applied", **fields(kind=kind, version=version, muni=muni or self.muni))
        if muni not in (None, self.muni):
            return version  # a neighbour's denylist: nothing of this terminal's changed
        for listener in self._listeners:
            try:
                listener(kind, version)
            except Exception:  # a listener must never undo an applied bundle
                log.exception("bundle listener failed", **fields(kind=kind))
        return version

    def load_persisted(self, now: int | None = None) -> None:
        """Load the bundles saved on disk, trust first (the others are signed by its keys)."""
        if self.bundle_dir is None:
            return
        stored: list[tuple[str, str | None, Path]] = [
            (kind, None, self.bundle_dir / f"{kind}.cbor") for kind in KINDS]
        stored += [("denylist", path.stem.removeprefix("denylist-"), path)
                   for path in sorted(self.bundle_dir.glob("denylist-[0-9]*.cbor"))]
        for kind, muni, path in stored:
            if not path.exists():
                continue
            try:
                with self._lock:
                    self._apply_locked(kind, path.read_bytes(), now=now, persist=False,
                                       from_disk=True, muni=muni)
            except (BundleError, OSError) as exc:
                log.error("stored bundle unusable", **fields(kind=kind, path=str(path),
                                                            why=str(exc)))
        with self._lock:  # a stored trust bundle's floors hold across restarts
            self._snap = floored(self._snap)

    def _apply_locked(self, kind: str, data: bytes, *, now: int | None, persist: bool,
                      from_disk: bool = False, muni: str | None = None) -> int:
        if muni not in (None, self.muni):
            return self._apply_neighbour(kind, muni, data, now=now, persist=persist,
                                         from_disk=from_disk)
        if kind not in KINDS:
            raise BundleError("wrong_kind", _("unknown bundle kind {kind!r}").format(kind=kind))
        body = self._verified(kind, data, now, from_disk, self.muni)
        if body.get("kind") != kind:
            raise BundleError("wrong_kind", _(
                "the bundle says it is a {found!r} bundle, not a {kind} bundle").format(
                    found=body.get("kind"), kind=kind))
        if body.get("muni") != self.muni:
            raise BundleError("wrong_muni", _(
                "the bundle is for municipality {found!r}, this terminal is {muni}").format(
                    found=body.get("muni"), muni=self.muni))
        version = check_version(body.get("version"), self._snap.versions[kind],
                                None if from_disk else self.max_step)
        issued = body.get("issued")
        if not isinstance(issued, int) or isinstance(issued, bool):
            raise BundleError("malformed", _("its issued time is not an integer"))
        snap = build(kind, body, self._snap, self.tid)
        if kind == "config" and self.config_check is not None:
            try:
                self.config_check(snap.config_settings or {})
            except ConfigError as exc:
                raise BundleError("bad_settings", str(exc)) from None
        snap = replace(snap, versions={**self._snap.versions, kind: version},
                       issued={**self._snap.issued, kind: issued})
        self._snap = floored(snap) if kind == "trust" else snap
        if persist:
            # In force now all the same (a new denylist must not wait for disk space),
            # but an alarm until it is on disk.
            self._store(kind, version, data)
        return version

    def _store(self, kind: str, version: int, data: bytes) -> None:
        if self.bundle_dir is None:
            return
        try:
            _write_atomic(self.bundle_dir / f"{kind}.cbor", data, self.bundle_dir.parent)
        except OSError as exc:
            where, problem = self.bundle_dir / f"{kind}.cbor", exc.strerror or exc
            why = f"cannot write {where}: {problem}"
            said = _("cannot write {path}: {problem}").format(path=where, problem=problem)
            if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                repair = repair_command(self.bundle_dir.parent)
                why += f"; run `{repair}`"
                said += _("; run `{command}`").format(command=repair)
            unstored = Unstored(version, data, why, said)
            if self._unstored.get(kind) != unstored:
                log.error("bundle applied but not stored", **fields(
                    kind=kind, version=version, why=why))
            self._unstored[kind] = unstored
            return
        if self._unstored.pop(kind, None) is not None:
            log.info("bundle stored", **fields(kind=kind, version=version))

    def _apply_neighbour(self, kind: str, muni: str, data: bytes, *, now: int | None,
                         persist: bool, from_disk: bool) -> int:
        """A neighbouring town's denylist, on that town's topic: the same checks as ours
        (signed by an ops key trusted for that town, its `muni`, a version that goes up),
        kept apart from ours and only for a town this terminal accepts."""
        if kind != "denylist":
            raise BundleError("wrong_muni", _("only a denylist of another town is taken"))
        # From disk: it was accepted when it came (the config bundle that names its town
        # is loaded after this store); a town no longer accepted has its cards refused at
        # check 3, so its list is never asked.
        if muni not in self.accepted and not from_disk:
            raise BundleError("wrong_muni", _(
                "a denylist of {muni}, whose cards this terminal does not accept").format(
                    muni=muni))
        body = self._verified(kind, data, now, from_disk, muni)
        if body.get("kind") != kind or body.get("muni") != muni:
            raise BundleError("wrong_muni", _(
                "the bundle is for municipality {found!r}, not {muni}").format(
                    found=body.get("muni"), muni=muni))
        held = self._snap.neighbours.get(muni)
        version = check_version(body.get("version"), held.version if held else 0,
                                None if from_disk else self.max_step)
        own = build(kind, body, self._snap, self.tid)
        neighbours = {**self._snap.neighbours,
                      muni: Denylist(own.denied_serials, own.denied_members, version)}
        self._snap = replace(self._snap, neighbours=neighbours)
        if persist:
            self._store(f"denylist-{muni}", version, data)
        return version

    def _verified(self, kind: str, data: bytes, now: int | None, from_disk: bool,
                  muni: str) -> dict[str, Any]:
        """The payload of a bundle whose signature verifies for `kind` of `muni`."""
        try:
            envelope = decode_sign1(data)
            body = envelope.payload_map()
        except CoseError as exc:
            raise BundleError("malformed", _("not a signed bundle (COSE_Sign1): {why}").format(
                why=exc)) from None
        self._check_signature(kind, envelope, time.time() if now is None else now, from_disk,
                              muni)
        return body

    def _check_signature(self, kind: str, envelope: Sign1, t: float, from_disk: bool,
                         muni: str) -> None:
        if kind == "trust":
            if not envelope.verify(self._root):
                raise BundleError("bad_signature", _(
                    "the trust bundle is not signed by the root key pinned on this terminal"))
            return
        # A stored bundle was verified when it arrived. At boot its signer may have
        # expired or been rotated out since: it stays in force (and holds its version
        # against rollback) rather than letting revoked cards in; a signer still known
        # must still verify it (a damaged file).
        candidates = [k for k in self._snap.ops.get(envelope.kid, ())
                      if (from_disk or k.valid_at(t)) and k.muni in (None, muni)]
        if not candidates:
            if from_disk:
                log.info("stored bundle's signer is no longer an ops key; kept as verified "
                         "on arrival", **fields(kind=kind, kid=kid_text(envelope.kid)))
                return
            raise BundleError("untrusted_signer", _(
                "the {kind} bundle is signed by {kid}, which is not a current ops key of this "
                "terminal's trust bundle (an unknown or expired key)").format(
                    kind=kind, kid=kid_text(envelope.kid)))
        if not any(envelope.verify(k.key) for k in candidates):
            raise BundleError("bad_signature", _(
                "the {kind} bundle's signature does not verify (a damaged or altered "
                "file)").format(kind=kind))


def _write_atomic(path: Path, data: bytes, state_dir: Path) -> None:
    if not path.parent.is_dir():
        path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
    # Also repairs what an older release left root-owned after `sudo ... bundle import`.
    for existing in (path.parent, *path.parent.iterdir()):
        adopt(existing, state_dir)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    adopt(tmp, state_dir)
    os.replace(tmp, path)
    fsync_dir(path.parent)
