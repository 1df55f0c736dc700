"""A clock that lies is survived (issue 22 item 5): real daemons under libfaketime.

libfaketime shifts what the daemon reads as the wall clock; FAKETIME_DONT_FAKE_MONOTONIC
leaves CLOCK_BOOTTIME alone, as a real step (`date -s`, NTP) does. On main, the clock
set 400 days ahead let the prune forget this month's coupon counts, and 31 days back
opened last month's counts again: the same member got a limit of 2 four times over. A
step back also made a double tap a new check-in.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from daemon_env import DaemonProc, Deployment, wait_for

pytestmark = pytest.mark.timeout(240)

LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
DAY_S = 86_400
COUPON = """
[modes.coupon]
debounce_s = 1
[[modes.coupon.kinds]]
code = "taxi"
rule = "senior"
limit = 2
period = "month"
"""


def faketime(**env: str) -> dict[str, str]:
    assert Path(LIBFAKETIME).exists(), "libfaketime (scripts/bootstrap.sh installs it)"
    return {"LD_PRELOAD": LIBFAKETIME, "FAKETIME_DONT_FAKE_MONOTONIC": "1", **env}


def valid_across_jumps(dep: Deployment) -> None:
    """Bundles issued 60 days ago, so that the card's checks 1-8 pass at -31 d too."""
    from reader.bundles.store import TrustStore

    store = TrustStore(bytes.fromhex(dep.issuer.root_public_hex), dep.issuer.muni, dep.tid,
                       dep.state / "bundles")
    then = int(time.time()) - 60 * DAY_S
    store.apply("trust", dep.issuer.trust_bundle(version=2, now=then))
    store.apply("denylist", dep.issuer.denylist_bundle(version=2, now=then))


def jumps_told(dep: Deployment, expected: int, timeout: float = 10.0) -> int:
    """How many clock-jump alarms the status the city receives carries, once it has
    `expected` of them (or after `timeout`)."""
    def told() -> int:
        alarms = dep.status().get("alarms", []) if dep.status_file_exists() else []
        return sum("clock jumped" in alarm for alarm in alarms)

    try:
        return int(wait_for(lambda: told() >= expected and told(), timeout, "the alarms"))
    except AssertionError:
        return told()


def test_the_coupon_limit_holds_across_clock_jumps(tmp_path: Path) -> None:
    dep = Deployment(tmp_path)
    dep.write_config(COUPON)
    valid_across_jumps(dep)
    now = int(time.time())
    member = dep.issuer.issue_card("M-TAXI-0001", os.urandom(8), attr={"senior": True},
                                   iat=now - 90 * DAY_S, exp=now + 800 * DAY_S)
    mode = {"SUKUMO_READER_TERMINAL__MODE": "coupon"}
    seen: list[tuple[str | None, Any]] = []
    told: list[int] = []
    for shift, taps in ((None, 3), ("+400d", 2), (None, 1), ("-31d", 2), (None, 1)):
        env = {**mode, **(faketime(FAKETIME=shift) if shift else {})}
        daemon = DaemonProc(dep, env=env).wait_ready()
        try:
            for n in range(1, taps + 1):
                time.sleep(1.1)  # past the coupon's double-tap window
                daemon.feed(member)
                daemon.wait_taps(n)
            if shift:  # the city is told, in the status it receives: once per jump
                told.append(jumps_told(dep, len(told) + 1))
        finally:
            assert daemon.terminate() == 0
        seen += [(shift, tap["reason"]) for tap in daemon.logged("tap recorded")]
    accepted = [shift for shift, reason in seen if reason is None]
    assert accepted == [None, None], seen  # two this month, whatever the clock said
    assert {reason for _, reason in seen[2:]} == {"not_eligible"}, seen
    events = dep.events()
    assert [e["result"] for e in events].count("accepted") == 2
    assert told == [1, 2]


def test_debounce_holds_across_a_step_back_while_running(tmp_path: Path) -> None:
    dep = Deployment(tmp_path)
    offset = tmp_path / "faketime.rc"
    offset.write_text("+0\n")
    env = faketime(FAKETIME_TIMESTAMP_FILE=str(offset), FAKETIME_NO_CACHE="1")
    daemon = DaemonProc(dep, env=env).wait_ready()
    member = dep.issuer.issue_card("M-GYM-0001", os.urandom(8))
    try:
        daemon.feed(member)
        daemon.wait_taps(1)
        offset.write_text("-1h\n")  # NTP (or a person) steps the clock back an hour
        time.sleep(0.5)
        daemon.feed(member)  # a double tap, seconds later
        taps = daemon.wait_taps(2)
        told = jumps_told(dep, 1, timeout=15)
    finally:
        assert daemon.terminate() == 0
    assert [t["reason"] for t in taps] == [None, "duplicate"]
    assert told == 1
    events = dep.events()
    # The city keeps the wall clock's `at`, flagged as not to be trusted.
    assert events[1]["at"] < events[0]["at"] and events[1]["clock"] == "unsynced"
