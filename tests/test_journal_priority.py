"""Warnings and errors reach the journal at their level (`journalctl -p warning` finds them).

The daemon runs for real on the virtual reader with a speaker that is not there, so it
logs the warning "audio missing; taps go on without sound" and the info "terminal ready".
Its stdout is the journal stream the way systemd sets it up: JOURNAL_STREAM names the
stream's device:inode (systemd.exec(5)). Checked twice: against journald's documented
stream format (sd-daemon(3): a line starting "<N>" is filed at priority N, the prefix
removed), and, where it can run, against a real systemd-journald started in a private
mount namespace (its own /run/systemd and journal directories: the machine's journal, if
any, is not touched), read back with journalctl.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from daemon_env import DAEMON, REPO, DaemonProc, Deployment
from waiting import wait_for

NO_SPEAKER = {"SUKUMO_READER_SOUND__ENABLED": "true",
              "SUKUMO_READER_SOUND__DEVICE": "hw:CARD=NoSuchSpeaker"}
# sd-daemon(3): "<N>" with N one digit 0..7 at the start of a line.
PREFIX = re.compile(r"^<([0-7])>(.*)$")
JOURNALD = Path("/lib/systemd/systemd-journald")


def journal_lines(text: str) -> list[tuple[int, dict[str, Any]]]:
    """Each line as journald files it: (PRIORITY, the MESSAGE parsed as our JSON)."""
    out = []
    for line in text.splitlines():
        match = PREFIX.match(line)
        assert match, f"a line without a priority prefix reaches the journal at info: {line!r}"
        out.append((int(match.group(1)), json.loads(match.group(2))))
    return out


def run_until_warned(dep: Deployment, env: dict[str, str], stream_of_stdout: bool) -> str:
    if stream_of_stdout:  # JOURNAL_STREAM must name the very file the daemon writes to
        out = dep.root / "daemon.out"
        out.touch()
        st = out.stat()
        env = {**env, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
    daemon = DaemonProc(dep, env=env)  # (its wait_ready reads plain JSON lines only)
    for what in ("terminal ready", "audio missing"):
        wait_for(lambda w=what: w in daemon.out_text() or daemon.proc.poll() is not None, 30, what)
    assert daemon.proc.poll() is None, daemon.out_text() + daemon.err_text()
    assert daemon.terminate() == 0
    return daemon.out_text()


def test_daemon_lines_carry_sd_daemon_priorities_on_the_journal_stream(tmp_path: Path) -> None:
    dep = Deployment(tmp_path)
    lines = journal_lines(run_until_warned(dep, NO_SPEAKER, stream_of_stdout=True))
    by_msg = {entry["msg"]: (priority, entry) for priority, entry in lines}
    priority, warning = by_msg["audio missing; taps go on without sound"]
    assert priority == 4  # LOG_WARNING: `journalctl -p warning` shows it
    assert warning["level"] == "warning" and warning["error"]  # structured fields kept
    assert warning["logger"].startswith("reader.")
    assert by_msg["terminal ready"][0] == 6  # LOG_INFO: not under -p warning
    assert all(p == {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 2}[e["level"]]
               for p, e in lines)


def test_plain_json_when_stdout_is_not_the_journal(tmp_path: Path) -> None:
    # A child that inherited JOURNAL_STREAM but writes to a file (a technician's
    # `sukumo-reader run > log`) must not prefix: the variable names another stream.
    dep = Deployment(tmp_path)
    text = run_until_warned(dep, {**NO_SPEAKER, "JOURNAL_STREAM": "1:2"},
                            stream_of_stdout=False)
    first = text.splitlines()[0]
    assert first.startswith("{") and json.loads(first)["msg"]


journald_can_run = pytest.mark.skipif(
    os.geteuid() != 0 or not JOURNALD.exists() or not shutil.which("unshare")
    or not shutil.which("systemd-cat"),
    reason="a private systemd-journald needs root, unshare and systemd's journald")

SCRIPT = r"""
set -eu
# Fresh, private tmpfs for every place journald writes to or listens in (never creating
# /var/log/journal: without it journald keeps its files under /run/log, private here).
for d in /run/systemd /run/log; do mkdir -p "$d"; mount -t tmpfs tmpfs "$d"; done
[ ! -d /var/log/journal ] || mount -t tmpfs tmpfs /var/log/journal
mkdir -p /run/systemd/journal
"$JOURNALD" >"$WORK/journald.log" 2>&1 &
journald=$!
trap 'kill $journald 2>/dev/null || true' EXIT
for i in $(seq 100); do [ -S /run/systemd/journal/stdout ] && break; sleep 0.1; done
# What systemd does for a unit's stdout: connect it to journald's stream socket (with
# level prefixes on, the default) and name it in JOURNAL_STREAM.
systemd-cat -t sukumo-reader sh -c \
    'JOURNAL_STREAM=$(stat -L -c %d:%i /proc/$$/fd/1); export JOURNAL_STREAM; exec "$@"' \
    sh "$@" &
daemon=$!
for i in $(seq 300); do
    journalctl -q -t sukumo-reader -p warning --no-pager 2>/dev/null | grep -q 'audio missing' \
        && break
    sleep 0.1
done
sleep 0.5
kill -TERM $daemon; wait $daemon || true
journalctl -q -t sukumo-reader -p warning -o json --no-pager > "$WORK/warning.json"
journalctl -q -t sukumo-reader -o json --no-pager > "$WORK/all.json"
"""


@journald_can_run
def test_real_journald_files_the_warning_at_warning_priority(tmp_path: Path) -> None:
    dep = Deployment(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUKUMO_READER_")}
    env.update(NO_SPEAKER, WORK=str(tmp_path), JOURNALD=str(JOURNALD))
    env.pop("NOTIFY_SOCKET", None)
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", SCRIPT, "sh",
         *DAEMON, "--config", str(dep.config), "run"],
        capture_output=True, text=True, timeout=120, env=env, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    warning = [json.loads(line) for line in (tmp_path / "warning.json").read_text().splitlines()]
    every = [json.loads(line) for line in (tmp_path / "all.json").read_text().splitlines()]
    assert every, (tmp_path / "journald.log").read_text()

    messages = {json.loads(e["MESSAGE"])["msg"]: e for e in every}
    assert messages["terminal ready"]["PRIORITY"] == "6"
    shown = [json.loads(e["MESSAGE"]) for e in warning]
    # `-p warning` gives exactly the daemon's warnings: audio missing, and (this test's
    # terminal runs on the virtual reader) the start-up warning that it reads no card.
    assert sorted(m["msg"].split(";")[0] for m in shown) == [
        "audio missing", "virtual reader: this terminal reads no card, only files in "
        "[reader] virtual_feed"], every
    assert all(e["PRIORITY"] == "4" and e["_TRANSPORT"] == "stdout" for e in warning)
    audio = next(m for m in shown if m["msg"].startswith("audio missing"))
    assert audio["level"] == "warning" and audio["error"]  # the fields, kept
    assert not any(e["MESSAGE"].startswith("<") for e in warning)  # journald took it off
