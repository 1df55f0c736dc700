"""The fleet page in Debian's headless Chromium, served by a real `sukumo-city run`, with
terminals that reached it through the real mosquitto (TLS, the ACL): a real terminal
(`sukumo-reader sync`) that sent its taps and was then killed (its Will: offline), and a
terminal whose status carries an alarm. Login required; a town's staff never see
another town's terminals."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from chromium_env import CHROMIUM, Browser
from fleet_env import PASSWORD, TOWN_B
from mqtt_env import (
    ReceiverProc,
    SyncProc,
    append_events,
    broker,  # noqa: F401
    city_dsn,
    close_client,
    raw_client,
    receivers,  # noqa: F401
    terminal_settings,
)
from waiting import wait_for

from city import db
from city.web.auth import hash_password
from city.web.store import WebStore
from reader.devtools.broker import DevBroker
from reader.wire.event import rfc3339_ms
from reader.wire.topics import Topics

pytestmark = [pytest.mark.mqtt,
              pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is needed")]


def japanese(browser: Browser, url: str) -> None:
    """Ask for Japanese as a Japanese desktop does (headless Chromium says en-US), then
    open `url`."""
    agent = browser.call("Browser.getVersion")["userAgent"]
    browser.call("Network.setUserAgentOverride", userAgent=agent, acceptLanguage="ja")
    browser.call("Page.navigate", url=url)


def log_in(browser: Browser, name: str, password: str) -> None:
    browser.wait_for("location.pathname === '/login' && !!document.querySelector('#name')")
    browser.evaluate(f"document.querySelector('#name').value = {json.dumps(name)};"
                     f"document.querySelector('#password').value = {json.dumps(password)};"
                     "document.querySelector('form.login').submit(); true")


def test_an_offline_terminal_and_an_alarm_in_chromium(
        broker: DevBroker, receivers: list[ReceiverProc], tmp_path: Path) -> None:  # noqa: F811
    city_db = tmp_path / "city.db"
    city = ReceiverProc(broker, city_db, tmp_path)
    receivers.append(city)
    store = db.Store(city_dsn(city_db)).open(wait=True)
    try:
        web = WebStore(store.pool)
        for muni in (broker.muni, TOWN_B):
            store.add_town(muni)
        web.add_account("alice", broker.muni, hash_password(PASSWORD))
        # Town B's terminal, saved as the intake saves a status: never on A's page.
        store.save_status(db.TerminalState(TOWN_B, "t-b-0001", True, {"v": 1},
                                           dt.datetime.now(dt.UTC), alarms=("b's alarm",)))
    finally:
        store.close()
    # A real terminal sends its taps and is killed: the broker publishes its Will.
    settings = terminal_settings(broker, tmp_path / "t2", "t-0002")
    append_events(settings.paths.database, 4)
    sync = SyncProc(settings, tmp_path / "sync.log")
    wait_for(lambda: "t-0002" in _online(city_db), 30, "t-0002 online at the city")
    sync.kill()
    wait_for(lambda: "t-0002" not in _online(city_db), 30, "t-0002 offline (its Will)")
    # Another terminal's status carries an alarm (as a damaged queue would).
    alarm = "database was corrupt (file is not a database); moved aside"
    status = {"v": 1, "tid": "t-0001", "state": "online", "at": rfc3339_ms(),
              "queue": {"pending": 2, "oldest_at": rfc3339_ms()}, "reader": "ok",
              "versions": {"app": "1.0.0", "trust": 3, "denylist": 41, "config": 7},
              "alarms": [alarm], "cert": {"serial": "01", "not_after": "2027-01-01T00:00:00Z"}}
    terminal = raw_client(broker, "t-0001")
    try:
        terminal.publish(Topics("sukumo/v1", broker.muni, "t-0001").status,
                         json.dumps(status), qos=1, retain=True).wait_for_publish(5)
    finally:
        close_client(terminal)
    wait_for(lambda: "t-0001" in _online(city_db), 30, "t-0001's status stored")

    browser = Browser("about:blank", size=(1280, 900))
    try:
        japanese(browser, f"http://127.0.0.1:{city.web_port}/")
        # No session: the login form, and nothing of the fleet.
        log_in(browser, "alice", PASSWORD)
        browser.wait_for("!!document.querySelector('#terminals')", timeout=20)
        rows = browser.evaluate(
            "Array.from(document.querySelectorAll('tr[data-tid]')).map(r => "
            "[r.dataset.tid, r.className, r.innerText])")
        by_tid = {tid: (cls, text) for tid, cls, text in rows}
        assert set(by_tid) == {"t-0001", "t-0002"}  # never town B's t-b-0001
        assert by_tid["t-0002"][0] == "offline" and "オフライン" in by_tid["t-0002"][1]
        assert by_tid["t-0001"][0] == "alarm" and alarm in by_tid["t-0001"][1]
        assert "オンライン" in by_tid["t-0001"][1]
        tiles = browser.evaluate("document.querySelector('.tiles').innerText")
        assert "オフライン\n1" in tiles and "警報あり\n1" in tiles
        # The plot of the taps that came through the broker, drawn on the server.
        assert browser.evaluate("document.querySelectorAll('svg.chart rect').length") >= 1
        assert "b's alarm" not in browser.evaluate("document.body.innerText")
        # Logged out, the page is the login form again.
        browser.evaluate("document.querySelector('header form').submit(); true")
        browser.wait_for("location.pathname === '/login'")
        browser.call("Page.navigate", url=f"http://127.0.0.1:{city.web_port}/")
        browser.wait_for("location.pathname === '/login' && !!document.querySelector('#name')")
    finally:
        browser.close()


def _online(city_db: Path) -> set[str]:
    from mqtt_env import receiver_query

    return {tid for (tid,) in receiver_query(
        city_db, "SELECT tid FROM city.terminals_v1 WHERE online")}
