"""PC/SC readers (Sony RC-S300 through pcscd + libccid) with pyscard's low-level API.

pyscard's CardMonitor is not used: it misses the first event (pyscard #231), its thread
dies when the reader is unplugged or pcscd restarts (#82, #128) and it polls hard on a
Pi (#228). Instead one `SCardGetStatusChange` call blocks with a timeout on the chosen
reader and on the `\\\\?PnP?\\Notification` pseudo-reader (reader plugged / unplugged),
and any service error (pcscd restarted or gone) drops the context: TapSource's next
`open()` builds a fresh one. The card is identified by SELECT, never by its ATR
(a contactless ATR is synthesised by the reader from ATQB and varies).

The tap deadline. pcscd has no per-call timeout: `SCardTransmit` blocks until the reader
driver answers, and a driver can take as long as the card lets it (libccid keeps waiting
while the reader reports time extensions; CCID #155 shows a transmit held 13 minutes;
vpcd waits for its card with no timeout at all). Nothing can abort that call from
another thread: pcsc-lite's client holds the context's mutex across the whole blocking
receive (winscard_clnt.c), so `SCardDisconnect` or `SCardReleaseContext` on that context
would wait for it too, and `SCardCancel` cancels only `SCardGetStatusChange` (its API
doc; PCSC PR #17). So every card presence gets its own context and its own thread
(`_CardChannel`): the tap thread hands it each call and waits no longer than the
deadline. Past it, the channel is given up: the tap thread never touches that context
again, and the channel's thread, once pcscd answers (the driver's own timeout, or the
card lifted), disconnects with SCARD_RESET_CARD, so a card that half-ran a command
starts its next presence from scratch, and drops its context. The polling context is
separate, so the tap loop keeps turning (and feeding the watchdog) and sees the card
leave. While pcscd still holds the reader for the given-up call, no new connection is
tried: it would only queue behind it.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from smartcard import scard

from reader.config import ReaderSettings
from reader.errors import (
    CardRemovedError,
    CardTimeoutError,
    ReaderMissingError,
    TransportError,
)
from reader.system.i18n import _
from reader.system.logs import fields
from reader.transports.base import CardLink, ReaderInfo, Transport, TransportInfo

PNP_READER = "\\\\?PnP?\\Notification"
# Name hints of contactless readers, for the default pick (RC-S300 is "SONY FeliCa Port/
# PaSoRi 4.0 ..."; vsmartcard's vpcd is "Virtual PCD 00 00").
CONTACTLESS_HINTS = ("contactless", "rc-s300", "pasori", "felica", "picc", "nfc",
                     "virtual pcd")

_SERVICE_GONE = {scard.SCARD_E_NO_SERVICE, scard.SCARD_E_SERVICE_STOPPED,
                 scard.SCARD_F_COMM_ERROR, scard.SCARD_E_INVALID_HANDLE}
_READER_GONE = _SERVICE_GONE | {scard.SCARD_E_UNKNOWN_READER, scard.SCARD_E_READER_UNAVAILABLE,
                                scard.SCARD_E_NO_READERS_AVAILABLE}
_CARD_GONE = {scard.SCARD_W_REMOVED_CARD, scard.SCARD_E_NO_SMARTCARD,
              scard.SCARD_W_RESET_CARD, scard.SCARD_W_UNPOWERED_CARD,
              scard.SCARD_W_UNRESPONSIVE_CARD, scard.SCARD_E_NOT_TRANSACTED,
              scard.SCARD_E_COMM_DATA_LOST}
_NOT_STATE_BITS = scard.SCARD_STATE_CHANGED


def _no_pcscd(hresult: int) -> str:
    """pcscd's "Service not available." in the reader's words (its code names it)."""
    return _("pcscd (the smart-card service) does not answer ({code}): start it with "
             "`sudo systemctl start pcscd.socket`, then check `systemctl status pcscd`"
             ).format(code=f"{hresult & 0xFFFFFFFF:#010x}")


def scard_error(hresult: int, doing: str) -> TransportError:
    """The project's exception for a PC/SC result code (one table, one place)."""
    text = f"{doing}: {scard.SCardGetErrorMessage(hresult)} ({hresult & 0xFFFFFFFF:#010x})"
    if hresult in _CARD_GONE:
        return CardRemovedError(text)
    if hresult in _READER_GONE:
        return ReaderMissingError(text)
    return TransportError(text)


