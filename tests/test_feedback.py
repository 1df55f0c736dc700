"""What people see: the status light (gpiozero's own mock pin factory: the only thing here
that cannot run for real, as there are no GPIO pins) and the kiosk screen (the real
daemon, the real kiosk process and Debian's Chromium, headless)."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from chromium_env import CHROMIUM, Browser
from daemon_env import DAEMON, REPO, DaemonProc, Deployment, language_env, run_cli
from gpiozero.pins.mock import MockFactory
from kiosk_env import kiosk_section, sock_dir  # noqa: F401
from waiting import end_process, wait_for

from reader.config import FeedbackSettings, load_settings
from reader.devtools.broker import free_port
from reader.emulator.card import CardFaults
from reader.emulator.issuer import foreign_card
from reader.feedback import Feedback, Look, Verdict, unrecorded, verdict_of
from reader.feedback.screen import Beat, FeedError, ScreenFeed, decode, encode
from reader.feedback.words import page_texts, words
from reader.kiosk.feed import FeedSocket
from reader.kiosk.staff import staff_view
from reader.system import i18n
from reader.terminal.daemon import Terminal
from reader.transports.virtual import VirtualTransport
from reader.wire.event import Event, Mode, Reason

REVOKED_SN = bytes.fromhex("2122232425262728")
DOCS = REPO / "docs" / "kiosk"


def _event(reason: Reason | None = None, **detail: object) -> Event:
    return Event(id="0193a5c6-0000-7000-8000-000000000001", at_ms=1, clock_synced=True,
                 mode=Mode.CHECKIN, facility="f", reason=reason, detail=detail, seq=1)


@pytest.fixture
def speak(monkeypatch: pytest.MonkeyPatch):
    """Switch this process's catalog to a locale; the original one is back afterwards."""
    def switch(lang: str) -> None:
        for key in ("LANGUAGE", "LC_ALL", "LC_MESSAGES"):
            monkeypatch.delenv(key, raising=False)
        monkeypatch.setenv("LANG", lang)
        i18n.install()

    yield switch
    monkeypatch.undo()
    i18n.install()


def test_every_reason_has_words_a_pictogram_and_never_the_member(speak) -> None:
    speak("ja_JP.UTF-8")
    for reason in Reason:
        verdict = verdict_of(_event(reason), 0)
        title, note = words(verdict)
        assert title and note and verdict.pictogram
        assert not any(ch.isascii() and ch.isalpha() for ch in title), title
    assert words(verdict_of(_event(), 0))[0] == "受付しました"
    assert words(verdict_of(_event(direction="arrival"), 0))[0] == "登園"
    assert words(verdict_of(_event(direction="departure"), 0))[0] == "降園"
    coupon = words(verdict_of(_event(coupon="taxi", remaining=3), 0, {"taxi": "タクシー券"}))
    assert coupon == ("受付しました", "タクシー券　のこり 3 回")
    # A kind the city did not name is a coupon, never its code.
    assert words(verdict_of(_event(coupon="taxi", remaining=3), 0))[1] == "クーポン　のこり 3 回"
    assert words(verdict_of(_event(Reason.CARD_REMOVED), 0))[0] == "もう一度かざしてください"
    assert words(verdict_of(_event(Reason.REVOKED), 0))[0] == "このカードは使えません（窓口へ）"
    assert unrecorded(0).look is Look.TECHNICIAN


