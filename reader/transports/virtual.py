"""The virtual reader: a real backend that needs no hardware.

Cards reach it two ways. In-process, `present(card)` / `lift()` (tests, the demo,
benchmarks). Or through a feed directory (`[reader] virtual_feed`): each `*.card` file
(a VirtualCard as JSON, written atomically by rename) is one tap, taken in name
order; the card stays in the field for its `hold_s`, then is lifted and its file
removed. The feed lets a separate process (a crash test, a technician's script) tap
cards on a running daemon.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from pathlib import Path

from reader.config import ReaderSettings
from reader.emulator.card import CardTorn, VirtualCard
from reader.errors import CardRemovedError, CardTimeoutError, ReaderMissingError
from reader.system.i18n import _
from reader.system.logs import fields
from reader.transports.base import CardLink, ReaderInfo, Transport, TransportInfo

log = logging.getLogger(__name__)
_FEED_POLL_S = 0.02


class _OutOfTime(Exception):
    pass


class _Lifted(Exception):
    pass


class VirtualLink(CardLink):
    def __init__(self, transport: VirtualTransport, card: VirtualCard, presence: int) -> None:
        self._transport = transport
        self.card = card
        self._presence = presence
        self._given_up = False

    def transmit(self, command: bytes, timeout: float) -> bytes:
        # By presence, not by card: the same card lifted and tapped again is a new link.
        if self._transport.presence != self._presence:
            raise CardRemovedError(_("card left the virtual reader"))
        if self._given_up:
            raise CardTimeoutError(_("link given up at the tap deadline"))
        ends_at = time.monotonic() + timeout

        def radio_time(seconds: float) -> None:
            # The card works while the reader waits, as over a real radio: the reader
            # waits no longer than the deadline (then the card is given up), and sees a
            # card lifted meanwhile at once.
            left = ends_at - time.monotonic()
            if self._transport.left_within(self._presence, min(seconds, max(left, 0.0))):
                raise _Lifted
            if seconds > left:
                raise _OutOfTime

        try:
            response = self.card.transmit(command, radio_time)
        except CardTorn:
            self._transport.lift()
            raise CardRemovedError(_("card torn away mid-sequence")) from None
        except _Lifted:
            raise CardRemovedError(_("card left the virtual reader mid-answer")) from None
        except _OutOfTime:
            self._given_up = True
            raise CardTimeoutError(_("virtual card gave no answer within {seconds:.2f} s"
                                     ).format(seconds=timeout)) from None
        return response  # the session judges a missing status word (card_error)


class VirtualTransport(Transport):
    name = "virtual"

    def __init__(self, settings: ReaderSettings | None = None) -> None:
        super().__init__(settings or ReaderSettings())
        self.feed: Path | None = self.settings.virtual_feed
        self.current: VirtualCard | None = None
        self._changed = threading.Condition()
        self._file: Path | None = None  # feed file of the card in the field
        self._presented_at = 0.0
        self._opened = False
        # Each presence gets a number, so a card lifted and presented again between two
        # polls (in-process, in microseconds) is still seen to have left the field.
        self._presence = 0
        self._linked_presence = -1

    @property
    def presence(self) -> int:
        """The number of the card presence now in the field (-1: the field is empty)."""
        return self._presence if self.current is not None else -1

    def left_within(self, presence: int, timeout: float) -> bool:
        """Wait up to `timeout` s; True as soon as presence `presence` has left the field."""
        with self._changed:
            return self._changed.wait_for(lambda: self.presence != presence, timeout)

    # -- test / demo side -------------------------------------------------------------------
    def present(self, card: VirtualCard) -> None:
        with self._changed:
            card.reset()
            self.current, self._presented_at = card, time.monotonic()
            self._presence += 1
            self._changed.notify_all()

    def lift(self) -> None:
        with self._changed:
            self.current = None
            if self._file is not None:
                with contextlib.suppress(FileNotFoundError):
                    self._file.unlink()
                self._file = None
            self._changed.notify_all()

    # -- Transport ----------------------------------------------------------------------------
    def open(self) -> None:
        if self.feed is not None and not self.feed.is_dir():
            raise ReaderMissingError(_("virtual reader feed directory {path} does not exist"
                                       ).format(path=self.feed))
        self._opened = True

    def claim_key(self) -> str | None:
        return f"virtual:{self.feed.resolve()}" if self.feed is not None else None

    def close(self) -> None:
        self._opened = False

    def wait_for_card(self, timeout: float) -> CardLink | None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                if self.current is None and self.feed is not None:
                    self._take_from_feed()
                if self.current is not None:
                    self._linked_presence = self._presence
                    return VirtualLink(self, self.current, self._presence)
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._changed.wait(min(left, _FEED_POLL_S) if self.feed else left)

    def wait_for_removal(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._changed:
            while self.current is not None and self._presence == self._linked_presence:
                held = time.monotonic() - self._presented_at
                if self._file is not None and held >= self.current.hold_s:
                    self.lift()  # a feed card lifts itself after its hold time
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                wait = left
                if self._file is not None:
                    wait = min(left, max(self.current.hold_s - held, 0.0) + 0.001)
                self._changed.wait(wait)
        return True

    def describe(self) -> TransportInfo:
        note = (_("feed directory {path}").format(path=self.feed) if self.feed
                else _("in-process (demo/tests)"))
        present = self.feed is None or self.feed.is_dir()
        return TransportInfo("virtual", True, [
            ReaderInfo("Sukumo virtual reader", selected=True,
                       card_present=self.current is not None,
                       note=note if present else _("missing: {what}").format(what=note))])

    def _take_from_feed(self) -> None:
        assert self.feed is not None
        try:
            files = sorted(self.feed.glob("*.card"))
        except OSError as exc:
            raise ReaderMissingError(_("virtual reader feed unreadable: {why}").format(
                why=exc)) from None
        for path in files:
            try:
                card = VirtualCard.from_json(path.read_text())
            except FileNotFoundError:
                continue
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                # A broken feed file is a broken card: dropped, never a dead daemon.
                log.warning("unreadable virtual card file", **fields(file=path.name, why=str(exc)))
                with contextlib.suppress(OSError):
                    path.unlink()
                if path.is_dir():  # a directory cannot be unlinked: rename it out of the glob
                    with contextlib.suppress(OSError):
                        path.rename(path.with_suffix(".card-unreadable"))
                continue
            card.reset()
            self.current, self._file, self._presented_at = card, path, time.monotonic()
            self._presence += 1
            return
