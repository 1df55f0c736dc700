"""The one exception tree of sukumo-reader.

Every error the daemon can meet derives from `SukumoError`, split by who is to blame
and what the caller can do about it, so that the tap loop needs exactly one
`except SukumoError` to keep running whatever a card, a reader or the disk does.

    SukumoError
    ├── ConfigError            bad settings: the process exits non-zero at start-up
    ├── TerminalBusyError      another daemon already runs this terminal (exit 2)
    │   └── ReaderBusyError    … or reads this reader, from another state directory
    ├── TransportError         the reader / the radio link
    │   ├── CardRemovedError   the card left the field mid-sequence  -> reason card_removed
    │   ├── ReaderMissingError no reader (unplugged, pcscd gone)     -> "reader missing"
    │   └── TransportUnavailableError  the backend's library is not installed
    ├── CardProtocolError      the card broke its radio protocol (ISO-DEP)   -> card_error
    │   └── CardTimeoutError   the card did not finish within the tap deadline -> card_error
    ├── BundleError            a signed bundle was refused (mqtt-v1 §5); `.reason` says why
    ├── QueueError             the durable event queue
    │   ├── StorageFullError   the database cannot grow: the tap gets the error sound
    │   └── StorageFailedError a write or fsync failed (EIO, read-only): the same, and
    │                          the uncertain tap is voided (reader/queue/voiding.py)
    ├── AudioError             the sound device; never stops a tap
    └── SyncError              the MQTT link to the city
"""

from __future__ import annotations


class SukumoError(Exception):
    """Base of every error raised by sukumo-reader."""


class ConfigError(SukumoError):
    """A setting is missing or invalid. The message names the key, the file and what is allowed."""


class TerminalBusyError(SukumoError):
    """Another process holds the terminal (its state directory's lock, daemonlock.py).

    `pid` is the holder's (0 when unknown); the message says it and what to do."""

    def __init__(self, message: str, pid: int, state_dir: object) -> None:
        super().__init__(message)
        self.pid, self.state_dir = pid, state_dir


class ReaderBusyError(TerminalBusyError):
    """Another process holds the physical reader (reader/transports/claim.py): `pid` is
    its (0 when unknown), `reader` what it holds."""

    def __init__(self, message: str, pid: int, reader: str) -> None:
        super().__init__(message, pid, None)
        self.reader = reader


class TransportError(SukumoError):
    """The reader or the radio link failed."""


class CardRemovedError(TransportError):
    """The card left the reader's field before the command sequence finished."""


class ReaderMissingError(TransportError):
    """The configured reader is not there (unplugged, driver or pcscd gone)."""


class TransportUnavailableError(TransportError):
    """The transport's library (pyscard, nfcpy) cannot be imported on this machine."""


class CardProtocolError(SukumoError):
    """The card broke the link's protocol (malformed ISO-DEP frames, endless chaining).

    Answers that break card-ap-v1 itself (status words, lengths) are not exceptions: the
    CardSession turns them into the spec's reasons."""


class CardTimeoutError(CardProtocolError):
    """The card (or the reader driver under it) did not answer within the tap deadline.

    The transport has given the link up: the tap ends with card_error, the card must
    leave the field before it counts again."""


class BundleError(SukumoError):
    """A signed bundle (trust, denylist, config) was refused.

    `reason` is a short machine-readable word (`bad_signature`, `rollback`, `wrong_kind`,
    `wrong_muni`, `wrong_tid`, `malformed`, `untrusted_signer`, `bad_settings`,
    `version_jump`) for logs and
    status counters.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class QueueError(SukumoError):
    """The durable event queue failed."""


class StorageFullError(QueueError):
    """The database cannot grow (disk full or over the configured budget)."""


class StorageFailedError(QueueError):
    """The storage failed a write or its fsync: the tap was not recorded, and the queue
    takes no tap on that connection again (reader/queue/voiding.py)."""


class AudioError(SukumoError):
    """The sound device failed. Logged; a tap never waits for or fails on sound."""


class SyncError(SukumoError):
    """The link to the city (MQTT) failed."""
