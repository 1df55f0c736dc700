"""The daemon's side of the kiosk screen: verdicts and heartbeats as datagrams on the
kiosk's Unix socket, and the one decoder the kiosk reads them with.

The kiosk (`sukumo-reader kiosk`, reader/kiosk/) binds the socket in its runtime
directory, mode 0600 in a 0700 directory, and takes a datagram only from its own user
(the kernel's SCM_CREDENTIALS): another local user can neither reach the socket nor put
words on the screen. A datagram to a socket nobody holds fails at once, so a crashed
kiosk never delays or fails a tap: `sendto` on a non-blocking socket returns at once,
and any error is counted, not raised.

The heartbeat is what keeps the screen honest: every BEAT_EVERY_S the daemon says
whether it takes taps (`ready`), has lost its reader (`no_reader`), has not finished
starting (`starting`), has a tap loop that stopped turning (`stalled`) or is stopping
(`stopped`, sent last by `close`). A kiosk that hears no beat for a second knows the
daemon is gone, however it died, and stops inviting taps.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from enum import StrEnum
from pathlib import Path

from reader.feedback.verdict import Verdict

BEAT_EVERY_S = 0.25
# The tap loop reports every 2 s (reader/terminal/daemon.py) and a tap takes at most its
# deadline (3 s): silence longer than this means the loop is stuck.
STALL_S = 10.0
# A datagram is one small JSON object: anything bigger or deeper is not ours.
MAX_BYTES = 2048
MAX_DEPTH = 3


class Beat(StrEnum):
    READY = "ready"
    NO_READER = "no_reader"
    STARTING = "starting"
    STALLED = "stalled"
    STOPPED = "stopped"


class FeedError(ValueError):
    """A datagram that is not a verdict or a heartbeat; `why` names the kind, for counts."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


def encode(item: Verdict | Beat) -> bytes:
    message = {"beat": str(item)} if isinstance(item, Beat) else {"verdict": item.to_json()}
    return json.dumps(message, ensure_ascii=False).encode()


def decode(data: bytes) -> Verdict | Beat:
    """What a datagram says, or FeedError. Bounded before parsing: json's recursion would
    otherwise fail on 5,000 `[` with RecursionError, not ValueError."""
    if len(data) > MAX_BYTES:
        raise FeedError("too_large")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise FeedError("not_utf8") from None
    if _depth(text) > MAX_DEPTH:
        raise FeedError("too_deep")
    try:
        message = json.loads(text)
    except ValueError:
        raise FeedError("not_json") from None
    if isinstance(message, dict) and len(message) == 1:
        if "beat" in message:
            try:
                return Beat(message["beat"])
            except ValueError:
                raise FeedError("bad_beat") from None
        verdict = Verdict.from_json(message.get("verdict"))
        if verdict is not None:
            return verdict
    raise FeedError("not_a_verdict")


def _depth(text: str) -> int:
    """How deep `[` and `{` nest outside strings; stops counting past MAX_DEPTH."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_DEPTH:
                break
        elif ch in "]}":
            depth -= 1
    return deepest


class ScreenFeed:
    """The daemon's sender: `show` after each commit, `state` with each status write, and a
    heartbeat thread of its own, so a tap that takes seconds never reads as a dead daemon."""

    def __init__(self, path: Path, stall_s: float = STALL_S) -> None:
        self.path = str(path)
        self.stall_s = stall_s
        self.failures = 0
        self._sock = socket.socket(socket.AF_UNIX,
                                   socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        self._beat = Beat.STARTING
        self._beat_at = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beating, name="screen-beat", daemon=True)
        self._thread.start()

    def show(self, verdict: Verdict) -> None:
        self._send(encode(verdict))

    def state(self, *, running: bool, reader_ok: bool) -> None:
        self._beat = (Beat.STOPPED if not running else
                      Beat.READY if reader_ok else Beat.NO_READER)
        self._beat_at = time.monotonic()
        self._send(encode(self._beat))  # a change shows at once, not at the next beat

    def current(self) -> Beat:
        if self._beat is not Beat.STOPPED and time.monotonic() - self._beat_at > self.stall_s:
            return Beat.STALLED
        return self._beat

    def _beating(self) -> None:
        while not self._stop.wait(BEAT_EVERY_S):
            self._send(encode(self.current()))

    def _send(self, payload: bytes) -> None:
        try:
            self._sock.sendto(payload, self.path)
        except OSError:  # no kiosk (ENOENT, ECONNREFUSED), its buffer full: no screen
            self.failures += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(1.0)
        self._send(encode(Beat.STOPPED))
        self._sock.close()
