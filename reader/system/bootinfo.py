"""Where in time a tap happened, as far as a Pi without a real-time clock can know.

Every event stores three facts next to its wall-clock `at`:

- the boot id (the kernel's random id of this boot): events of one boot can be ordered
  by their monotonic time even when the wall clock jumped in between;
- a monotonic timestamp (CLOCK_BOOTTIME, nanoseconds since boot, never steps);
- whether the wall clock was synchronised. A Pi boots with the time it had at shutdown
  (fake-hwclock) or 1970 until NTP answers; the city must know which `at`s to doubt.

The sync state comes from the kernel (adjtimex, read-only: no privileges). Whoever
disciplines the clock - systemd-timesyncd, chrony, ntpd - clears the kernel's
STA_UNSYNC flag when in sync, and the kernel sets it again by itself when nobody has
corrected the clock for a while. When adjtimex cannot be called (not Linux) we fall back
to the flag file systemd-timesyncd leaves in /run. The answer is cached for a second so
that asking per tap costs nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import threading
import time
from dataclasses import dataclass
from pathlib import Path

BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")
TIMESYNCD_FLAG = Path("/run/systemd/timesync/synchronized")
CLOCK_STATE_TTL_S = 1.0

_TIME_ERROR = 5  # adjtimex() return value: clock not synchronised (linux/timex.h)
_STA_UNSYNC = 0x0040


class _Timex(ctypes.Structure):
    # Only the leading fields of struct timex are named; the tail is padding that is
    # larger than the real struct on every ABI, so the kernel never writes past it.
    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("_rest", ctypes.c_char * 512),
    ]


@dataclass(frozen=True)
class ClockState:
    synced: bool
    source: str  # "adjtimex", "timesyncd" or "unknown": says how `synced` was decided

    @property
    def wire(self) -> str:
        """The mqtt-v1 §2 `clock` value."""
        return "synced" if self.synced else "unsynced"


@functools.cache
def boot_id() -> str:
    """The kernel's id of this boot (constant until reboot); "unknown" off Linux."""
    try:
        return BOOT_ID_PATH.read_text().strip()
    except OSError:
        return "unknown"


def monotonic_ns() -> int:
    """Nanoseconds since boot; does not step with NTP and keeps counting across suspend."""
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME)


@functools.cache
def _adjtimex() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        func = libc.adjtimex
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.POINTER(_Timex)]
    func.restype = ctypes.c_int
    return func


def read_clock_state() -> ClockState:
    """Ask the kernel now (uncached)."""
    func = _adjtimex()
    if func is not None:
        timex = _Timex(modes=0)  # modes 0: read only
        result = func(ctypes.byref(timex))
        if result >= 0:
            synced = result != _TIME_ERROR and not timex.status & _STA_UNSYNC
            return ClockState(synced, "adjtimex")
    if TIMESYNCD_FLAG.exists():
        return ClockState(True, "timesyncd")
    return ClockState(False, "unknown")


class _CachedClockState:
    def __init__(self, ttl_s: float) -> None:
        self._ttl_ns = int(ttl_s * 1e9)
        self._lock = threading.Lock()
        self._value: ClockState | None = None
        self._read_at = 0

    def get(self) -> ClockState:
        now = time.monotonic_ns()
        with self._lock:
            if self._value is None or now - self._read_at >= self._ttl_ns:
                self._value, self._read_at = read_clock_state(), now
            return self._value


_clock_cache = _CachedClockState(CLOCK_STATE_TTL_S)


def clock_state() -> ClockState:
    """The clock's sync state, at most CLOCK_STATE_TTL_S old: cheap enough per tap."""
    return _clock_cache.get()


def clock_synced() -> bool:
    return clock_state().synced