def test_the_words_are_the_kiosks_language_and_the_daemon_sends_only_the_meaning(
        speak) -> None:
    sent = [verdict_of(_event(reason), 0).to_json() for reason in Reason] + [
        verdict_of(_event(coupon="taxi", remaining=1), 0, {"taxi": "Taxi ticket"}).to_json(),
        unrecorded(0).to_json()]
    for data in sent:
        # What crosses the UDP feed: no sentence in any language, only what happened.
        assert not {"title", "note"} & set(data), data
        assert Verdict.from_json(json.loads(json.dumps(data))) is not None
    speak("C.UTF-8")
    english = [words(Verdict.from_json(d)) for d in sent]  # type: ignore[arg-type]
    for title, note in english:
        assert title.isascii() and note.isascii(), (title, note)
    assert words(verdict_of(_event(Reason.REVOKED), 0))[0] == \
        "This card cannot be used (please ask at the counter)"
    assert english[-2] == ("Tap received", "Taxi ticket: 1 use left")
    assert "taxi" not in json.dumps(sent)  # the code never crosses to the screen
    assert words(verdict_of(_event(direction="arrival"), 0)) == ("Arrival", "Good morning")
    assert page_texts()["lang"] == "en"
    speak("ja_JP.UTF-8")
    assert words(verdict_of(_event(Reason.CARD_REMOVED), 0))[0] == "もう一度かざしてください"
    assert words(Verdict.from_json(sent[-2]))[1] == "Taxi ticket　のこり 1 回"  # type: ignore[arg-type]
    texts = page_texts()
    assert (texts["lang"], texts["idle_title"], texts["service"], texts["closed_title"]) == (
        "ja", "カードをかざしてください", "宿毛ID", "この端末は使えません")
    # Something else on the port is not a verdict: the kiosk ignores it.
    for junk in ({}, {"look": "accepted", "kind": "bogus", "at_ms": 0}, [1],
                 {"look": "red", "kind": "accepted", "at_ms": 0},
                 {"look": "accepted", "kind": "accepted", "at_ms": "0"}):
        assert Verdict.from_json(junk) is None


def test_the_staff_line_speaks_the_kiosks_language(speak) -> None:
    now = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
    status = {"running": True, "updated_at": "2026-12-01T09:00:00.000Z", "reader": "missing",
              "unrecorded": 1, "alarms": ["queue_full"], "queue": {"pending": 3},
              "sync": {"state": "offline"}}
    speak("C.UTF-8")
    # The reader's state is the heartbeat's (fresher than status.json).
    view = staff_view(status, now, service="no_reader")
    assert (view["reader"], view["link"], view["queue"]) == (
        "Reader: not found", "City link: not connected",
        "Not sent yet: 3 taps (kept on the terminal)")
    assert "Alarm: queue_full — call a technician." in view["advice"] and not view["ok"]
    assert staff_view({**status, "queue": {"pending": 1}}, now)["queue"] == \
        "Not sent yet: 1 tap (kept on the terminal)"
    speak("ja_JP.UTF-8")
    view = staff_view(status, now, service="no_reader")
    assert (view["reader"], view["link"], view["queue"]) == (
        "読み取り機: 見つかりません", "市との通信: 未接続", "未送信: 3 件（端末に保存済み）")
    assert "警報: queue_full — 技術者に連絡してください。" in view["advice"]
    assert staff_view(None, service="stopped")["advice"] == [
        "端末のプログラムが動いていません。技術者に連絡してください。"]
    # A stopped daemon's status.json is a memory: its reader and link are not shown as they
    # were (the issue: 読み取り機: 正常 under a dead daemon).
    stopped = staff_view({**status, "reader": "ok", "sync": {"state": "online"}}, now,
                         service="stopped")
    assert (stopped["reader"], stopped["link"]) == ("読み取り機: 不明", "市との通信: 不明")


# -- the status light ----------------------------------------------------------------------

@pytest.fixture
def lit_terminal(tmp_path: Path):
    dep = Deployment(tmp_path, denied_serials=[REVOKED_SN])
    dep.write_config("[feedback]\nlight = true\nlight_hold_s = 5\n")
    factory = MockFactory()
    transport = VirtualTransport(load_settings(dep.config).reader)
    terminal = Terminal(load_settings(dep.config), transport=transport, with_sync=False,
                        pin_factory=factory)
    yield dep, terminal, transport, factory
    terminal.close()


def _tap(terminal: Terminal, transport: VirtualTransport, card) -> Event | None:
    transport.present(card)
    link = wait_for(lambda: terminal.source.next_tap(0.05), 5, "the card in the field")
    try:
        return terminal.tap_once(link)
    finally:
        transport.lift()
        terminal.source.next_tap(0.05)


