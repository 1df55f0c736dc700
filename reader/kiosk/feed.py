"""The kiosk's end of the daemon's feed: a Unix datagram socket only its own user can
write to, and what arrives on it checked before it can reach a screen.

Three locks, each enough on its own against another local user: the socket file is
0600 in a directory of its own (systemd's RuntimeDirectory=, 0700), so nobody else can
send; every datagram carries its sender's uid from the kernel (SO_PASSCRED), and one from
a uid other than ours (or root's) is dropped, so a socket left open by mistake still
shows nothing foreign; and every datagram is bounded (reader/feedback/screen.py:
`decode`) before it is parsed. Whatever arrives, `receive` returns or counts a drop: it
never raises out of the receiving thread.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import stat
import struct
from collections import Counter
from pathlib import Path

from reader.errors import ConfigError
from reader.feedback.screen import MAX_BYTES, Beat, FeedError, decode
from reader.feedback.verdict import Verdict
from reader.system.i18n import _
from reader.system.logs import fields

log = logging.getLogger(__name__)
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


class FeedSocket:
    def __init__(self, path: Path, timeout_s: float = 0.1) -> None:
        self.path = path
        self.dropped: Counter[str] = Counter()
        self._allowed = {os.getuid(), 0}
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            if path.is_socket():  # a kiosk before us died without cleaning up
                path.unlink()
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            old = os.umask(0o177)  # 0600 from the start: no moment where others could send
            try:
                self.sock.bind(str(path))
            finally:
                os.umask(old)
            self.inode = path.stat().st_ino
        except OSError as exc:
            raise ConfigError(_("setting feedback.screen_feed = {path}: cannot make the "
                                "screen's socket there: {why}").format(
                path=path, why=exc.strerror or exc)) from None
        self.sock.settimeout(timeout_s)

    def receive(self) -> Verdict | Beat | None:
        """The next datagram's meaning; None after the timeout or for a dropped one."""
        try:
            data, ancillary, flags, _addr = self.sock.recvmsg(
                MAX_BYTES + 1, socket.CMSG_SPACE(_UCRED.size))
        except TimeoutError:
            return None
        uid = next((_UCRED.unpack(bytes(d[:_UCRED.size]))[1] for level, kind, d in ancillary
                    if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS
                    and len(d) >= _UCRED.size), None)
        if uid not in self._allowed:
            self._drop("foreign_user", uid=uid)
        elif flags & socket.MSG_TRUNC:
            self._drop("too_large")
        else:
            try:
                return decode(data)
            except FeedError as exc:
                self._drop(exc.why)
        return None

    def _drop(self, why: str, **extra: object) -> None:
        self.dropped[why] += 1
        n = self.dropped[why]
        if n & (n - 1) == 0:  # the 1st, 2nd, 4th, 8th…: a flood cannot flood the journal
            log.warning("kiosk feed: datagram dropped", **fields(why=why, count=n, **extra))

    def intact(self) -> bool:
        """Still our socket at our path (not removed, not replaced by someone else's)."""
        try:
            st = self.path.stat()
        except OSError:
            return False
        return stat.S_ISSOCK(st.st_mode) and st.st_ino == self.inode

    def close(self) -> None:
        self.sock.close()
        if self.intact():
            with contextlib.suppress(OSError):
                self.path.unlink()