def is_contactless(name: str) -> bool:
    lowered = name.lower()
    return any(hint in lowered for hint in CONTACTLESS_HINTS)


def pick_reader(readers: list[str], wanted: str) -> str | None:
    """The configured substring's first match; by default the first contactless reader,
    else the first reader at all."""
    if wanted:
        return next((r for r in readers if wanted.lower() in r.lower()), None)
    return next((r for r in readers if is_contactless(r)), readers[0] if readers else None)


def _card_in_field(event_state: int) -> bool:
    return bool(event_state & scard.SCARD_STATE_PRESENT) and not (
        event_state & scard.SCARD_STATE_MUTE)


log = logging.getLogger(__name__)


class _CardChannel:
    """One PC/SC context for one card presence, used by one thread only (see the module
    docstring): calls are handed over and waited for with a timeout."""

    def __init__(self) -> None:
        self.context = PcscTransport.establish()
        self.handle: int | None = None
        self.given_up = False
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None] = (
            queue.SimpleQueue())
        self._thread = threading.Thread(target=self._work, name="pcsc-card", daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        """Given up, and pcscd still holds the reader for the call it was given up in."""
        return self.given_up and self._thread.is_alive()

    def call(self, fn: Callable[[], Any], timeout: float, doing: str) -> Any:
        if self.given_up:
            raise CardTimeoutError(_("{doing}: the link was given up at the tap deadline"
                                     ).format(doing=doing))
        job: Future[Any] = Future()
        self._jobs.put((fn, job))
        try:
            return job.result(timeout=max(timeout, 0.0))
        except FutureTimeout:
            self.give_up()
            raise CardTimeoutError(_("{doing}: no answer from the card within {seconds:.2f} s "
                                     "(pcscd still waits for it)").format(
                                         doing=doing, seconds=timeout)) from None

    def give_up(self) -> None:
        self.given_up = True
        self._jobs.put(None)

    def close(self) -> None:
        """End normally: leave the card as it is, drop the context (without waiting)."""
        if not self.given_up:
            self._jobs.put(None)

    def _work(self) -> None:
        while (item := self._jobs.get()) is not None:
            fn, job = item
            if job.set_running_or_notify_cancel():
                try:
                    job.set_result(fn())
                except BaseException as exc:
                    job.set_exception(exc)
        # RESET after a given-up call: the card may hold half a command (a pending GET
        # RESPONSE, a signature under way). LEAVE otherwise: powering a contactless card
        # down would only make it re-enumerate.
        how = scard.SCARD_RESET_CARD if self.given_up else scard.SCARD_LEAVE_CARD
        with contextlib.suppress(Exception):
            if self.handle is not None:
                scard.SCardDisconnect(self.handle, how)
        with contextlib.suppress(Exception):
            scard.SCardReleaseContext(self.context)
        if self.given_up:
            # A context released with a handle still open (a connect given up that later
            # succeeded) makes pcscd disconnect it (MSGRemoveContext): nothing leaks.
            log.info("given-up card call returned; card reset, context dropped")


class PcscLink(CardLink):
    def __init__(self, channel: _CardChannel, protocol: int) -> None:
        self._channel = channel
        t0 = protocol == scard.SCARD_PROTOCOL_T0
        self._pci = scard.SCARD_PCI_T0 if t0 else scard.SCARD_PCI_T1

    def transmit(self, command: bytes, timeout: float) -> bytes:
        handle, pci, apdu = self._channel.handle, self._pci, list(command)
        hresult, response = self._channel.call(
            lambda: scard.SCardTransmit(handle, pci, apdu), timeout, "transmit")
        if hresult != scard.SCARD_S_SUCCESS:
            raise scard_error(hresult, "transmit")
        if not response:
            # pcscd answers a transmit to a card that just left with success and no
            # bytes (seen with vpcd): no answer at all is a card gone, not a bad card.
            raise CardRemovedError(_("reader returned no answer: card left the field"))
        return bytes(response)  # anything else, the session judges (card_error)

    def disconnect(self) -> None:
        self._channel.close()

    @property
    def channel(self) -> _CardChannel:
        return self._channel


class PcscTransport(Transport):
    name = "pcsc"

    def __init__(self, settings: ReaderSettings) -> None:
        super().__init__(settings)
        self.reader: str | None = None
        self._context: int | None = None
        self._state = scard.SCARD_STATE_UNAWARE  # last event state of `reader`
        self._pnp_state = scard.SCARD_STATE_UNAWARE
        self._link: PcscLink | None = None
        self._given_up: list[_CardChannel] = []  # still held by pcscd

    # -- Transport ------------------------------------------------------------------------
    def open(self) -> None:
        self.close()
        context = self.establish()
        try:
            readers = self._list_readers(context)
            reader = pick_reader(readers, self.settings.pcsc_reader)
            if reader is None:
                wanted = self.settings.pcsc_reader or _("any reader")
                seen = ", ".join(readers) or _("none")
                raise ReaderMissingError(_(
                    "no PC/SC reader matching {wanted!r} (pcscd sees: {seen})").format(
                        wanted=wanted, seen=seen))
        except TransportError:
            scard.SCardReleaseContext(context)
            raise
        self._context, self.reader = context, reader
        self._state = self._pnp_state = scard.SCARD_STATE_UNAWARE
        self._wait_for_change(0)  # learn the current state without blocking

    def claim_key(self) -> str | None:
        return f"pcsc:{self.reader}" if self.reader is not None else None

    def close(self) -> None:
        self._drop_link()
        if self._context is not None:
            with contextlib.suppress(Exception):
                scard.SCardReleaseContext(self._context)
            self._context = None

    def wait_for_card(self, timeout: float) -> CardLink | None:
        self._drop_link()
        deadline = time.monotonic() + timeout
        while True:
            if _card_in_field(self._state) and not self._reader_held():
                link = self._connect()
                if link is not None:
                    return link
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self._wait_for_change(left)

    def wait_for_removal(self, timeout: float) -> bool:
        self._drop_link()
        deadline = time.monotonic() + timeout
        while self._state & scard.SCARD_STATE_PRESENT:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._wait_for_change(left)
        return True

    def describe(self) -> TransportInfo:
        hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        if hresult != scard.SCARD_S_SUCCESS:
            return TransportInfo("pcsc", False, note=_no_pcscd(hresult))
        try:
            readers = self._list_readers(context)
            chosen = pick_reader(readers, self.settings.pcsc_reader)
            states = self._snapshot(context, readers)
        except TransportError as exc:
            readers, chosen, states = [], None, {}
            note = str(exc)
        else:
            note = "" if chosen else (
                _("no reader matches pcsc_reader = {wanted!r}").format(
                    wanted=self.settings.pcsc_reader)
                if readers else _("pcscd runs but sees no reader: plugged in? libccid "
                                  "installed?"))
        finally:
            scard.SCardReleaseContext(context)
        return TransportInfo("pcsc", True, [
            ReaderInfo(r, selected=r == chosen,
                       card_present=_card_in_field(states[r]) if r in states else None,
                       note=_("contactless") if is_contactless(r) else _("contact / other"))
            for r in readers], note=note)

    # -- pcscd ----------------------------------------------------------------------------
    @staticmethod
    def establish() -> int:
        hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        if hresult != scard.SCARD_S_SUCCESS:
            raise ReaderMissingError(_no_pcscd(hresult))
        return context

    @staticmethod
    def _list_readers(context: int) -> list[str]:
        hresult, readers = scard.SCardListReaders(context, [])
        if hresult == scard.SCARD_E_NO_READERS_AVAILABLE:
            return []
        if hresult != scard.SCARD_S_SUCCESS:
            raise scard_error(hresult, "list readers")
        return list(readers)

    @staticmethod
    def _snapshot(context: int, readers: list[str]) -> dict[str, int]:
        if not readers:
            return {}
        hresult, states = scard.SCardGetStatusChange(
            context, 0, [(r, scard.SCARD_STATE_UNAWARE) for r in readers])
        if hresult != scard.SCARD_S_SUCCESS:
            return {}
        return {name: event for name, event, _atr in states}

    def _wait_for_change(self, timeout: float) -> None:
        """One blocking SCardGetStatusChange on our reader and the PnP pseudo-reader."""
        if self._context is None or self.reader is None:
            raise ReaderMissingError(_("PC/SC reader not open"))
        watched = [(self.reader, self._state & ~_NOT_STATE_BITS),
                   (PNP_READER, self._pnp_state & ~_NOT_STATE_BITS)]
        hresult, states = scard.SCardGetStatusChange(
            self._context, max(0, int(timeout * 1000)), watched)
        if hresult == scard.SCARD_E_TIMEOUT:
            return
        if hresult != scard.SCARD_S_SUCCESS:
            error = scard_error(hresult, "waiting for a card")
            # A card-level code here still means the reader view is stale: reopen.
            raise error if isinstance(error, ReaderMissingError) else ReaderMissingError(str(error))
        for name, event, _atr in states:
            if name == PNP_READER:
                first_look = self._pnp_state == scard.SCARD_STATE_UNAWARE
                if event & scard.SCARD_STATE_CHANGED and not first_look:
                    self._check_still_listed()
                self._pnp_state = event
            else:
                if event & (scard.SCARD_STATE_UNKNOWN | scard.SCARD_STATE_UNAVAILABLE):
                    raise ReaderMissingError(_("PC/SC reader {name!r} is gone").format(
                        name=self.reader))
                self._state = event

    def _check_still_listed(self) -> None:
        assert self._context is not None
        if self.reader not in self._list_readers(self._context):
            raise ReaderMissingError(_("PC/SC reader {name!r} was unplugged").format(
                name=self.reader))

    def _reader_held(self) -> bool:
        """A given-up call is still inside pcscd (which holds the reader for it)."""
        self._given_up = [c for c in self._given_up if c.busy]
        return bool(self._given_up)

    def _connect(self) -> PcscLink | None:
        assert self._context is not None and self.reader is not None
        channel = _CardChannel()
        reader = self.reader
        try:
            # SCardConnect may block too (PCSC #254: it waits while the reader is held).
            hresult, handle, protocol = channel.call(
                lambda: scard.SCardConnect(channel.context, reader, scard.SCARD_SHARE_SHARED,
                                           scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1),
                self.settings.tap_deadline_s, "connect")
        except CardTimeoutError as exc:
            self._given_up.append(channel)
            log.warning("card connection given up", **fields(why=str(exc)))
            return None
        if hresult != scard.SCARD_S_SUCCESS:
            channel.close()
            error = scard_error(hresult, "connect")
            if isinstance(error, CardRemovedError):
                return None  # gone again before we could talk to it: no tap
            raise error
        channel.handle = handle
        self._link = PcscLink(channel, protocol)
        return self._link

    def _drop_link(self) -> None:
        link, self._link = self._link, None
        if link is None:
            return
        if link.channel.given_up:
            self._given_up.append(link.channel)
        link.disconnect()
