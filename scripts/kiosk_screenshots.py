#!/usr/bin/env python3
"""Screenshots of the kiosk screen, one per kind of verdict and one out of service, at
each display size, into docs/kiosk/WIDTHxHEIGHT/.

The real kiosk server and page, in Debian's headless Chromium (tests/chromium_env.py)
with its viewport set to the display's size (800×480: the original 7" Pi display;
1024×600: the common 7" panels; 1280×720), and each PNG checked to be that size. Each
verdict is sent as the daemon sends it (reader/feedback/screen.py), from the same
`verdict_of` the daemon uses, and put into words by the kiosk in Japanese, as on a
terminal (firmware_config/locale). Rerun after changing the page or the words:

    uv run python scripts/kiosk_screenshots.py [--out DIR] [--lang C.UTF-8]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from chromium_env import Browser  # noqa: E402

from reader.config import Settings  # noqa: E402
from reader.devtools.broker import free_port  # noqa: E402
from reader.feedback import unrecorded, verdict_of  # noqa: E402
from reader.feedback.screen import ScreenFeed  # noqa: E402
from reader.kiosk.server import Kiosk  # noqa: E402
from reader.system import i18n  # noqa: E402
from reader.wire.event import Event, Mode, Reason, rfc3339_ms  # noqa: E402

KINDS: list[tuple[str, dict[str, object], Reason | None]] = [
    ("accepted", {}, None),
    ("arrival", {"direction": "arrival"}, None),
    ("departure", {"direction": "departure"}, None),
    ("coupon", {"coupon": "taxi", "remaining": 3}, None),  # shown by its name, タクシー券
    ("duplicate", {}, Reason.DUPLICATE),
    ("retry", {}, Reason.CARD_REMOVED),
    ("refused", {}, Reason.REVOKED),
    ("not-eligible", {}, Reason.NOT_ELIGIBLE),
    ("outside-schedule", {}, Reason.OUTSIDE_SCHEDULE),
]


SIZES = [(800, 480), (1024, 600), (1280, 720)]
COUPON_NAMES = {"taxi": "タクシー券"}  # as the city's config names it ([[modes.coupon.kinds]])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "kiosk")
    parser.add_argument("--lang", default="ja_JP.UTF-8", help="the kiosk's locale")
    args = parser.parse_args()
    for key in ("LANGUAGE", "LC_ALL", "LC_MESSAGES"):
        os.environ.pop(key, None)
    os.environ["LANG"] = args.lang
    i18n.install()  # the kiosk's words, as `sukumo-reader kiosk` picks them
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sk-") as tmp:
        settings = Settings(paths={"state_dir": tmp}, feedback={
            "screen": True, "screen_http_port": free_port(),
            "screen_feed": f"{tmp}/feed.sock", "screen_hold_s": 60})
        # A terminal at work, for the staff line: reader ok, city link up, nothing queued.
        now = rfc3339_ms()
        settings.paths.status_file.write_text(json.dumps({
            "running": True, "updated_at": now, "reader": "ok", "unrecorded": 0,
            "alarms": [], "queue": {"pending": 0}, "sync": {"state": "online"}}))
        kiosk = Kiosk(settings)
        threading.Thread(target=kiosk.serve, daemon=True).start()
        feed = ScreenFeed(settings.feedback.screen_feed)
        browser = Browser(kiosk.url, size=SIZES[0])
        shots = [(name, verdict_of(_event(reason, detail), 0, COUPON_NAMES))
                 for name, detail, reason in KINDS] + [("technician", unrecorded(0))]
        try:
            shown = 0
            for size in SIZES:
                folder = out / f"{size[0]}x{size[1]}"
                folder.mkdir(exist_ok=True)
                browser.resize(size)
                # The daemon stopped: the screen invites no tap (out-of-service.png).
                feed.state(running=False, reader_ok=False)
                browser.wait_for("document.body.className === 'closed'")
                browser.wait_for("document.getElementById('advice').textContent.length > 1")
                _shot(browser, folder / "out-of-service.png")
                feed.state(running=True, reader_ok=True)
                browser.wait_for("document.body.className === 'idle'")
                browser.wait_for("document.getElementById('advice').textContent === ''")
                _shot(browser, folder / "idle.png")
                for name, verdict in shots:
                    feed.show(verdict)
                    shown += 1
                    browser.wait_for(f"window.kioskLog.length >= {shown}")
                    _shot(browser, folder / f"{name}.png")
        finally:
            browser.close()
            feed.close()
            kiosk.stop()
            kiosk.close()
    return 0


def _shot(browser: Browser, path: Path) -> None:
    browser.screenshot(path)  # checks the PNG is the viewport's size
    print(path)


def _event(reason: Reason | None, detail: dict[str, object]) -> Event:
    return Event(id="0193a5c6-0000-7000-8000-000000000001", at_ms=0, clock_synced=True,
                 mode=Mode.CHECKIN, facility="sukumo", reason=reason, detail=detail, seq=1)


if __name__ == "__main__":
    sys.exit(main())
