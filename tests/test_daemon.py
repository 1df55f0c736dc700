"""The real daemon (`sukumo-reader run`, a subprocess) on the virtual reader's feed directory.

Every kind of tap a facility sees ends in the queue as mqtt-v1 §2 says: the right
result and reason; `card` only when the issuer signature was verified; `proof` only
when INTERNAL AUTHENTICATE ran. One "tap recorded" line per tap, and nothing of the card
in the logs beyond mid and sn. A broken feed file never kills the daemon; SIGTERM is a
clean exit; a terminal without a root key or with a bad config refuses to start.
"""

from __future__ import annotations

import base64
import os
import time
from pathlib import Path
from typing import Any

import pytest
from daemon_env import DaemonProc, Deployment, run_cli, wait_for

from reader.card.record import parse_signed_record
from reader.emulator.card import CardFaults, VirtualCard
from reader.emulator.issuer import DevIssuer, clone_of, foreign_card

pytestmark = pytest.mark.timeout(120)

REVOKED_SN = bytes.fromhex("0badc0de00000007")
ATTR = {"birth_year": 1948, "senior": True, "license_returned": True}


def b64url_len(text: str) -> int:
    return len(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))


def card_secrets(card: VirtualCard) -> list[str]:
    """What of a card must never reach a log: its key, its record and the record's `pk`."""
    found = [f"{card.private_key.private_numbers().private_value:064x}"]
    for ef in card.apps.values():
        _, record = parse_signed_record(ef[2:])  # EF.RECORD: 2-byte length, then COSE
        pk = record.pk
        found += [ef.hex(), pk.hex(), base64.b64encode(pk).decode()[:40],
                  base64.urlsafe_b64encode(pk).decode()[:40]]
    return found


@pytest.fixture
def dep(tmp_path: Path) -> Deployment:
    return Deployment(tmp_path, denied_serials=[REVOKED_SN])


def test_each_kind_of_tap_is_recorded_as_the_spec_says(dep: Deployment) -> None:
    issuer = dep.issuer
    now = int(time.time())
    stranger = DevIssuer.generate()
    stranger.issuer_kid = b"not-trusted-1"
    valid = issuer.issue_card("M00000001", os.urandom(8), attr=ATTR)
    taps: list[tuple[VirtualCard, str | None]] = [
        (valid, None),
        (issuer.issue_card("M00000002", REVOKED_SN, attr=ATTR), "revoked"),
        (clone_of(valid), "clone_suspected"),
        (issuer.issue_card("M00000003", os.urandom(8), iat=now - 3 * 86400,
                           exp=now - 86400, attr=ATTR), "expired"),
        (foreign_card(), "not_registered"),
        (stranger.issue_card("M00000004", os.urandom(8), attr=ATTR), "unknown_issuer"),
        # Torn after SELECT and the first READ BINARY: the record was never complete.
        (issuer.issue_card("M00000005", os.urandom(8), attr=ATTR,
                           faults=CardFaults(tear_after=2)), "card_removed"),
    ]
    daemon = DaemonProc(dep).wait_ready()
    try:
        for card, _ in taps:
            daemon.feed(card)
        logged = daemon.wait_taps(len(taps))
    finally:
        assert daemon.terminate() == 0
    events = dep.events()
    assert [e["reason"] for e in events] == [reason for _, reason in taps]
    assert [e["seq"] for e in events] == list(range(1, len(taps) + 1))

    by_reason = {e["reason"]: e for e in events}
    # The card is named only once its issuer signature verified (checks 1-4 passed) ...
    named = {None: "M00000001", "revoked": "M00000002", "clone_suspected": "M00000001",
             "expired": "M00000003"}
    for reason, mid in named.items():
        card = by_reason[reason]["card"]
        assert card["mid"] == mid and card["muni"] == issuer.muni, reason
        assert card["ap"] == "member" and len(bytes.fromhex(card["sn"])) == 8
    assert by_reason["revoked"]["card"]["sn"] == REVOKED_SN.hex()
    for reason in ("not_registered", "unknown_issuer", "card_removed"):
        assert by_reason[reason]["card"] is None, reason
    # ... and carries a receipt only when INTERNAL AUTHENTICATE ran (a clone answers too).
    for reason in (None, "clone_suspected"):
        proof = by_reason[reason]["proof"]
        assert b64url_len(proof["nonce"]) == 16 and b64url_len(proof["sig"]) == 64, reason
        assert "=" not in proof["nonce"] + proof["sig"]
    for reason in ("revoked", "expired", "not_registered", "unknown_issuer", "card_removed"):
        assert by_reason[reason]["proof"] is None, reason
    nonces = [by_reason[r]["proof"]["nonce"] for r in (None, "clone_suspected")]
    assert len(set(nonces)) == 2  # a fresh challenge per tap

    for event in events:
        assert event["result"] == ("accepted" if event["reason"] is None else "rejected")
        assert (event["mode"], event["facility"], event["detail"]) == ("checkin", "test-hall", {})
        assert event["clock"] in ("synced", "unsynced")
        assert event["at"].endswith("Z") and len(event["at"]) == len("2026-01-01T00:00:00.000Z")

    # One "tap recorded" line per tap, naming the event; nothing of the card beyond mid/sn.
    assert [(t["id"], t["seq"], t["reason"]) for t in logged] == [
        (e["id"], e["seq"], e["reason"]) for e in events]
    out = daemon.out_text() + daemon.err_text()
    for card, _ in taps:
        for secret in card_secrets(card):
            assert secret not in out, f"card data of {card.name} in the logs"
    for event in events:
        if event["proof"]:
            assert event["proof"]["sig"] not in out and event["proof"]["nonce"] not in out
    for word in ("birth_year", "senior", "license_returned", "1948", '"pk"'):
        assert word not in out, word
    card_fields = {"pk", "attr", "record", "iat", "exp", "proof", "sig", "nonce", "card"}
    for entry in daemon.log_entries():
        assert not card_fields & set(entry), entry


