"""What every transport is, and the tap behaviour all of them share.

A transport only moves bytes: it says when a card arrives and leaves and carries APDUs
to it. Everything a citizen notices (a card left on the reader counts once, a vanished
reader is retried and comes back by itself) lives once, in `TapSource`, so PC/SC,
nfcpy and the virtual reader cannot drift apart.
"""

from __future__ import annotations

import contextlib
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

from reader.config import ReaderSettings
from reader.errors import ReaderBusyError, ReaderMissingError, TransportError
from reader.system.flock import Flock
from reader.system.logs import fields
from reader.transports.claim import claim as claim_reader

log = logging.getLogger(__name__)


class CardLink(ABC):
    """One presence of one card in the field. Valid until the card leaves."""

    @abstractmethod
    def transmit(self, command: bytes, timeout: float) -> bytes:
        """Send one command APDU, return the response APDU (data + SW1 SW2).

        Returns within `timeout` s (what is left of the tap deadline) whatever the card
        or the reader driver does: past it, the link is given up for good and
        CardTimeoutError is raised. Raises CardRemovedError when the card is gone,
        TransportError for other link failures, CardProtocolError when the card broke
        the radio protocol. Whatever bytes came back are returned as they are: the
        session judges them.
        """


@dataclass(frozen=True)
class ReaderInfo:
    """One reader or device a transport can see, for `sukumo-reader readers`."""

    name: str
    selected: bool
    card_present: bool | None = None
    note: str = ""


@dataclass(frozen=True)
class TransportInfo:
    backend: str
    available: bool
    readers: list[ReaderInfo] = field(default_factory=list)
    note: str = ""


class Transport(ABC):
    """A reader backend. Constructed from the validated ReaderSettings (the backend table
    calls exactly this constructor); opened lazily."""

    name: str = ""

    def __init__(self, settings: ReaderSettings) -> None:
        self.settings = settings

    @abstractmethod
    def open(self) -> None:
        """Find and open the configured reader. Raises ReaderMissingError if it is not there."""

    @abstractmethod
    def close(self) -> None:
        """Release the reader. Safe to call twice and after a failure."""

    @abstractmethod
    def wait_for_card(self, timeout: float) -> CardLink | None:
        """Block up to `timeout` s for a card in the field; None when there is none.

        Returns a link to whatever card is in the field now, even one already processed:
        TapSource, not the transport, decides what counts as a new tap.
        Raises ReaderMissingError when the reader is gone.
        """

    @abstractmethod
    def wait_for_removal(self, timeout: float) -> bool:
        """Block up to `timeout` s until the field is empty; True when it is.

        Raises ReaderMissingError when the reader is gone (which also empties the field).
        """

    @abstractmethod
    def describe(self) -> TransportInfo:
        """What this backend sees, without opening anything for long (technician view)."""

    def claim_key(self) -> str | None:
        """What this opened transport reads, as the reader's lock names it (claim.py);
        None when it is nothing another process could read too."""
        return None


ReaderState = str  # "ok" | "missing"

# A reader that comes back must be used again within 2 s (issue: real readers).
REOPEN_INTERVAL_S = 0.5
LOST_REOPEN_S = 0.1


class TapSource:
    """Turns a Transport into taps: each card presence once, reader loss survived.

    `next_tap` returns a CardLink for a card that arrived since the last one was lifted,
    or None when nothing happened within the timeout. After a tap, the same card must
    leave the field before another tap is reported, so a card left on the reader counts
    once however long it lies there.
    """

    def __init__(
        self,
        transport: Transport,
        on_state: Callable[[ReaderState], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        claim: bool = False,
    ) -> None:
        self.transport = transport
        self.state: ReaderState = "closed"
        self._on_state = on_state
        self._clock = clock
        self._await_removal = False
        self._next_open_at = 0.0
        self._claims = claim  # hold the reader against other daemons (claim.py)
        self._claim: Flock | None = None

    def next_tap(self, timeout: float) -> CardLink | None:
        if self.state != "ok" and not self._try_open(timeout):
            return None
        try:
            if self._await_removal:
                if not self.transport.wait_for_removal(timeout):
                    return None
                self._await_removal = False
            link = self.transport.wait_for_card(timeout)
        except ReaderMissingError as exc:
            self._lost(exc)
            return None
        except TransportError as exc:
            # A glitch while polling (not during a tap): treat like a lost reader, so
            # the reopen logic runs instead of spinning on a broken handle.
            self._lost(exc)
            return None
        except Exception as exc:  # a driver bug must cost a reopen, never the daemon
            log.exception("reader backend failed while polling")
            self._lost(exc)
            return None
        if link is not None:
            self._await_removal = True
        return link

    @property
    def card_on_reader(self) -> bool:
        """The last tapped card has not been seen leaving yet (no new tap until it has)."""
        return self._await_removal

    def close(self) -> None:
        self.transport.close()
        self._unclaim()
        self.state = "closed"

    def _try_open(self, timeout: float) -> bool:
        now = self._clock()
        if now < self._next_open_at:
            time.sleep(min(timeout, self._next_open_at - now))
            return False
        try:
            self.transport.open()
        except TransportError as exc:
            self._next_open_at = self._clock() + REOPEN_INTERVAL_S
            self._set_state("missing", str(exc))
            return False
        self._unclaim()  # never twice: our own second lock would call us busy
        if self._claims and (key := self.transport.claim_key()) is not None:
            try:
                self._claim = claim_reader(key)
            except ReaderBusyError:  # another daemon's reader: refused, never shared
                self.transport.close()
                raise
        # A reader that was gone empties the field: whatever is on it now is a new tap.
        self._await_removal = False
        self._set_state("ok", "reader ready")
        return True

    def _lost(self, exc: Exception) -> None:
        with contextlib.suppress(TransportError):
            self.transport.close()
        self._unclaim()  # a reader that comes back may come back under another name
        # Reopen soon: a reader lost mid-poll is often back at once (pcscd restarted).
        self._next_open_at = self._clock() + LOST_REOPEN_S
        self._set_state("missing", str(exc))

    def _unclaim(self) -> None:
        if self._claim is not None:
            self._claim.release()
            self._claim = None

    def _set_state(self, state: ReaderState, why: str) -> None:
        if state == self.state:
            return  # logged once per change, not once per poll
        previous, self.state = self.state, state
        level = logging.WARNING if state == "missing" else logging.INFO
        log.log(level, "reader state changed", **fields(
            backend=self.transport.name, previous=previous, state=state, why=why))
        if self._on_state is not None:
            self._on_state(state)
