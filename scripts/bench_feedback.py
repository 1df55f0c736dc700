"""What the status light and the kiosk screen cost, measured beside the same run without them.

- tap to chime: the real `Terminal` loop (scripts/bench_terminal.py), once with
  `[feedback]` off, once with the light (gpiozero on its mock pin factory: this machine
  has no GPIO pins, so the real gpiozero code runs on mock pins) and the screen on;
- the screen: a real `sukumo-reader kiosk` process and Debian's headless Chromium on its
  page, during the "on" run; `kiosk_update_ms` is, per tap, the page's `Date.now()` when
  it showed the verdict minus the verdict's commit time (both the system clock);
- memory: VmRSS of an idle daemon process with `[feedback]` off and on;
- honesty: `kiosk_closed_after_kill_ms`, per run, from SIGKILL of a running daemon
  (`sukumo-reader run` with the screen on) to the page showing この端末は使えません,
  polled in the page every ~20 ms (the heartbeat's silence is all the kiosk has).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SCRIPTS = Path(__file__).resolve().parent
REPO = SCRIPTS.parent
sys.path[:0] = [str(REPO), str(SCRIPTS), str(REPO / "tests")]

import bench_terminal as bt  # noqa: E402

from reader.devtools.broker import free_port  # noqa: E402


def _feedback(http_port: int, feed: Path) -> str:
    return (f"[feedback]\nlight = true\nscreen = true\nscreen_http_port = {http_port}\n"
            f'screen_feed = "{feed}"\nscreen_hold_s = 60\n')


def _feed_path() -> Path:
    # A socket path is at most 107 bytes: a short directory, not the work tree's.
    return Path(tempfile.mkdtemp(prefix="sk-bench-")) / "feed.sock"


def _idle_rss_mb(root: Path, extra: str, env: dict[str, str]) -> float:
    setup = bt.prepare(root, extra=extra)
    daemon = bt.Daemon(setup.config, root / "idle.log")
    os.environ.update(env)  # the daemon child inherits it (the mock pin factory)
    try:
        daemon.start()
        time.sleep(3.0)
        return daemon.rss_mb()
    finally:
        daemon.stop()
        for key in env:
            os.environ.pop(key, None)


def measure(work: Path, taps: int, apdu_s: float, sign_s: float) -> dict[str, list[float]]:
    from chromium_env import Browser
    from gpiozero.pins.mock import MockFactory

    work.mkdir(parents=True, exist_ok=True)
    off = bt.measure_tap_to_chime(work / "off", taps, apdu_s, sign_s)
    http_port, feed = free_port(), _feed_path()
    kiosk_config = work / "kiosk.toml"
    kiosk_config.write_text(f'[paths]\nstate_dir = "{work}"\n' + _feedback(http_port, feed))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUKUMO_READER_")}
    kiosk = subprocess.Popen([*bt.DAEMON, "--config", str(kiosk_config), "kiosk"], cwd=REPO,
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    browser = None
    try:
        url = f"http://127.0.0.1:{http_port}/"
        deadline = time.monotonic() + 20
        while True:
            try:
                browser = Browser(url)
                browser.wait_for("document.getElementById('reader').textContent.length > 0",
                                 timeout=5)
                break
            except AssertionError:
                if browser is not None:
                    browser.close()
                    browser = None
                if time.monotonic() > deadline:
                    raise
        on = bt.measure_tap_to_chime(work / "on", taps, apdu_s, sign_s,
                                     extra=_feedback(http_port, feed),
                                     pin_factory=MockFactory())
        browser.wait_for(f"window.kioskLog.length >= {taps + 1}", timeout=10)
        shown = browser.evaluate("window.kioskLog")
        closed_ms = _closed_after_kill_ms(work / "closed", _feedback(http_port, feed),
                                          browser, runs=3)
    finally:
        if browser is not None:
            browser.close()
        kiosk.terminate()
        kiosk.wait(10)
    update_ms = [float(s["shown_ms"] - s["at_ms"]) for s in shown[1:]]  # first: warm-up
    rss_off = _idle_rss_mb(work / "rss-off", "", {})
    rss_on = _idle_rss_mb(work / "rss-on", _feedback(free_port(), _feed_path()),
                          {"GPIOZERO_PIN_FACTORY": "mock"})
    return {"off_ms": off["total_ms"], "on_ms": on["total_ms"], "update_ms": update_ms,
            "rss_off": [rss_off], "rss_on": [rss_on], "closed_ms": closed_ms}


def _closed_after_kill_ms(root: Path, extra: str, browser: Any, runs: int) -> list[float]:
    setup = bt.prepare(root, extra=extra)
    os.environ["GPIOZERO_PIN_FACTORY"] = "mock"  # the daemon child's light
    closed: list[float] = []
    try:
        for n in range(runs):
            daemon = bt.Daemon(setup.config, root / f"kill-{n}.log")
            try:
                daemon.start()
                browser.wait_for("document.body.className === 'idle'", timeout=20)
                assert daemon.proc is not None
                started = time.monotonic()
                daemon.proc.kill()
                browser.wait_for("document.body.className === 'closed'", timeout=10)
                closed.append((time.monotonic() - started) * 1000)
            finally:
                daemon.stop()
    finally:
        os.environ.pop("GPIOZERO_PIN_FACTORY", None)
    return closed
