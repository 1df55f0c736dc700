"""The systemd notify protocol, by hand: one datagram per message to $NOTIFY_SOCKET.

Why not python-systemd: it needs libsystemd headers to build on the Pi and we use four
messages. The protocol (sd_notify(3)) is a newline-separated `KEY=VALUE` text sent as one
datagram on an AF_UNIX socket; a path starting with `@` is in the abstract namespace
(the `@` becomes a NUL byte). When NOTIFY_SOCKET is unset (a laptop, the tests, `demo`)
there is nobody to tell and `Notifier.from_env()` returns None.

The daemon sends `WATCHDOG=1` only while its tap loop and database are healthy, so a
wedged loop stops the pings and systemd restarts the service after WatchdogSec.

`listen_sockets` is the other half of the same family (sd_listen_fds(3)): the kiosk's
page port held by systemd, so no other user can take it while the kiosk restarts.
"""

from __future__ import annotations

import logging
import os
import socket

from reader.system.logs import fields

log = logging.getLogger(__name__)


class Notifier:
    """Sends sd_notify messages to one socket. Failures are logged, never raised:
    a notify socket that went away must not take the tap loop down with it."""

    def __init__(self, address: str) -> None:
        if not address or address[0] not in "/@":
            raise ValueError(f"NOTIFY_SOCKET must be an absolute path or @abstract: {address!r}")
        self.address = address
        # Abstract namespace: the leading '@' stands for a NUL byte on the wire.
        self._target = "\0" + address[1:] if address.startswith("@") else address
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._warned = False

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Notifier | None:
        """A Notifier for $NOTIFY_SOCKET, or None when not started by systemd (Type=notify)."""
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        if not address:
            return None
        try:
            return cls(address)
        except ValueError as exc:
            log.warning("ignoring NOTIFY_SOCKET", **fields(why=str(exc)))
            return None

    def send(self, message: str) -> bool:
        """Send one raw message (`KEY=VALUE` lines); True when the datagram left."""
        try:
            self._sock.sendto(message.encode("utf-8"), self._target)
        except OSError as exc:
            if not self._warned:  # once: a gone socket would otherwise log every tap
                log.warning("sd_notify failed", **fields(socket=self.address, why=str(exc)))
                self._warned = True
            return False
        self._warned = False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.send("READY=1" + (f"\nSTATUS={_one_line(status)}" if status else ""))

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={_one_line(text)}")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    def close(self) -> None:
        self._sock.close()


def watchdog_interval(environ: dict[str, str] | None = None) -> float | None:
    """Seconds between pings (half of WatchdogSec, as sd_watchdog_enabled(3) advises), or
    None when the watchdog is off or meant for another process (WATCHDOG_PID)."""
    env = os.environ if environ is None else environ
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid and pid.strip() != str(os.getpid()):
        return None  # set for our parent (e.g. a wrapper script), not for us
    return usec / 1_000_000 / 2


def _one_line(text: str) -> str:
    # A newline would start a new KEY=VALUE assignment.
    return " ".join(text.splitlines())


LISTEN_FDS_START = 3  # sd_listen_fds(3): passed sockets start at fd 3


def listen_sockets(environ: dict[str, str] | None = None) -> list[socket.socket]:
    """The sockets systemd passed us (socket activation, sd_listen_fds(3)), or [] when it
    passed none or passed them to another process (LISTEN_PID). The variables are removed
    so that a child never takes our sockets for its own."""
    env = os.environ if environ is None else environ
    try:
        count = int(env.get("LISTEN_FDS", "0"))
        pid = int(env.get("LISTEN_PID", "0"))
    except ValueError:
        return []
    if count <= 0 or pid != os.getpid():
        return []
    for key in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
        env.pop(key, None)
    return [socket.socket(fileno=fd) for fd in range(LISTEN_FDS_START, LISTEN_FDS_START + count)]
