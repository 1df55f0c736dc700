"""The kiosk screen never lies and never breaks a word: the real daemon, the real kiosk
process and Debian's headless Chromium at the displays' own sizes.

- With the daemon killed or stopped, the page stops inviting taps (この端末は使えません,
  no ◎, no かざして) within 2 s and the staff line says why; the same while the reader is
  gone; it invites taps again once the daemon and its reader are back.
- At 800×480, 1024×600 and 1280×720 every screen fits, and every line break falls
  between words (Intl.Segmenter's word boundaries for the page's language, measured
  from the line boxes Chromium laid out).
- No citizen screen shows an id: a coupon is shown by the name the city gave it in its
  signed config bundle, never by its code.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
from chromium_env import CHROMIUM, Browser
from daemon_env import DaemonProc, Deployment, run_cli
from kiosk_env import KioskProc, kiosk_section, sock_dir, wait_serving  # noqa: F401

from reader.config import load_settings
from reader.devtools.broker import free_port
from reader.feedback import unrecorded, verdict_of
from reader.feedback.screen import ScreenFeed
from reader.wire.event import Event, Mode, Reason

pytestmark = pytest.mark.skipif(CHROMIUM is None,
                                reason="Debian's chromium package is not installed")
SIZES = [(800, 480), (1024, 600), (1280, 720)]
CLASS = "document.body.className"
TEXT = "document.body.innerText"
CITIZEN = "document.getElementById('verdict').innerText"
STAFF = "document.getElementById('staff').innerText"
# Only the service's own name may be in Latin letters on a Japanese citizen screen.
NOT_JAPANESE = re.compile(r"[A-Za-z_]+")


def _screen(tmp_path: Path, sock_dir: Path, **dep_args: object  # noqa: F811
            ) -> tuple[Deployment, KioskProc, str]:
    dep = Deployment(tmp_path, **dep_args)  # type: ignore[arg-type]
    port = free_port()
    dep.write_config(kiosk_section(port, sock_dir / "feed.sock"))
    kiosk = KioskProc(dep.config)
    url = f"http://127.0.0.1:{port}/"
    wait_serving(url)
    return dep, kiosk, url


def _closed_within(browser: Browser, started: float, limit_s: float) -> float:
    browser.wait_for(f"{CLASS} === 'closed'", timeout=limit_s)
    return time.monotonic() - started


def test_the_screen_stops_inviting_taps_when_the_daemon_or_its_reader_is_gone(
        tmp_path: Path, sock_dir: Path) -> None:  # noqa: F811
    dep, kiosk, url = _screen(tmp_path, sock_dir)
    away = dep.feed.with_name("feed-unplugged")
    dep.feed.rename(away)  # the reader is unplugged before the daemon starts
    daemon = DaemonProc(dep)
    browser = Browser(url, size=(800, 480))
    try:
        # No reader: closed, and the staff line says what to do.
        browser.wait_for(f"{STAFF}.includes('USB')", timeout=20)
        assert browser.evaluate(CLASS) == "closed"
        assert "読み取り機: 見つかりません" in browser.evaluate(STAFF)
        _assert_no_invitation(browser)
        away.rename(dep.feed)  # plugged in again
        browser.wait_for(f"{CLASS} === 'idle'", timeout=10)
        assert "カードをかざしてください" in browser.evaluate(TEXT)
        browser.wait_for(f"{STAFF}.includes('読み取り機: 正常')", timeout=5)

        daemon.feed(dep.issuer.issue_card("SK-SCREEN-1", os.urandom(8)))
        browser.wait_for("window.kioskLog.length >= 1")
        assert browser.evaluate(CLASS) == "accepted"

        # Killed while showing a verdict: no goodbye, only the heartbeat's silence.
        started = time.monotonic()
        daemon.kill()
        killed_s = _closed_within(browser, started, 2.0)
        _assert_no_invitation(browser)
        staff = browser.evaluate(STAFF)
        assert "端末のプログラムが動いていません" in staff, staff
        assert "読み取り機: 不明" in staff and "正常" not in staff, staff  # nothing stale

        daemon = DaemonProc(dep).wait_ready()
        browser.wait_for(f"{CLASS} === 'idle'", timeout=10)
        started = time.monotonic()
        daemon.proc.terminate()  # systemctl stop
        stopped_s = _closed_within(browser, started, 2.0)
        _assert_no_invitation(browser)
        assert daemon.proc.wait(15) == 0
        print(f"closed after SIGKILL {killed_s:.2f} s, after SIGTERM {stopped_s:.2f} s")
        assert kiosk.stop() == 0  # systemctl stop: a clean exit, not a failure
    finally:
        browser.close()
        daemon.kill()
        kiosk.stop()


def _assert_no_invitation(browser: Browser) -> None:
    text = browser.evaluate(CITIZEN)
    assert "この端末は使えません" in text, text
    assert "かざして" not in text and "◎" not in text, text


# -- layout ---------------------------------------------------------------------------------

# Where each line of an element starts, checked against the word boundaries of its text.
BROKEN_WORDS = """(() => {
  const problems = [];
  const words = new Intl.Segmenter(document.documentElement.lang, {granularity: "word"});
  const range = document.createRange();
  for (const id of ["title", "note", "reader", "link", "queue", "advice"]) {
    const el = document.getElementById(id), node = el.firstChild;
    if (!node || node.nodeType !== Node.TEXT_NODE) continue;
    const text = node.data, bounds = new Set([text.length]);
    for (const s of words.segment(text)) bounds.add(s.index);
    let lastTop = null;
    for (let i = 0; i < text.length; i++) {
      range.setStart(node, i); range.setEnd(node, i + 1);
      const rects = range.getClientRects();
      if (!rects.length) continue;  // a space collapsed at a line's end
      const top = rects[0].top;
      if (lastTop !== null && top > lastTop + 2 && !bounds.has(i))
        problems.push(`${id}: ${text.slice(0, i)} / ${text.slice(i)}`);
      lastTop = top;
    }
    const box = el.getBoundingClientRect();
    if (box.left < 0 || box.right > innerWidth || box.bottom > innerHeight
        || el.scrollWidth > el.clientWidth + 1)
      problems.push(`${id}: outside the screen: ${text}`);
  }
  if (document.documentElement.scrollHeight > innerHeight) problems.push("page scrolls");
  return problems;
})()"""


def _event(reason: Reason | None = None, **detail: object) -> Event:
    return Event(id="0193a5c6-0000-7000-8000-000000000001", at_ms=1, clock_synced=True,
                 mode=Mode.COUPON, facility="f", reason=reason, detail=detail, seq=1)


def test_no_word_is_broken_and_no_id_is_shown_at_the_three_display_sizes(
        tmp_path: Path, sock_dir: Path) -> None:  # noqa: F811
    dep, kiosk, url = _screen(tmp_path, sock_dir)
    names = {"taxi": "タクシー券"}
    verdicts = [verdict_of(_event(reason), 0, names) for reason in Reason] + [
        verdict_of(_event(), 0), verdict_of(_event(direction="arrival"), 0),
        verdict_of(_event(direction="departure"), 0),
        verdict_of(_event(coupon="taxi", remaining=3), 0, names),
        verdict_of(_event(coupon="onsen", remaining=1), 0, names),  # a kind with no name
        verdict_of(_event(Reason.NOT_ELIGIBLE, coupon="taxi", remaining=0), 0, names),
        unrecorded(0)]
    feed = ScreenFeed(load_settings(dep.config).feedback.screen_feed)
    browser = Browser(url, size=SIZES[0])
    problems: list[str] = []
    try:
        browser.wait_for(f"{CLASS} === 'closed'")  # no daemon yet
        shown = 0
        for size in SIZES:
            browser.resize(size)
            feed.state(running=False, reader_ok=False)
            browser.wait_for(f"{CLASS} === 'closed'")
            problems += [f"{size} closed: {p}" for p in browser.evaluate(BROKEN_WORDS)]
            feed.state(running=True, reader_ok=True)
            browser.wait_for(f"{CLASS} === 'idle'")
            problems += [f"{size} idle: {p}" for p in browser.evaluate(BROKEN_WORDS)]
            for verdict in verdicts:
                feed.show(verdict)
                shown += 1
                browser.wait_for(f"window.kioskLog.length >= {shown}")
                problems += [f"{size} {verdict.kind}: {p}"
                             for p in browser.evaluate(BROKEN_WORDS)]
                citizen = browser.evaluate(CITIZEN)
                latin = set(NOT_JAPANESE.findall(citizen)) - {"ID"}
                if latin or "taxi" in citizen or "onsen" in citizen:
                    problems.append(f"{size} {verdict.kind}: an id on the screen: {citizen}")
    finally:
        browser.close()
        feed.close()
        kiosk.stop()
    assert not problems, "\n".join(problems)


def test_a_coupon_is_shown_by_the_name_from_the_citys_config_bundle(
        tmp_path: Path, sock_dir: Path) -> None:  # noqa: F811
    dep, kiosk, url = _screen(tmp_path, sock_dir)
    bundle = tmp_path / "config.bundle"
    bundle.write_bytes(dep.issuer.config_bundle(dep.tid, {
        "mode": "coupon", "coupon_debounce_s": 0,
        "coupons": [{"code": "taxi", "name": "タクシー券", "rule": "senior", "limit": 1}]}))
    imported = run_cli("--config", str(dep.config), "bundle", "import", str(bundle))
    assert imported.returncode == 0, imported.stdout + imported.stderr
    daemon = DaemonProc(dep).wait_ready()
    browser = Browser(url, size=(800, 480))
    try:
        browser.wait_for(f"{CLASS} === 'idle'", timeout=15)
        senior = dep.issuer.issue_card("SK-COUPON-1", os.urandom(8), attr={"senior": True})
        expected = ["タクシー券　のこり 0 回", "タクシー券: ご利用回数の上限に達しています",
                    "くわしくは窓口でおたずねください"]
        cards = [senior, senior, dep.issuer.issue_card("SK-COUPON-2", os.urandom(8))]
        for n, (card, note) in enumerate(zip(cards, expected, strict=True), 1):
            daemon.feed(card)
            browser.wait_for(f"window.kioskLog.length >= {n}")
            citizen = browser.evaluate(CITIZEN)
            assert note in citizen, citizen
            assert "taxi" not in citizen and "SK-COUPON" not in citizen, citizen
    finally:
        browser.close()
        daemon.kill()
        kiosk.stop()
    assert [e["detail"].get("coupon") for e in dep.events()] == ["taxi", "taxi", None]