def test_the_light_shows_each_verdict_after_the_commit(lit_terminal) -> None:
    dep, terminal, transport, factory = lit_terminal
    fb = terminal.settings.feedback
    pin = factory.pin
    assert terminal.source.next_tap(0.05) is None  # the reader opened, no card yet
    terminal.write_status()
    assert pin(fb.pin_ready).state and not pin(fb.pin_technician).state

    stored = _tap(terminal, transport, dep.issuer.issue_card("SK-LIGHT-1", os.urandom(8)))
    assert stored is not None and stored.accepted and stored.seq == 1  # on disk first
    wait_for(lambda: pin(fb.pin_accepted).state, 2, "the accepted LED")
    assert not pin(fb.pin_refused).state

    _tap(terminal, transport, dep.issuer.issue_card("SK-LIGHT-2", REVOKED_SN))
    wait_for(lambda: pin(fb.pin_refused).state, 2, "the refused LED")
    assert not pin(fb.pin_accepted).state  # one verdict at a time

    torn = dep.issuer.issue_card("SK-LIGHT-3", os.urandom(8), faults=CardFaults(tear_after=2))
    _tap(terminal, transport, torn)
    # "tap again": three quick flashes, so the LED goes off and on again
    wait_for(lambda: sum(1 for s in pin(fb.pin_refused).states if s.state) >= 3, 3,
             "the refused LED flashing")


def test_a_light_that_cannot_be_driven_never_stops_a_tap(tmp_path: Path) -> None:
    dep = Deployment(tmp_path)
    dep.write_config("[feedback]\nlight = true\npin_ready = 4\npin_accepted = 4\n")
    settings = load_settings(dep.config)
    # Two LEDs on one pin: gpiozero refuses; the terminal runs without its light.
    feedback = Feedback.from_settings(settings.feedback, MockFactory())
    assert feedback.light is None
    terminal = Terminal(settings, transport=VirtualTransport(settings.reader),
                        with_sync=False, pin_factory=MockFactory())
    try:
        assert _tap(terminal, terminal.source.transport,  # type: ignore[arg-type]
                    dep.issuer.issue_card("SK-LIGHT-4", os.urandom(8))) is not None
    finally:
        terminal.close()


# -- the kiosk screen ----------------------------------------------------------------------

def test_a_missing_kiosk_costs_a_tap_nothing(tmp_path: Path) -> None:
    feed = ScreenFeed(tmp_path / "nobody.sock")  # nobody listens there
    for _ in range(50):
        feed.show(unrecorded(0))  # never raises, never blocks
    feed.close()
    assert feed.failures >= 51  # counted, the heartbeat's too


def test_the_feed_decoder_bounds_every_datagram_before_parsing_it() -> None:
    verdict = verdict_of(_event(), 5)
    assert decode(encode(verdict)) == verdict and decode(encode(Beat.READY)) is Beat.READY
    cases = {b"[" * 5000: "too_large", b"[" * 2000: "too_deep", b"\xff": "not_utf8",
             b"{" * 3 + b"}" * 3: "not_json", b'{"beat": "asleep"}': "bad_beat",
             b'{"verdict": {"look": "accepted"}}': "not_a_verdict", b"[]": "not_a_verdict",
             b'{"beat": "ready", "verdict": null}': "not_a_verdict"}
    for payload, why in cases.items():
        with pytest.raises(FeedError) as caught:
            decode(payload)
        assert caught.value.why == why, payload[:40]
    # Brackets inside a string are text, not depth (an escaped quote does not end it).
    text = json.dumps({"verdict": {**verdict.to_json(), "coupon_name": '\\"[[[[[[[[['}})
    assert decode(text.encode()).coupon_name == '\\"[[[[[[[[['  # type: ignore[union-attr]


