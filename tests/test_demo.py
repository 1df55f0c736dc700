"""The README's first command: `scripts/demo` runs the whole tour and exits 0.

It goes through scripts/bootstrap.sh (already satisfied on a machine that runs the
tests) and the real terminal; with mosquitto and PostgreSQL installed the taps reach
the city service (`sukumo-city run`) on a local PostgreSQL and are acknowledged.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from daemon_env import language_env

REPO = Path(__file__).resolve().parents[1]
TOUR = [
    ("A member taps her card", "ACCEPTED"),
    ("She taps again right away", "REJECTED: duplicate"),
    ("A revoked card", "REJECTED: revoked"),
    ("A clone", "REJECTED: clone_suspected"),
    ("An expired card", "REJECTED: expired"),
    ("A My Number Card with no 宿毛ID", "REJECTED: not_registered"),
    ("A card signed by an issuer the city does not trust", "REJECTED: unknown_issuer"),
    ("A card pulled away mid-read", "REJECTED: card_removed"),
    ("A child taps in the morning", "'direction': 'arrival'"),
    ("The child taps out in the afternoon", "'direction': 'departure'"),
]


TOUR_JA = [
    ("会員がカードをかざします", "受付"),
    ("すぐにもう一度かざします", "拒否: duplicate"),
    ("失効したカード（製造番号が市の利用停止リストに載っています）", "拒否: revoked"),
    ("複製カード", "拒否: clone_suspected"),
    ("有効期限切れのカード", "拒否: expired"),
    ("宿毛IDが登録されていないマイナンバーカード", "拒否: not_registered"),
    ("市が信頼していない発行者が署名したカード", "拒否: unknown_issuer"),
    ("読み取りの途中で離されたカード", "拒否: card_removed"),
    ("市がこの端末を保育園", "モード nursery"),
    ("朝、園児がカードをかざします", "'direction': 'arrival'"),
    ("時間がたちます", "8 時間後"),
    ("午後、園児が帰りにカードをかざします", "'direction': 'departure'"),
]


def test_readme_demo_command_shows_every_step(tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text()
    command = re.search(r"^\./(scripts/demo)\b", readme, re.MULTILINE)
    assert command, "README must open with the demo command"
    env = language_env("C.UTF-8")
    proc = subprocess.run([str(REPO / command.group(1)), "--pace", "0", "--dir",
                           str(tmp_path / "demo")], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=240)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    position = 0
    for title, verdict in TOUR:
        at = out.find(title, position)
        assert at >= 0, f"step {title!r} missing or out of order:\n{out}"
        line_end = out.find("city", at)
        assert verdict in out[at:line_end + 200], f"{title}: expected {verdict}\n{out}"
        position = at
    assert "Demo finished." in out
    if shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists():
        assert "city ✓ stored and acknowledged" in out
        # the city's own view, from its own database (sukumo-city summary)
        assert re.search(r"392081: 1 of 1 terminal\(s\) online, 10 event\(s\) stored, "
                         r"0 missing", out), out


def test_demo_without_a_broker_runs_offline_and_queues(tmp_path: Path) -> None:
    env = language_env("C.UTF-8")
    proc = subprocess.run([sys.executable, "-m", "reader", "demo", "--offline", "--pace",
                           "0", "--dir", str(tmp_path / "demo")], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "the terminal runs offline; taps are queued" in proc.stdout
    assert "Queue: 10 taps recorded (seq 1..10), 10 waiting" in proc.stdout


def test_the_demo_tells_its_tour_in_japanese_under_a_japanese_locale(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "reader", "demo", "--offline", "--pace",
                           "0", "--dir", str(tmp_path / "demo")], cwd=REPO,
                          env=language_env("ja_JP.UTF-8"), capture_output=True, text=True,
                          timeout=120)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert out.startswith("sukumo-reader デモ — 仮想の読み取り機で動く宿毛ID端末"), out
    assert "端末はオフラインで動き、タッチはキューに保存されます" in out
    position = 0
    for title, verdict in TOUR_JA:
        at = out.find(title, position)
        assert at >= 0, f"step {title!r} missing or out of order:\n{out}"
        assert verdict in out[at:out.find("\n", out.find("\n", at) + 1) + 200], (title, out)
        position = at
    assert "キュー: 10 件のタッチを記録（seq 1..10）、送信待ち 10 件" in out
    assert out.rstrip().endswith("デモを終了しました。"), out
    for english in ("A member taps her card", "REJECTED", "Queue:", "Demo finished",
                    "City link", "stored as seq", "waiting for the city"):
        assert english not in out, english  # every line of the tour is in Japanese


@pytest.mark.parametrize("real", ["2026-12-01 07:00", "2026-12-01 16:45", "2026-12-01 23:59"])
def test_the_demo_clock_starts_on_a_local_morning_whatever_the_real_time(real: str) -> None:
    # The tour's nursery step taps "in the morning", then eight hours later: both taps must
    # fall on one local day, so the second is a departure at any hour the demo runs.
    from reader.devtools.demo import Clock

    zone = ZoneInfo("Asia/Tokyo")
    now = datetime.fromisoformat(real).replace(tzinfo=zone).timestamp()
    clock = Clock("Asia/Tokyo", now=now)
    start = datetime.fromtimestamp(clock(), zone)
    assert start.hour == 8 and clock() >= now  # never before now: new cards are valid
    clock.offset += 8 * 3600
    assert datetime.fromtimestamp(clock(), zone).date() == start.date()