def test_a_broken_card_file_does_not_kill_the_daemon(dep: Deployment) -> None:
    daemon = DaemonProc(dep).wait_ready()
    try:
        daemon.feed("{ this is not a card")
        daemon.feed('{"apps": {"zz": "00"}}')
        daemon.feed(dep.issuer.issue_card("M00000009", os.urandom(8)))
        [tap] = daemon.wait_taps(1)
        assert daemon.proc.poll() is None
        # dropped, not retried forever (the tapped card's file goes when it is lifted)
        wait_for(lambda: not list(dep.feed.glob("*.card")), 5, "the feed to empty")
    finally:
        assert daemon.terminate() == 0
    assert tap["result"] == "accepted" and tap["mid"] == dep.pseudonym("M00000009")
    assert len(daemon.logged("unreadable virtual card file")) == 2


def test_sigterm_exits_zero_and_the_status_says_stopped(dep: Deployment) -> None:
    daemon = DaemonProc(dep).wait_ready()
    try:
        daemon.feed(dep.issuer.issue_card("M00000010", os.urandom(8)))
        daemon.wait_taps(1)
        running: dict[str, Any] = _wait_status(dep, lambda s: s.get("taps") == 1)
        assert running["running"] is True and running["pid"] == daemon.proc.pid
        assert running["last_tap"]["mid"] == dep.pseudonym("M00000010")
    finally:
        code = daemon.terminate()
    assert code == 0
    stopped = dep.status()
    assert stopped["running"] is False and stopped["pid"] == daemon.proc.pid


def _wait_status(dep: Deployment, ok: Any, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status = dep.status()
        except (FileNotFoundError, ValueError):
            status = {}
        if status and ok(status):
            return status
        time.sleep(0.05)
    raise AssertionError(f"status never matched: {status}")


def test_no_root_key_is_a_start_up_error_naming_the_key_and_file(dep: Deployment) -> None:
    config = dep.write_config(root_key=False)
    done = run_cli("--config", str(config), "run")
    assert done.returncode == 2, done.stderr
    assert "verify.root_public_key" in done.stderr
    assert str(config) in done.stderr
    assert not dep.database.exists()  # refused before touching the queue


@pytest.mark.parametrize(("extra", "key", "allowed"), [
    ("[queue]\nbudget_mb = 0", "queue.budget_mb", "greater than or equal to 1"),
    ("[terminal]\nmode = 'parking'", "terminal.mode", "checkin"),
])
def test_an_invalid_config_is_a_start_up_error(dep: Deployment, extra: str, key: str,
                                               allowed: str) -> None:
    config = dep.config
    text = config.read_text()
    if extra.startswith("[terminal]"):  # the section exists: add the key inside it
        text = text.replace("[terminal]\n", "[terminal]\n" + extra.split("\n", 1)[1] + "\n")
    else:
        text += extra + "\n"
    config.write_text(text)
    done = run_cli("--config", str(config), "run")
    assert done.returncode == 2, done.stderr
    assert key in done.stderr and str(config) in done.stderr and allowed in done.stderr