def test_the_heartbeat_says_ready_no_reader_stalled_and_stopped(sock_dir: Path  # noqa: F811
                                                                ) -> None:
    kiosk_end = FeedSocket(sock_dir / "feed.sock")
    feed = ScreenFeed(kiosk_end.path, stall_s=0.5)

    def heard(beat: Beat, within: float = 2.0) -> bool:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if kiosk_end.receive() is beat:
                return True
        return False

    try:
        assert heard(Beat.STARTING)  # before the tap loop's first report
        feed.state(running=True, reader_ok=True)
        assert heard(Beat.READY)
        feed.state(running=True, reader_ok=False)
        assert heard(Beat.NO_READER)
        assert heard(Beat.STALLED)  # the tap loop stopped reporting (stall_s)
        feed.state(running=True, reader_ok=True)
        assert heard(Beat.READY)
    finally:
        feed.close()  # its last word
    assert heard(Beat.STOPPED, 0.5)
    assert kiosk_end.receive() is None  # and then silence
    kiosk_end.close()
    assert not kiosk_end.path.exists()


def test_a_feed_socket_the_kiosk_cannot_use_is_a_clear_mistake(tmp_path: Path) -> None:
    dep = Deployment(tmp_path)
    dep.write_config(kiosk_section(free_port(), Path("relative/feed.sock")))
    result = run_cli("--config", str(dep.config), "kiosk", env=language_env("ja_JP.UTF-8"))
    assert result.returncode == 2 and "feedback.screen_feed" in result.stderr, result.stderr
    assert "絶対パス" in result.stderr and "Traceback" not in result.stderr
    dep.write_config(kiosk_section(free_port(), Path("/" + "x" * 120 + "/feed.sock")))
    result = run_cli("--config", str(dep.config), "kiosk", env=language_env("ja_JP.UTF-8"))
    assert result.returncode == 2 and "107 バイト" in result.stderr, result.stderr
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    dep.write_config(kiosk_section(free_port(), blocker / "feed.sock"))  # not a directory
    result = run_cli("--config", str(dep.config), "kiosk", env=language_env("ja_JP.UTF-8"))
    assert result.returncode == 2, result.stderr
    assert "画面用のソケットをそこに作れません" in result.stderr
    assert "Traceback" not in result.stderr
    feed = tmp_path / "run" / "feed.sock"
    dep.write_config(kiosk_section(free_port(), feed, viewers="no-such-user"))
    result = run_cli("--config", str(dep.config), "kiosk", env=language_env("ja_JP.UTF-8"))
    assert result.returncode == 2 and "'no-such-user' はいません" in result.stderr, result.stderr
    assert not feed.exists()  # refused before anything was bound
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    dep.write_config(kiosk_section(taken.getsockname()[1], feed))
    result = run_cli("--config", str(dep.config), "kiosk", env=language_env("ja_JP.UTF-8"))
    taken.close()
    assert result.returncode == 2 and "feedback.screen_http_port" in result.stderr, \
        result.stderr
    assert "配信できません" in result.stderr and not feed.exists()


