"""The terminal's key/certificate pairs on disk, so that a power cut at any moment leaves
one complete pair in force (mqtt-v1 §7).

The pair provisioning installed (`[mqtt] key_file`, `cert_file`, under /etc, which the
service cannot write) is the first. Pairs renewed over the air live in the state
directory, each in a directory of its own that appears under its final name only once
complete:

    <state>/tls/pairs/<serial>/key.pem, cert.pem   written, fsynced, then the directory
                                                   renamed from pairs/.new-<serial>
    <state>/tls/current -> pairs/<serial>          the pair in force: a symlink replaced
                                                   by rename(2), atomic
    <state>/tls/pending/key.pem, request.json      the key of the request in progress

The old pair stays until a connection with the new one has succeeded (`confirm`); a
pair is used only if its certificate matches its key, so `current` pointing at anything
incomplete (it never does) would fall back to the provisioned pair, not to nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reader.config import Settings
from reader.system.atomic import fsync_dir, write_atomic
from reader.system.logs import fields

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

log = logging.getLogger(__name__)

# Tests kill the process (SIGKILL) at one of the steps of installing a new pair.
CRASH_ENV = "SUKUMO_READER_TEST_RENEWAL_CRASH"
STEPS = ("asked", "received", "written", "switched", "connected")


def crash_point(step: str) -> None:
    """SIGKILL ourselves here when a test asks for it (a power cut at this step)."""
    if os.environ.get(CRASH_ENV) == step:
        log.warning("test: killed at renewal step", **fields(step=step))
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True)
class Pair:
    cert_file: Path
    key_file: Path


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def load_pair(pair: Pair) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    """The pair's certificate and key when both load and belong together, else None."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        cert = x509.load_pem_x509_certificate(pair.cert_file.read_bytes())
        key = serialization.load_pem_private_key(pair.key_file.read_bytes(), None)
    except (OSError, ValueError, TypeError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or cert.public_key() != key.public_key():
        return None
    return cert, key


def with_pair_in_force(settings: Settings) -> Settings:
    """`settings` with the pair in force as [mqtt] cert_file / key_file: what doctor
    checks and probes with once a renewed pair has replaced the provisioned one."""
    m = settings.mqtt
    if m.cert_file is None or m.key_file is None:
        return settings
    provisioned = Pair(m.cert_file, m.key_file)
    pair = PairStore(settings.paths.state_dir / "tls", provisioned).active()
    if pair == provisioned:
        return settings
    return settings.model_copy(update={"mqtt": m.model_copy(update={
        "cert_file": pair.cert_file, "key_file": pair.key_file})})


class PairStore:
    def __init__(self, tls_dir: Path, provisioned: Pair) -> None:
        self.dir = tls_dir
        self.provisioned = provisioned
        self.pairs = tls_dir / "pairs"
        self.current_link = tls_dir / "current"
        self.pending = tls_dir / "pending"
        self.unconfirmed = tls_dir / "unconfirmed"  # the serial in force, not yet connected

    def active(self) -> Pair:
        """The pair in force: the last one renewed if it is complete, else provisioning's."""
        if self.current_link.is_symlink():
            target = self.current_link.resolve()
            pair = Pair(target / "cert.pem", target / "key.pem")
            if load_pair(pair) is not None:
                return pair
            log.error("renewed certificate pair unusable: using the provisioned one",
                      **fields(path=str(target)))
        return self.provisioned

    @property
    def renewed(self) -> bool:
        return self.active() != self.provisioned

    # -- the request in progress ----------------------------------------------------------

    def pending_request(self) -> dict[str, Any] | None:
        try:
            doc = json.loads((self.pending / "request.json").read_text())
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) else None

    def save_request(self, doc: dict[str, Any]) -> None:
        self.pending.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(self.pending / "request.json", json.dumps(doc).encode(), 0o600)

    def pending_key(self) -> ec.EllipticCurvePrivateKey:
        """The key of the request in progress, made once (it never leaves the terminal) and
        kept until a certificate for it is installed: a late answer still fits it."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        path = self.pending / "key.pem"
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), None)
            if isinstance(key, ec.EllipticCurvePrivateKey):
                return key
        except (OSError, ValueError, TypeError):
            pass
        self.pending.mkdir(parents=True, exist_ok=True, mode=0o700)
        new = ec.generate_private_key(ec.SECP256R1())
        write_atomic(path, new.private_bytes(serialization.Encoding.PEM,
                                             serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()), 0o600)
        return new

    # -- installing -----------------------------------------------------------------------

    def install(self, chain_pem: bytes, serial: str) -> Pair:
        """Put the pending key and this certificate chain in force, in steps each of which
        leaves a complete pair in force if the power goes: the new pair's directory is
        complete before it gets its name, and `current` moves to it in one rename."""
        key_pem = (self.pending / "key.pem").read_bytes()
        self.pairs.mkdir(parents=True, exist_ok=True, mode=0o700)
        final = self.pairs / serial
        if not final.is_dir():
            tmp = self.pairs / f".new-{serial}"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(mode=0o700)
            _write(tmp / "key.pem", key_pem, 0o600)
            _write(tmp / "cert.pem", chain_pem, 0o644)
            fsync_dir(tmp)
            os.rename(tmp, final)
            fsync_dir(self.pairs)
        crash_point("written")
        write_atomic(self.unconfirmed, serial.encode(), 0o600)
        self._point_at(final)
        crash_point("switched")
        shutil.rmtree(self.pending, ignore_errors=True)
        return Pair(final / "cert.pem", final / "key.pem")

    def _point_at(self, target: Path) -> None:
        link = self.dir / ".current.new"
        link.unlink(missing_ok=True)
        os.symlink(target.relative_to(self.dir), link)
        os.replace(link, self.current_link)
        fsync_dir(self.dir)

    def confirm(self, pair: Pair) -> None:
        """A connection with `pair` succeeded: the pairs before it may go."""
        if pair == self.provisioned or not self.pairs.is_dir():
            return
        crash_point("connected")
        keep = pair.cert_file.parent.name
        for old in self.pairs.iterdir():
            if old.name != keep:
                shutil.rmtree(old, ignore_errors=True)
                log.info("old certificate pair removed", **fields(pair=old.name))
        self.unconfirmed.unlink(missing_ok=True)

    def revert(self, now: dt.datetime | None = None) -> bool:
        """The renewed pair in force has never connected: put the one before it back (the
        newest other pair still valid, else the provisioned one) and drop the new one.
        False when there is nothing valid to go back to: keep trying the new one."""
        now = now or dt.datetime.now(dt.UTC)
        try:
            new = self.current_link.resolve(strict=True)
            if self.unconfirmed.read_text() != new.name:
                return False
        except OSError:
            return False

        def valid(pair: Pair) -> bool:
            loaded = load_pair(pair)
            return loaded is not None and loaded[0].not_valid_after_utc > now

        older = [Pair(d / "cert.pem", d / "key.pem") for d in sorted(self.pairs.iterdir())
                 if d != new and not d.name.startswith(".")]
        older = [p for p in older if valid(p)]
        if older:
            self._point_at(older[-1].cert_file.parent)
        elif valid(self.provisioned):
            self.current_link.unlink()
            fsync_dir(self.dir)
        else:
            return False
        shutil.rmtree(new, ignore_errors=True)
        self.unconfirmed.unlink(missing_ok=True)
        log.warning("renewed certificate never connected: back to the pair before it",
                    **fields(pair=new.name))
        return True

    def recover(self) -> None:
        """At start-up: finish what a power cut interrupted. A half-written pair directory
        goes; a complete pair for the pending key that never got `current` (cut between
        the two steps) is put in force; a pending key already in force is done with."""
        if self.pairs.is_dir():
            for tmp in self.pairs.glob(".new-*"):
                shutil.rmtree(tmp, ignore_errors=True)
        (self.dir / ".current.new").unlink(missing_ok=True)
        if not (self.pending / "key.pem").exists():
            return
        key = self.pending_key()
        active = load_pair(self.active())
        for d in sorted(self.pairs.iterdir()) if self.pairs.is_dir() else []:
            loaded = load_pair(Pair(d / "cert.pem", d / "key.pem"))
            if loaded is None or loaded[1].public_key() != key.public_key():
                continue
            if active is None or active[1].public_key() != key.public_key():
                log.info("renewed certificate put in force after a restart",
                         **fields(pair=d.name))
                write_atomic(self.unconfirmed, d.name.encode(), 0o600)
                self._point_at(d)
            shutil.rmtree(self.pending, ignore_errors=True)
            return
