"""Measure the terminal: tap to chime through the real loop, and a real daemon process.

Tap to chime (`measure_tap_to_chime`) runs in this process: the real `Terminal` loop in
a thread, on the virtual reader, with a card timing model (per-APDU and signing delays),
a real SoundPlayer on whatever ALSA device ALSA_CONFIG_PATH names, and a real SQLite
queue. The clock runs from `present()` to the moment the player saw the first samples
reach the device; the time spent inside the card's `transmit` is measured per tap and
subtracted to give our own cost (software overhead).

Everything else is measured on a real daemon process:

The daemon is `sukumo-reader run` (python -m reader.cli) in a child process, on the
virtual reader, with real sound (ALSA, pointed by the caller's ALSA_CONFIG_PATH at a null
device) and no broker. What a terminal owner pays for is that process, so every figure
is read from the kernel about that process (/proc/PID/status, /proc/PID/stat), never
from inside it.

- start-up: from just before the process is spawned to its READY=1 datagram on
  NOTIFY_SOCKET, which the daemon sends once the queue, trust, sound and reader are up
  and its tap loop turns (the same moment systemd counts the service started);
- idle: a daemon waiting for a card with no feed directory, as a PC/SC or nfcpy reader
  blocks in its driver; CPU is utime + stime over the window;
- taps: a second daemon reading `*.card` files from its feed directory (one file is one
  tap, written atomically by rename, a few dozen kept waiting) until N taps are in its
  database.
"""

from __future__ import annotations

import logging
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from reader.bundles.store import TrustStore  # noqa: E402
from reader.config import load_settings  # noqa: E402
from reader.emulator.card import CardFaults, VirtualCard, Wait, real_time  # noqa: E402
from reader.emulator.issuer import DevIssuer  # noqa: E402
from reader.system.logs import Repeats, setup_logging  # noqa: E402

TID = "t-bench-0001"
# The console script systemd starts; the same entry point through -c when not installed.
_SCRIPT = Path(sys.executable).with_name("sukumo-reader")
DAEMON = ([str(_SCRIPT)] if _SCRIPT.exists() else
          [sys.executable, "-c", "import sys; from reader.cli import main; sys.exit(main())"])
READY_TIMEOUT_S = 30.0
FEED_DEPTH = 40  # card files kept waiting: enough that the daemon never waits for one
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class DaemonSetup:
    root: Path
    config: Path  # no feed: the idle daemon
    feed_config: Path  # reads taps from `feed`
    feed: Path
    database: Path
    cards: list[str]  # VirtualCard JSON, different members


def prepare(root: Path, cards: int = 16, extra: str = "") -> DaemonSetup:
    """Dev trust chain on disk, two configs (with and without a feed) and a few cards."""
    issuer = DevIssuer.generate()
    state = root / "state"
    (state / "bundles").mkdir(parents=True)
    store = TrustStore(bytes.fromhex(issuer.root_public_hex), issuer.muni, TID,
                       state / "bundles")
    store.apply("trust", issuer.trust_bundle())  # persisted: the daemon loads it at start
    store.apply("denylist", issuer.denylist_bundle())
    feed = root / "feed"
    feed.mkdir()
    common = f"""
[terminal]
id = "{TID}"
[verify]
root_public_key = "{issuer.root_public_hex}"
[paths]
state_dir = "{state}"
[modes.checkin]
debounce_s = 0
[log]
format = "json"
""" + extra
    config, feed_config = root / "reader.toml", root / "reader-feed.toml"
    config.write_text(common + '[reader]\ntransport = "virtual"\n')
    feed_config.write_text(common + f'[reader]\ntransport = "virtual"\nvirtual_feed = "{feed}"\n')
    jsons = [issuer.issue_card(f"SK-B{n:06d}", os.urandom(8)).to_json() for n in range(cards)]
    return DaemonSetup(root, config, feed_config, feed, state / "events.sqlite3", jsons)


