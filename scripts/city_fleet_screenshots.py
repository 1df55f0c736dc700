#!/usr/bin/env python3
"""Screenshots of the city's fleet page into docs/city/: the login, and the page of one
town at a narrow (800 px) and a desktop (1366 px) width, in Japanese; one in English;
the prefecture's overview.

A throw-away PostgreSQL (reader/devtools/postgres.py), migrated; two towns; terminals
and two weeks of taps stored through the intake's own operations (city/db.py); the
real FleetServer; Debian's headless Chromium (tests/chromium_env.py) logging in through
the form. Rerun after changing the page or its words:

    uv run python scripts/city_fleet_screenshots.py [--out DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from chromium_env import Browser  # noqa: E402

from city import db  # noqa: E402
from city.web.auth import hash_password  # noqa: E402
from city.web.server import FleetServer, WebOptions  # noqa: E402
from city.web.store import WebStore  # noqa: E402
from reader.devtools.postgres import DevPostgres  # noqa: E402
from reader.system.uuid7 import uuid7_str  # noqa: E402

SUKUMO, TOSASHIMIZU = "392081", "392014"
PASSWORD = "screenshot-password"
# facility: (its terminal, mean taps a day)
FACILITIES = {"sukumo-library": ("t-library-01", 40), "sukumo-gym": ("t-gym-01", 30),
              "ikiiki-salon-east": ("t-salon-east-01", 18),
              "nursery-hoshi": ("t-nursery-01", 25), "city-hall-event": ("t-hall-01", 60)}


def fill(store: db.Store, now: dt.datetime) -> None:
    """A town's fleet on a working day: most terminals well, one offline since the night
    with taps it still holds, one with an alarm, one certificate close to its end."""
    def status(tid: str, online: bool = True, pending: int = 0, oldest: float | None = None,
               alarms: tuple[str, ...] = (), cert_days: float = 400, app: str = "1.0.2",
               seen_h: float = 0.0, muni: str = SUKUMO, denylist: int = 41) -> None:
        seen = now - dt.timedelta(hours=seen_h, seconds=random.randint(5, 50))
        store.save_status(db.TerminalState(
            muni=muni, tid=tid, online=online, status={"v": 1}, received_at=seen,
            pending=pending, app_version=app,
            oldest_unacked=None if oldest is None else now - dt.timedelta(hours=oldest),
            bundle_versions={"trust": 3, "denylist": denylist, "config": 7}, alarms=alarms,
            cert_not_after=now + dt.timedelta(days=cert_days)))

    today = now.date()
    seq: dict[str, int] = {}
    for back in range(13, -1, -1):
        day = today - dt.timedelta(days=back)
        weekend = day.weekday() >= 5
        for facility, (tid, mean) in FACILITIES.items():
            if facility == "nursery-hoshi" and weekend:
                continue
            taps = max(0, int(random.gauss(mean * (1.4 if weekend else 1.0), mean / 4)))
            if facility == "city-hall-event" and back not in (2, 9):
                taps = 0
            at = dt.datetime.combine(day, dt.time(1, 30), dt.UTC)
            events = []
            for _ in range(taps):
                seq[tid] = seq.get(tid, 0) + 1
                events.append(db.StoredEvent(uuid7_str(), seq[tid], at, "checkin", facility,
                                             "accepted", None, None, {"seq": seq[tid]}))
            if events:
                store.store_batch(SUKUMO, tid, events, receiver="screenshots")
    # The statuses last: a stored batch marks its terminal online, a status says more.
    status("t-library-01")
    status("t-gym-01", pending=2, oldest=0.01)
    # Its last status said 37 taps waiting, then its Will came (power cut at night).
    status("t-salon-east-01", pending=37, oldest=15.5, seen_h=15.3, app="1.0.1", denylist=40)
    store.save_status(db.TerminalState(SUKUMO, "t-salon-east-01", False, {"v": 1},
                                       now - dt.timedelta(hours=15.2)))
    status("t-nursery-01", alarms=("database was corrupt (file is not a database); moved "
                                   "aside to queue.sqlite3.corrupt-20261203",))
    status("t-nursery-02", cert_days=12)
    status("t-hall-01", app="1.0.1")
    status("t-shimizu-01", muni=TOSASHIMIZU)  # another town's: never on Sukumo's page


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "city")
    args = parser.parse_args()
    random.seed(19)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sukumo-shots-") as tmp:
        Path(tmp).chmod(0o755)  # PostgreSQL's own user (under root) must get through
        pg = DevPostgres(Path(tmp) / "pg").start()
        try:
            pg.psql("CREATE DATABASE city")
            db.migrate(pg.dsn("city"))
            store = db.Store(pg.dsn("city")).open(wait=True)
            store.maintain(retention_months=3, months_ahead=1)
            for muni in (SUKUMO, TOSASHIMIZU):
                store.add_town(muni)
            WebStore(store.pool).add_account("suzuki", SUKUMO, hash_password(PASSWORD))
            WebStore(store.pool).add_account("kochi", None, hash_password(PASSWORD))
            fill(store, dt.datetime.now(dt.UTC))
            # Storing two weeks of taps in a minute made every terminal "seen now"; the
            # offline one was last seen in the night (the time its Will came).
            pg.psql("UPDATE city.terminals SET last_seen = status_received_at "
                    "WHERE tid = 't-salon-east-01'", dbname="city")
            server = FleetServer(WebOptions("127.0.0.1", 0), WebStore(store.pool)).start()
            try:
                shots = [("fleet-ja-800.png", 800, "ja", "suzuki"),
                         ("fleet-ja-1366.png", 1366, "ja", "suzuki"),
                         ("fleet-en-1366.png", 1366, "en", "suzuki"),
                         ("fleet-prefecture-ja-1366.png", 1366, "ja", "kochi")]
                for name, width, lang, account in shots:
                    shoot(server.url, args.out / name, width, lang, account,
                          login_shot=args.out / "login-ja.png" if name == shots[0][0] else None)
            finally:
                server.stop()
                store.close()
        finally:
            pg.destroy()
    return 0


def shoot(url: str, path: Path, width: int, lang: str, account: str,
          login_shot: Path | None) -> None:
    browser = Browser("about:blank", size=(width, 900))
    try:
        agent = browser.call("Browser.getVersion")["userAgent"]
        browser.call("Network.setUserAgentOverride", userAgent=agent, acceptLanguage=lang)
        browser.call("Page.navigate", url=url)
        browser.wait_for("!!document.querySelector('#name')")
        if login_shot is not None:
            browser.screenshot(login_shot)
            print(login_shot)
        browser.evaluate(f"document.querySelector('#name').value = {json.dumps(account)};"
                         f"document.querySelector('#password').value = {json.dumps(PASSWORD)};"
                         "document.querySelector('form.login').submit(); true")
        browser.wait_for("!!document.querySelector('#terminals')", timeout=20)
        height = browser.evaluate("document.documentElement.scrollHeight")
        browser.call("Emulation.setDeviceMetricsOverride", width=width, height=int(height),
                     deviceScaleFactor=1, mobile=False)
        browser.screenshot(path)
        print(path)
    finally:
        browser.close()


if __name__ == "__main__":
    sys.exit(main())
