"""Library and system errors in the reader's words, their original text kept in the log.

The system (errno), tomllib, cryptography, OpenSSL and pcscd word their errors in
English, and their text means little to a technician ("Could not deserialize key data
… ASN.1 parsing error"). Where a person reads one, it is said here in the reader's
language, naming what is wrong; the caller's sentence names the file and the fix. The
library's own text goes to the log (`keep`), for whoever debugs it: under the daemon
that is its journal at debug level; a CLI command sends it to the system journal (`to_journal`, read
with `journalctl -t sukumo-reader`), never to the screen.
"""

from __future__ import annotations

import errno
import logging
import logging.handlers
import os
import re

from reader.system.i18n import N_, _

log = logging.getLogger("reader.original")
JOURNAL_SOCKET = "/dev/log"

# The errors a technician meets most, in words; any other says its errno name (EIO).
ERRNO_WORDS = {
    errno.ENOENT: N_("it does not exist"),
    errno.EACCES: N_("this user may not read or write it"),
    errno.EPERM: N_("this user may not change it"),
    errno.EROFS: N_("the file system is read-only"),
    errno.ENOSPC: N_("the disk is full"),
    errno.EISDIR: N_("it is a directory, not a file"),
    errno.ENOTDIR: N_("a part of the path is not a directory"),
    errno.ECONNREFUSED: N_("connection refused: nothing answers on that port"),
    errno.ENETUNREACH: N_("network unreachable"),
    errno.EHOSTUNREACH: N_("host unreachable"),
    errno.ETIMEDOUT: N_("no answer in time"),
}


def keep(original: object, **where: object) -> None:
    """The library's own words, for the log only (never printed to the person). Debug
    level: the daemon meets the same error again at each retry, and its own warning
    already says what happened (SUKUMO_READER_LOG__LEVEL=DEBUG shows these too)."""
    log.debug("%s", original, extra={"fields": {k: str(v) for k, v in where.items()}})


def os_words(exc: OSError) -> str:
    """What an OSError means, in the reader's language (the original goes to the log)."""
    keep(exc, path=exc.filename or "")
    words = ERRNO_WORDS.get(exc.errno or -1)
    if words:
        return _(words)
    name = errno.errorcode.get(exc.errno or -1)
    return _("the system refused ({code})").format(code=name) if name else \
        _("the system refused")


# SQLite's result codes a technician meets, in words; any other says its name.
SQLITE_WORDS = {
    "SQLITE_CANTOPEN": N_("the file cannot be opened"),
    "SQLITE_READONLY": N_("this user may only read it"),
    "SQLITE_BUSY": N_("another process holds it locked"),
    "SQLITE_LOCKED": N_("another process holds it locked"),
    "SQLITE_FULL": N_("the disk is full"),
    "SQLITE_IOERR": N_("the storage failed to read or write"),
    "SQLITE_CORRUPT": N_("the file is damaged"),
    "SQLITE_NOTADB": N_("the file is not a database"),
    "SQLITE_PERM": N_("this user may not read or write it"),
}


def sqlite_words(exc: BaseException) -> str:
    """What an sqlite3 error means, in the reader's language (the original to the log)."""
    keep(exc)
    name = str(getattr(exc, "sqlite_errorname", "") or "")
    words = SQLITE_WORDS.get("_".join(name.split("_")[:2]))  # SQLITE_IOERR_WRITE: IOERR
    return _(words) if words else _("SQLite error {code}").format(code=name or "?")


def denied(exc: BaseException) -> bool:
    return isinstance(exc, PermissionError) or (
        isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM))


# tomllib's complaints (Python 3.11 tomllib/_parser.py), in words; the position follows.
_TOML = (
    (re.compile(r"^Illegal character '\\n'"), N_("a line ends inside a value (a closing \" "
                                                  "or ] missing?)")),
    (re.compile(r"^Illegal character"), N_("a character that TOML does not allow here")),
    (re.compile(r"^Expected '=' after a key"), N_("a key without `= value`")),
    (re.compile(r"^Expected ']"), N_("a [section] header without its closing ]")),
    (re.compile(r"^Cannot (overwrite|declare)"), N_("a key or section given twice")),
    (re.compile(r"^Unclosed"), N_("a list or table without its closing bracket")),
    (re.compile(r"^Invalid value"), N_("a value TOML cannot read (text needs quotes: "
                                      "\"like this\")")),
)
_AT = re.compile(r"\(at line (\d+), column (\d+)\)")


def toml_words(exc: ValueError) -> str:
    """Where and what is wrong in a TOML file, in the reader's language."""
    text = str(exc)
    keep(text)
    what = next((_(words) for pattern, words in _TOML if pattern.search(text)),
                _("text that is not TOML"))
    at = _AT.search(text)
    return (_("line {line}, column {column}: {what}").format(
        line=at.group(1), column=at.group(2), what=what) if at
        else _("at the end of the file: {what}").format(what=what))


def to_journal() -> None:
    """A CLI command's log (the originals `keep` saves, a library's warnings) goes to the
    system journal, never onto the person's screen, where what they need is said in
    words. Without a journal (a container, a laptop) it is dropped: Python's last-resort
    handler would print English lines among the reader's language."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler: logging.Handler = logging.NullHandler()
    if os.path.exists(JOURNAL_SOCKET):
        try:
            handler = _Journal(address=JOURNAL_SOCKET)
            handler.ident = "sukumo-reader: "
        except OSError:
            pass
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    root.addHandler(handler)
    log.setLevel(logging.DEBUG)  # a command's originals are few: keep them all


class _Journal(logging.handlers.SysLogHandler):
    def handleError(self, record: logging.LogRecord) -> None:
        """A journal that went away mid-command is not the person's to hear about."""
