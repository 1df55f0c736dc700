"""Who is at the other end of a loopback TCP connection: its owner's uid, from the
kernel's table of this network namespace's sockets (/proc/net/tcp, proc(5)).

On loopback both ends of a connection are in that table: the client's socket is the
line whose local address is the peer's and whose remote address is ours. The kiosk
uses it to serve the page only to the display's browser (`[feedback] screen_viewers`),
so another local account can neither read the verdicts nor push the browser's stream
aside. The table is read per connection: a terminal has a handful of sockets.
"""

from __future__ import annotations

import pwd
import socket
import sys
from pathlib import Path

from reader.errors import ConfigError
from reader.system.i18n import _

TCP_TABLE = Path("/proc/net/tcp")


def peer_uid(peer: tuple[str, int], ours: tuple[str, int]) -> int:
    """The uid owning the socket at `peer` connected to `ours` (IPv4); -1 when the
    table does not have it (a connection already gone: nobody to serve)."""
    local, remote = _hex(peer), _hex(ours)
    try:
        lines = TCP_TABLE.read_text().splitlines()[1:]
    except OSError:
        return -1
    for line in lines:
        fields = line.split()
        if len(fields) > 7 and fields[1] == local and fields[2] == remote:
            return int(fields[7])
    return -1


def _hex(address: tuple[str, int]) -> str:
    # proc(5): the address's bytes (network order) printed as one host-order integer,
    # then the port, both in upper-case hex: 127.0.0.1:8765 is 0100007F:223D on x86/ARM.
    value = int.from_bytes(socket.inet_aton(address[0]), sys.byteorder)
    return f"{value:08X}:{address[1]:04X}"


def viewer_uids(names: tuple[str, ...]) -> frozenset[int] | None:
    """The uids that may open the page (root always may), or None for anyone."""
    if not names:
        return None
    uids = {0}
    for name in names:
        try:
            uids.add(pwd.getpwnam(name).pw_uid)
        except KeyError:
            raise ConfigError(_("setting feedback.screen_viewers: there is no user {name} "
                                "on this terminal (the display's login user, e.g. the one "
                                "raspi-config logs in automatically)").format(
                name=repr(name))) from None
    return frozenset(uids)