# The kiosk's language, the words it must show, and the daemon's (other) language: the
# words on the screen are chosen by the kiosk process, whatever the daemon speaks.
LANGUAGES = {
    "ja_JP.UTF-8": ("ja", "C.UTF-8", "カードをかざしてください", "正常", {
        "accepted": "受付しました", "refused": "このカードは使えません（窓口へ）",
        "retry": "もう一度かざしてください"}),
    "C.UTF-8": ("en", "ja_JP.UTF-8", "Please tap your card", "Reader: OK", {
        "accepted": "Tap received",
        "refused": "This card cannot be used (please ask at the counter)",
        "retry": "Please tap again"}),
}


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium package is not installed")
@pytest.mark.parametrize("lang", list(LANGUAGES))
def test_the_kiosk_shows_each_real_tap_in_its_language(tmp_path: Path, lang: str,
                                                       sock_dir: Path) -> None:  # noqa: F811
    html_lang, daemon_lang, idle, reader_ok, title_of = LANGUAGES[lang]
    dep = Deployment(tmp_path, denied_serials=[REVOKED_SN])
    http_port = free_port()
    dep.write_config(kiosk_section(http_port, sock_dir / "feed.sock"))
    kiosk = subprocess.Popen([*DAEMON, "--config", str(dep.config), "kiosk"], cwd=REPO,
                             env=language_env(lang), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    daemon = DaemonProc(dep, env={"LANG": daemon_lang, "LANGUAGE": "", "LC_ALL": "",
                                  "LC_MESSAGES": ""}).wait_ready()
    browser = None
    try:
        url = f"http://127.0.0.1:{http_port}/"
        wait_for(lambda: _serving(url), 15, "the kiosk page")
        browser = Browser(url)
        browser.wait_for(f"document.getElementById('reader').textContent.includes({reader_ok!r})")
        browser.wait_for("document.body.className === 'idle'")
        assert browser.evaluate("document.documentElement.lang") == html_lang
        assert browser.evaluate("document.getElementById('title').textContent") == idle
        shots = tmp_path / "shots"
        shots.mkdir()
        taps = [
            (dep.issuer.issue_card("SK-KIOSK-1", os.urandom(8)), "accepted"),
            (dep.issuer.issue_card("SK-KIOSK-2", REVOKED_SN), "refused"),
            (dep.issuer.issue_card("SK-KIOSK-3", os.urandom(8),
                                   faults=CardFaults(tear_after=2)), "retry"),
            (foreign_card(), "refused"),
        ]
        for n, (card, look) in enumerate(taps, 1):
            daemon.feed(card)
            browser.wait_for(f"window.kioskLog.length >= {n}")
            title = browser.evaluate("document.getElementById('title').textContent")
            assert title == title_of[look]
            assert browser.evaluate("document.body.className") == look
            assert browser.evaluate("document.getElementById('pictogram').textContent")
            shown = browser.evaluate(f"window.kioskLog[{n - 1}]")
            # Shown after the commit (the verdict's own clock), within a second here; the
            # 100 ms goal is measured by scripts/bench (kiosk_update_ms_p99).
            assert 0 <= shown["shown_ms"] - shown["at_ms"] < 1000, shown
            png = browser.screenshot(shots / f"{n}-{look}.png")
            assert png.stat().st_size > 10_000
        page = browser.evaluate("document.body.innerText")
        for secret in ("SK-KIOSK", "2122232425262728"):
            assert secret not in page  # never a member id or a serial on the screen
        assert len(dep.events()) == len(taps)
    finally:
        if browser is not None:
            browser.close()
        assert daemon.terminate() == 0
        end_process(kiosk)


def _serving(url: str) -> bool:
    import urllib.request

    try:
        return urllib.request.urlopen(url, timeout=1).status == 200
    except OSError:
        return False


KIOSK_UNIT = REPO / "firmware_config" / "kiosk" / "sukumo-reader-kiosk.service"
KIOSK_SOCKET = KIOSK_UNIT.with_suffix(".socket")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_the_kiosk_units_verify_and_the_browser_opens_the_held_port(tmp_path: Path) -> None:
    stub = tmp_path / "sukumo-reader"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    unit = tmp_path / KIOSK_UNIT.name
    unit.write_text(KIOSK_UNIT.read_text().replace("/opt/sukumo-reader/bin/sukumo-reader",
                                                   str(stub)))
    socket_unit = tmp_path / KIOSK_SOCKET.name
    socket_unit.write_text(KIOSK_SOCKET.read_text())
    result = subprocess.run(["systemd-analyze", "verify", str(unit), str(socket_unit)],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 0 and "sukumo-reader-kiosk" not in result.stderr, \
        result.stderr
    # The port systemd holds is the one the kiosk serves and the browser opens.
    port = FeedbackSettings().screen_http_port
    assert f"ListenStream=127.0.0.1:{port}\n" in KIOSK_SOCKET.read_text()
    service = KIOSK_UNIT.read_text()
    assert "Requires=sukumo-reader-kiosk.socket" in service
    assert "RuntimeDirectory=sukumo-reader-kiosk\nRuntimeDirectoryMode=0700" in service
    assert str(FeedbackSettings().screen_feed.parent) == "/run/sukumo-reader-kiosk"
    desktop = (KIOSK_UNIT.parent / "sukumo-kiosk-browser.desktop").read_text()
    assert f"--app=http://127.0.0.1:{port}/" in desktop and "--kiosk" in desktop
