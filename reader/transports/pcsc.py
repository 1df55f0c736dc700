"""PC/SC readers (Sony RC-S300 through pcscd + libccid) with pyscard's low-level API.

pyscard's CardMonitor is not used: it misses the first event (pyscard #231), its thread
dies when the reader is unplugged or pcscd restarts (#82, #128) and it polls hard on a
Pi (#228). Instead one `SCardGetStatusChange` call blocks with a timeout on the chosen
reader and on the `\\\\?PnP?\\Notification` pseudo-reader (reader plugged / unplugged),
and any service error (pcscd restarted or gone) drops the context: TapSource's next
`open()` builds a fresh one. The card is identified by SELECT, never by its ATR
(a contactless ATR is synthesised by the reader from ATQB and varies).
"""

from __future__ import annotations

import contextlib
import time

from smartcard import scard

from reader.config import ReaderSettings
from reader.errors import CardRemovedError, ReaderMissingError, TransportError
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


class PcscLink(CardLink):
    def __init__(self, handle: int, protocol: int) -> None:
        self.handle = handle
        t0 = protocol == scard.SCARD_PROTOCOL_T0
        self._pci = scard.SCARD_PCI_T0 if t0 else scard.SCARD_PCI_T1

    def transmit(self, command: bytes) -> bytes:
        hresult, response = scard.SCardTransmit(self.handle, self._pci, list(command))
        if hresult != scard.SCARD_S_SUCCESS:
            raise scard_error(hresult, "transmit")
        if not response:
            # pcscd answers a transmit to a card that just left with success and no
            # bytes (seen with vpcd): no answer at all is a card gone, not a bad card.
            raise CardRemovedError("reader returned no answer: card left the field")
        return bytes(response)  # anything else, the session judges (card_error)

    def disconnect(self) -> None:
        # LEAVE_CARD: powering down a contactless card would only make it re-enumerate.
        scard.SCardDisconnect(self.handle, scard.SCARD_LEAVE_CARD)


class PcscTransport(Transport):
    name = "pcsc"

    def __init__(self, settings: ReaderSettings) -> None:
        super().__init__(settings)
        self.reader: str | None = None
        self._context: int | None = None
        self._state = scard.SCARD_STATE_UNAWARE  # last event state of `reader`
        self._pnp_state = scard.SCARD_STATE_UNAWARE
        self._link: PcscLink | None = None

    # -- Transport ------------------------------------------------------------------------
    def open(self) -> None:
        self.close()
        context = self._establish()
        try:
            readers = self._list_readers(context)
            reader = pick_reader(readers, self.settings.pcsc_reader)
            if reader is None:
                wanted = self.settings.pcsc_reader or "any reader"
                seen = ", ".join(readers) or "none"
                raise ReaderMissingError(
                    f"no PC/SC reader matching {wanted!r} (pcscd sees: {seen})")
        except TransportError:
            scard.SCardReleaseContext(context)
            raise
        self._context, self.reader = context, reader
        self._state = self._pnp_state = scard.SCARD_STATE_UNAWARE
        self._wait_for_change(0)  # learn the current state without blocking

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
            if _card_in_field(self._state):
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
            return TransportInfo("pcsc", False, note=(
                f"pcscd not reachable ({scard.SCardGetErrorMessage(hresult).strip()}): "
                "is it installed and running? (systemctl status pcscd)"))
        try:
            readers = self._list_readers(context)
            chosen = pick_reader(readers, self.settings.pcsc_reader)
            states = self._snapshot(context, readers)
        except TransportError as exc:
            readers, chosen, states = [], None, {}
            note = str(exc)
        else:
            note = "" if chosen else (
                f"no reader matches pcsc_reader = {self.settings.pcsc_reader!r}"
                if readers else "pcscd runs but sees no reader: plugged in? libccid installed?")
        finally:
            scard.SCardReleaseContext(context)
        return TransportInfo("pcsc", True, [
            ReaderInfo(r, selected=r == chosen,
                       card_present=_card_in_field(states[r]) if r in states else None,
                       note="contactless" if is_contactless(r) else "contact / other")
            for r in readers], note=note)

    # -- pcscd ----------------------------------------------------------------------------
    @staticmethod
    def _establish() -> int:
        hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        if hresult != scard.SCARD_S_SUCCESS:
            raise ReaderMissingError(
                f"pcscd not reachable: {scard.SCardGetErrorMessage(hresult).strip()}")
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
            raise ReaderMissingError("PC/SC reader not open")
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
                    raise ReaderMissingError(f"PC/SC reader {self.reader!r} is gone")
                self._state = event

    def _check_still_listed(self) -> None:
        assert self._context is not None
        if self.reader not in self._list_readers(self._context):
            raise ReaderMissingError(f"PC/SC reader {self.reader!r} was unplugged")

    def _connect(self) -> PcscLink | None:
        assert self._context is not None and self.reader is not None
        hresult, handle, protocol = scard.SCardConnect(
            self._context, self.reader, scard.SCARD_SHARE_SHARED,
            scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1)
        if hresult != scard.SCARD_S_SUCCESS:
            error = scard_error(hresult, "connect")
            if isinstance(error, CardRemovedError):
                return None  # gone again before we could talk to it: no tap
            raise error
        self._link = PcscLink(handle, protocol)
        return self._link

    def _drop_link(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            with contextlib.suppress(Exception):
                link.disconnect()
