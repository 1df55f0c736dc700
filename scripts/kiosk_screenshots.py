#!/usr/bin/env python3
"""Screenshots of the kiosk screen, one per kind of verdict, into docs/kiosk/.

The real kiosk server and page, in Debian's headless Chromium (tests/chromium_env.py);
each verdict is sent as the daemon sends it (reader/feedback/screen.py), from the same
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
    ("coupon", {"coupon": "taxi", "remaining": 3}, None),
    ("duplicate", {}, Reason.DUPLICATE),
    ("retry", {}, Reason.CARD_REMOVED),
    ("refused", {}, Reason.REVOKED),
    ("not-eligible", {}, Reason.NOT_ELIGIBLE),
    ("outside-schedule", {}, Reason.OUTSIDE_SCHEDULE),
]


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
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(paths={"state_dir": tmp}, feedback={
            "screen": True, "screen_http_port": free_port(), "screen_feed_port": free_port(),
            "screen_hold_s": 60})
        # A terminal at work, for the staff line: reader ok, city link up, nothing queued.
        now = rfc3339_ms()
        settings.paths.status_file.write_text(json.dumps({
            "running": True, "updated_at": now, "reader": "ok", "unrecorded": 0,
            "alarms": [], "queue": {"pending": 0}, "sync": {"state": "online"}}))
        kiosk = Kiosk(settings)
        threading.Thread(target=kiosk.serve, daemon=True).start()
        feed = ScreenFeed(settings.feedback.screen_feed_port)
        browser = Browser(kiosk.url, size=(1024, 600))  # the official 7" Pi display
        try:
            browser.wait_for("document.getElementById('reader').textContent.length > 1")
            browser.screenshot(out / "idle.png")
            shots = [(name, verdict_of(_event(reason, detail), 0)) for name, detail, reason
                     in KINDS] + [("technician", unrecorded(0))]
            for n, (name, verdict) in enumerate(shots, 1):
                feed.show(verdict)
                browser.wait_for(f"window.kioskLog.length >= {n}")
                browser.screenshot(out / f"{name}.png")
                print(out / f"{name}.png")
        finally:
            browser.close()
            kiosk.stop()
            kiosk.close()
    return 0


def _event(reason: Reason | None, detail: dict[str, object]) -> Event:
    return Event(id="0193a5c6-0000-7000-8000-000000000001", at_ms=0, clock_synced=True,
                 mode=Mode.CHECKIN, facility="sukumo", reason=reason, detail=detail, seq=1)


if __name__ == "__main__":
    sys.exit(main())
