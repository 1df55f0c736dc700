"""nfcpy readers: the Sony RC-S380 (not PC/SC on Linux) and nfcpy's `udp:` test device.

`ContactlessFrontend(path)` with the configured path (`usb`, `usb:054c:06c1`,
`udp:127.0.0.1:54321`, …); the kernel's `port100` module must not hold an RC-S380, or
opening it fails with EBUSY. Cards are sensed as `106B` (a My Number Card is Type B) and
spoken to through nfcpy's Type 4 tag (ISO-DEP), one raw APDU per `transceive`.

nfcpy's errors are converted here and nowhere else: a tag that stops answering
(`Type4TagCommandError`, `nfc.clf.CommunicationError` incl. its own `TimeoutError`) is a
card that left; an OSError (ENODEV after an unplug, EIO) is a reader that left, and
TapSource reopens the device.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import time

import nfc
import nfc.clf
import nfc.tag
import nfc.tag.tt4

from ..config import ReaderSettings
from ..errors import CardRemovedError, ReaderMissingError, TransportError
from .base import CardLink, ReaderInfo, Transport, TransportInfo

# Between two RF polls: a tap lasts well over 200 ms, and a Pi should not spin.
POLL_INTERVAL_S = 0.05
# nfcpy logs every ISO-DEP retry of a card already gone; our own log says it once.
logging.getLogger("nfc").setLevel(logging.ERROR)


def _reader_gone(exc: OSError, path: str) -> ReaderMissingError:
    hint = {
        errno.EBUSY: " (busy: is the kernel module port100 bound to it? blacklist port100)",
        errno.EACCES: " (permission denied: install the udev rule for the reader)",
    }.get(exc.errno or 0, "")
    return ReaderMissingError(f"nfc device {path!r}: {exc.strerror or exc}{hint}")


class NfcLink(CardLink):
    def __init__(self, tag: nfc.tag.tt4.Type4Tag, path: str) -> None:
        self.tag = tag
        self._path = path

    def transmit(self, command: bytes) -> bytes:
        try:
            response = self.tag.transceive(bytearray(command))
        except (nfc.tag.tt4.Type4TagCommandError, nfc.clf.CommunicationError) as exc:
            raise CardRemovedError(f"card stopped answering: {exc}") from None
        except OSError as exc:
            raise _reader_gone(exc, self._path) from None
        if response is None or len(response) < 2:
            raise TransportError("tag answered without a status word")
        return bytes(response)


class NfcpyTransport(Transport):
    name = "nfcpy"

    def __init__(self, settings: ReaderSettings) -> None:
        self.settings = settings
        self.path = settings.nfc_path
        self._clf: nfc.ContactlessFrontend | None = None
        self._tag: nfc.tag.tt4.Type4Tag | None = None

    def open(self) -> None:
        self.close()
        clf = nfc.ContactlessFrontend()
        try:
            found = clf.open(self.path)
        except OSError as exc:
            raise _reader_gone(exc, self.path) from None
        if not found:
            raise ReaderMissingError(f"no nfc device on path {self.path!r}")
        self._clf = clf

    def close(self) -> None:
        self._tag = None
        clf, self._clf = self._clf, None
        if clf is not None:
            with contextlib.suppress(Exception):
                clf.close()

    def wait_for_card(self, timeout: float) -> CardLink | None:
        self._tag = None
        deadline = time.monotonic() + timeout
        while True:
            tag = self._activate(self._sense())
            if tag is not None:
                self._tag = tag
                return NfcLink(tag, self.path)
            if not self._pause_until(deadline):
                return None

    def wait_for_removal(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self._still_there():
            if not self._pause_until(deadline):
                return False
        self._tag = None
        return True

    def describe(self) -> TransportInfo:
        clf = nfc.ContactlessFrontend()
        try:
            found = clf.open(self.path)
        except OSError as exc:
            return TransportInfo("nfcpy", True, [
                ReaderInfo(self.path, selected=True, note=str(_reader_gone(exc, self.path)))])
        try:
            if not found:
                return TransportInfo("nfcpy", True, note=f"no nfc device on path {self.path!r}")
            return TransportInfo("nfcpy", True, [
                ReaderInfo(str(clf.device), selected=True, note=f"path {self.path}")])
        finally:
            clf.close()

    # -- nfcpy ----------------------------------------------------------------------------
    def _sense(self) -> nfc.clf.RemoteTarget | None:
        if self._clf is None:
            raise ReaderMissingError("nfc device not open")
        try:
            return self._clf.sense(nfc.clf.RemoteTarget("106B"))
        except OSError as exc:
            raise _reader_gone(exc, self.path) from None
        except nfc.clf.UnsupportedTargetError as exc:
            raise ReaderMissingError(f"{self._clf.device} cannot poll Type B: {exc}") from None

    def _activate(self, target: nfc.clf.RemoteTarget | None) -> nfc.tag.tt4.Type4Tag | None:
        if target is None or self._clf is None:
            return None
        try:
            tag = nfc.tag.activate(self._clf, target)
        except OSError as exc:
            raise _reader_gone(exc, self.path) from None
        except (nfc.clf.CommunicationError, nfc.tag.TagCommandError):
            return None  # left during activation: no tap
        return tag if isinstance(tag, nfc.tag.tt4.Type4Tag) else None

    def _still_there(self) -> bool:
        if self._tag is None:
            return self._sense() is not None
        try:
            # An ISO-DEP presence check (R(NAK)) keeps the card active, unlike re-sensing.
            return bool(self._tag.is_present)
        except OSError as exc:
            raise _reader_gone(exc, self.path) from None

    @staticmethod
    def _pause_until(deadline: float) -> bool:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(POLL_INTERVAL_S, left))
        return True