class Daemon:
    """One `sukumo-reader run` child; `start()` returns the seconds to READY=1."""

    def __init__(self, config: Path, log_file: Path) -> None:
        self.config, self.log_file = config, log_file
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        sock_path = self.log_file.with_suffix(".notify")
        sock_path.unlink(missing_ok=True)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
            notify.bind(str(sock_path))
            notify.settimeout(0.2)
            env = dict(os.environ, NOTIFY_SOCKET=str(sock_path))
            with self.log_file.open("ab") as out:
                started = time.monotonic()
                self.proc = subprocess.Popen([*DAEMON, "--config", str(self.config), "run"],
                                             cwd=REPO, env=env, stdout=out,
                                             stderr=subprocess.STDOUT)
            while time.monotonic() - started < READY_TIMEOUT_S:
                try:
                    message = notify.recv(4096)
                except TimeoutError:
                    if self.proc.poll() is not None:
                        raise RuntimeError(f"daemon exited ({self.proc.returncode}): "
                                           + self.log_file.read_text()[-2000:]) from None
                    continue
                if b"READY=1" in message.split(b"\n"):
                    return time.monotonic() - started
        raise RuntimeError("daemon not ready in time: " + self.log_file.read_text()[-2000:])

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def cpu_s(self) -> float:
        """utime + stime of the whole process (all threads), in seconds."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        after_name = stat[stat.rindex(")") + 2:].split()
        return (int(after_name[11]) + int(after_name[12])) / CLOCK_TICKS

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def measure_startup(setup: DaemonSetup, runs: int) -> list[float]:
    """Seconds from spawn to READY=1, one fresh process per run (the database exists)."""
    times = []
    for n in range(runs):
        with Daemon(setup.config, setup.root / f"startup-{n}.log") as daemon:
            times.append(daemon.start())
    return times


def measure_idle(setup: DaemonSetup, settle_s: float, window_s: float) -> dict[str, float]:
    """RSS and CPU of a daemon waiting for a card: settle, then CPU over `window_s`."""
    with Daemon(setup.config, setup.root / "idle.log") as daemon:
        daemon.start()
        time.sleep(settle_s)  # the first status file, the sound device's first use
        cpu0, t0 = daemon.cpu_s(), time.monotonic()
        time.sleep(window_s)
        cpu1, t1 = daemon.cpu_s(), time.monotonic()
        return {"rss_mb": daemon.rss_mb(), "cpu_percent": (cpu1 - cpu0) / (t1 - t0) * 100,
                "window_s": t1 - t0}


def stored_taps(database: Path) -> int:
    if not database.exists():
        return 0
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    except sqlite3.OperationalError:
        return 0  # schema not created yet
    finally:
        conn.close()


def _feed(feed: Path, cards: list[str], total: int, stop: threading.Event) -> None:
    written = 0
    while written < total and not stop.is_set():
        waiting = sum(1 for _ in feed.glob("*.card"))
        for _ in range(min(FEED_DEPTH - waiting, total - written)):
            tmp = feed / f"{written:09d}.tmp"
            tmp.write_text(cards[written % len(cards)])
            tmp.rename(tmp.with_suffix(".card"))
            written += 1
        time.sleep(0.005)


def measure_taps(setup: DaemonSetup, taps: int, timeout_s: float) -> dict[str, float]:
    """Feed `taps` taps to a fresh daemon; its RSS before and after, and the tap rate."""
    before = stored_taps(setup.database)
    stop = threading.Event()
    with Daemon(setup.feed_config, setup.root / "taps.log") as daemon:
        daemon.start()
        rss_ready = daemon.rss_mb()
        feeder = threading.Thread(target=_feed, args=(setup.feed, setup.cards, taps, stop),
                                  daemon=True)
        started = time.monotonic()
        feeder.start()
        done = 0
        try:
            while done < taps and time.monotonic() - started < timeout_s:
                time.sleep(0.2)
                done = stored_taps(setup.database) - before
        finally:
            stop.set()
            feeder.join()
        took = time.monotonic() - started
        time.sleep(0.5)  # let the last sound and status write settle
        return {"taps": done, "seconds": took, "taps_per_s": done / took,
                "rss_mb_ready": rss_ready, "rss_mb_after": daemon.rss_mb(),
                "peak_rss_mb": _peak_rss_mb(daemon.pid)}


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


class TimedCard(VirtualCard):
    """A VirtualCard that adds up the time spent inside its `transmit`: the card's share
    of a tap (the modelled delays plus the emulator's own work)."""

    card_s = 0.0

    def transmit(self, apdu: bytes, wait: Wait = real_time) -> bytes:
        started = time.perf_counter()
        try:
            return super().transmit(apdu, wait)
        finally:
            self.card_s += time.perf_counter() - started


class _TapRecorded(logging.Handler):
    """Wakes the bench when the loop logs "tap recorded" (after commit and play()), so
    it waits on an Event instead of polling against the tap loop for the GIL."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.event = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == "tap recorded":
            self.event.set()


@contextmanager
def tap_logging(log_to: str | Path) -> Iterator[_TapRecorded]:
    """The loop logs as in production (JSON, INFO), to `log_to` instead of the journal;
    the handler that wakes the bench on each "tap recorded"."""
    log_stream = open(log_to, "a")  # noqa: SIM115
    setup_logging("INFO", "json", stream=log_stream)
    recorded = _TapRecorded()
    logging.getLogger().addHandler(recorded)
    try:
        yield recorded
    finally:
        logging.getLogger().removeHandler(recorded)
        setup_logging("WARNING", "text", stream=sys.stderr)  # before the file closes
        log_stream.close()


class TapLoop:
    """One terminal's real tap loop (Terminal.run in a thread, the virtual reader, a real
    SoundPlayer and queue); `tap()` times one tap. Several may run side by side in one
    process (bench_backlog.py alternates two), one tap at a time."""

    def __init__(self, setup: DaemonSetup, recorded: _TapRecorded, apdu_s: float,
                 sign_s: float, pin_factory: object = None) -> None:
        from reader.sound import SoundPlayer
        from reader.terminal.daemon import Terminal
        from reader.transports.virtual import VirtualTransport

        settings = load_settings(setup.config)
        self.recorded = recorded
        faults = CardFaults(apdu_delay_s=apdu_s, sign_delay_s=sign_s)
        self.cards = [TimedCard.from_json(text) for text in setup.cards]
        for card in self.cards:
            card.faults = faults
        self.transport = VirtualTransport()
        self.player = SoundPlayer.from_settings(settings.sound)
        if self.player.state != "ok":
            raise RuntimeError(f"sound device {self.player.state}: tap to chime cannot be "
                               "measured")
        self.terminal = Terminal(settings, transport=self.transport, player=self.player,
                                 pin_factory=pin_factory)
        # Every tap's line, though its 16 cards come back again and again: the bench wakes
        # on it (a terminal in service writes the first few per card and verdict,
        # logs.Repeats).
        self.terminal.tap_lines = Repeats(burst=2**31)
        self.loop = threading.Thread(target=self.terminal.run, name="tap-loop")
        self.loop.start()
        self.taps = 0

    def tap(self) -> tuple[float, float, int]:
        """One tap: (ms from present() to sound start, ms inside the card, APDUs)."""
        card = self.cards[self.taps % len(self.cards)]
        self.taps += 1
        card.card_s, sent = 0.0, len(card.log)
        self.recorded.event.clear()
        presented = time.monotonic()
        self.transport.present(card)
        if not self.recorded.event.wait(10):
            raise RuntimeError("tap not recorded within 10 s")
        deadline = time.monotonic() + 2
        while (self.player.last_started or ("", 0.0))[1] < presented:
            if time.monotonic() > deadline:
                raise RuntimeError("no sound started within 2 s of the tap")
            time.sleep(0.0005)
        chimed = self.player.last_started[1]  # type: ignore[index]
        self.transport.lift()
        return (chimed - presented) * 1000, card.card_s * 1000, len(card.log) - sent

    def close(self) -> None:
        self.terminal.stop()
        self.loop.join(10)
        self.terminal.close()


def measure_tap_to_chime(root: Path, taps: int, apdu_s: float, sign_s: float, *,
                         extra: str = "", pin_factory: object = None,
                         setup: DaemonSetup | None = None,
                         probe: Callable[[], float] | None = None,
                         log_to: str | None = None) -> dict[str, list[float]]:
    """`taps` taps through Terminal.run(); per tap: ms from present() to sound start
    (`total_ms`), ms inside the card (`card_ms`) and the APDUs exchanged. `setup`: an
    already prepared terminal (e.g. with a backlog in its queue) instead of a fresh one.
    `probe` (a counter: fsyncs, bytes written) is read before the first timed tap and
    after the last one (`probed`). `log_to`: where the log goes instead of a file beside
    (os.devnull: the journal is not this process's writing)."""
    setup = setup or prepare(root, extra=extra)
    total_ms, card_ms, apdus, probed = [], [], [], []
    with tap_logging(log_to or root / "terminal.log") as recorded:
        loop = TapLoop(setup, recorded, apdu_s, sign_s, pin_factory)
        try:
            for n in range(taps + 1):
                if n == 1 and probe is not None:  # after the warm-up tap
                    probed.append(probe())
                total, card, exchanged = loop.tap()
                if n:  # the first tap warms caches (imports on first use, the device)
                    total_ms.append(total)
                    card_ms.append(card)
                    apdus.append(exchanged)
                time.sleep(0.05)  # a citizen takes longer than this to bring the next card
            if probe is not None:
                probed.append(probe())
        finally:
            loop.close()
    return {"total_ms": total_ms, "card_ms": card_ms, "apdus": apdus, "probed": probed}
