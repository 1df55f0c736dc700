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
import time
from collections.abc import Iterator

import nfc
import nfc.clf
import nfc.tag
import nfc.tag.tt4

from reader.config import ReaderSettings
from reader.errors import (
    CardProtocolError,
    CardRemovedError,
    CardTimeoutError,
    ReaderMissingError,
)
from reader.system import plain
from reader.system.i18n import _
from reader.transports.base import CardLink, ReaderInfo, Transport, TransportInfo

# Between two RF polls: a tap lasts well over 200 ms, and a Pi should not spin.
POLL_INTERVAL_S = 0.05
# nfcpy's ISO-DEP loop lets a card chain or ask for waiting time forever: one APDU
# may take at most this many frames and this long (a 2048-byte record at 256 bytes an
# APDU is ~2 frames each; slow signing asks for a few S(WTX)).
MAX_FRAMES_PER_APDU = 64
MAX_APDU_S = 5.0


def _reader_gone(exc: OSError, path: str) -> ReaderMissingError:
    hint = {
        errno.EBUSY: _(" (busy: is the kernel module port100 bound to it? blacklist port100)"),
        errno.EACCES: _(" (permission denied: install the udev rule for the reader)"),
    }.get(exc.errno or 0, "")
    return ReaderMissingError(_("nfc device {path!r}: {why}").format(
        path=path, why=plain.os_words(exc)) + hint)


class _FrameBudget:
    """Wraps the frontend's frame exchange: during one APDU, a card over budget is cut
    off. Sensing and activation (outside `transmit`) pass through untouched.

    Time is bounded twice: between frames (a card sending S(WTX) forever) and within
    one frame, whose receive timeout is cut to what is left of the tap deadline, so an
    APDU returns by the deadline even while nfcpy waits for a frame."""

    def __init__(self, clf: nfc.ContactlessFrontend) -> None:
        self._exchange = clf.exchange
        self.frames = 0
        self.deadline: float | None = None  # set while one APDU is under way
        self._tap_deadline = False  # the deadline is the tap's (else the per-APDU cap)
        clf.exchange = self  # the ISO-DEP loop calls clf.exchange for every frame

    @contextlib.contextmanager
    def one_apdu(self, timeout: float) -> Iterator[None]:
        self.frames = 0
        self._tap_deadline = timeout < MAX_APDU_S
        self.deadline = time.monotonic() + min(timeout, MAX_APDU_S)
        try:
            yield
        finally:
            self.deadline = None

    def _over(self) -> CardProtocolError:
        if self._tap_deadline and self.frames <= MAX_FRAMES_PER_APDU:
            return CardTimeoutError(_("card did not answer within the tap deadline "
                                      "({frames} ISO-DEP frames)").format(frames=self.frames))
        return CardProtocolError(_("card exceeded the ISO-DEP frame budget of one APDU"))

    def __call__(self, frame: bytearray, timeout: float) -> bytearray:
        if self.deadline is None:
            return self._exchange(frame, timeout)
        self.frames += 1
        left = self.deadline - time.monotonic()
        if self.frames > MAX_FRAMES_PER_APDU or left <= 0:
            raise self._over()
        try:
            return self._exchange(frame, min(timeout, left))
        except nfc.clf.TimeoutError:
            if time.monotonic() >= self.deadline:
                raise self._over() from None
            raise  # the card's own frame timeout: nfcpy's ISO-DEP recovery decides


class NfcLink(CardLink):
    def __init__(self, tag: nfc.tag.tt4.Type4Tag, path: str, budget: _FrameBudget) -> None:
        self.tag = tag
        self._path = path
        self._budget = budget

    def transmit(self, command: bytes, timeout: float) -> bytes:
        try:
            with self._budget.one_apdu(timeout):
                response = self.tag.transceive(bytearray(command))
        except (nfc.tag.tt4.Type4TagCommandError, nfc.clf.CommunicationError) as exc:
            raise CardRemovedError(_("card stopped answering: {why}").format(why=exc)) from None
        except OSError as exc:
            raise _reader_gone(exc, self._path) from None
        except CardProtocolError:
            raise
        except Exception as exc:  # nfcpy's ISO-DEP code trips on malformed frames
            raise CardProtocolError(_("card broke ISO-DEP: {why!r}").format(why=exc)) from None
        return bytes(response or b"")  # the session judges a missing status word


class NfcpyTransport(Transport):
    name = "nfcpy"

    def __init__(self, settings: ReaderSettings) -> None:
        super().__init__(settings)
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
            raise ReaderMissingError(_("no nfc device on path {path!r}").format(path=self.path))
        self._clf = clf
        self._budget = _FrameBudget(clf)

    def claim_key(self) -> str | None:
        device = getattr(self._clf, "device", None)
        return f"nfc:{device.path}" if device is not None else None

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
                return NfcLink(tag, self.path, self._budget)
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
                return TransportInfo("nfcpy", True, note=_(
                    "no nfc device on path {path!r}").format(path=self.path))
            return TransportInfo("nfcpy", True, [
                ReaderInfo(str(clf.device), selected=True, note=_("path {path}").format(
                    path=self.path))])
        finally:
            clf.close()

    # -- nfcpy ----------------------------------------------------------------------------
    def _sense(self) -> nfc.clf.RemoteTarget | None:
        if self._clf is None:
            raise ReaderMissingError(_("nfc device not open"))
        try:
            return self._clf.sense(nfc.clf.RemoteTarget("106B"))
        except OSError as exc:
            raise _reader_gone(exc, self.path) from None
        except nfc.clf.UnsupportedTargetError as exc:
            raise ReaderMissingError(_("{device} cannot poll Type B: {why}").format(
                device=self._clf.device, why=exc)) from None

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
