"""The mode's decision and the tap's write are one transaction (issue 22 item 1).

Two processes, each with its own connection to one real SQLite file, tap the same member
at the same moment, round after round (a barrier releases both together): whatever the
interleaving, each round has exactly one accepted check-in and one duplicate, and each
coupon is handed out no more often than its limit. Deciding before the write
transaction, as main did, let both processes read "no tap yet" and both accept.
"""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from modes_helpers import ModeTerminal, card, jst

from reader.queue.pseudonym import Pseudonyms

pytestmark = pytest.mark.timeout(180)

T0 = jst("2026-12-01 09:00:00")
ROUNDS = 40
WRITERS = 2


def _writer(state_dir: Path, overrides: dict[str, Any], barrier: Any, rounds: int,
            step_ms: int, out: Any) -> None:
    term = ModeTerminal(state_dir, **overrides)
    reasons = []
    try:
        for n in range(rounds):
            barrier.wait(30)
            reasons.append(term.tap(card("SK-ALICE", senior=True), T0 + n * step_ms)
                           .decision.reason)
    finally:
        term.close()
        out.put(reasons)


def race(state_dir: Path, overrides: dict[str, Any], rounds: int,
         step_ms: int) -> list[list[str | None]]:
    """Per writer, the reason of each of its taps (None: accepted)."""
    first = ModeTerminal(state_dir, **overrides)  # the file, its schema and its secret
    first.tap(card("SK-BOB"), T0 - 86_400_000)
    first.close()
    ctx = mp.get_context("fork")
    barrier, out = ctx.Barrier(WRITERS), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(state_dir, overrides, barrier, rounds,
                                               step_ms, out)) for _ in range(WRITERS)]
    for proc in procs:
        proc.start()
    results = [out.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(30)
        assert proc.exitcode == 0
    return results


def test_two_writers_never_accept_one_check_in_twice(tmp_path: Path) -> None:
    # A new 60 s window every round: one of the two simultaneous taps is the first.
    results = race(tmp_path, {"terminal": {"mode": "checkin"}}, ROUNDS, 61_000)
    per_round = [Counter(r is None for r in taps) for taps in zip(*results, strict=True)]
    assert [c[True] for c in per_round] == [1] * ROUNDS, per_round
    db = sqlite3.connect(tmp_path / "events.sqlite3")
    accepted = db.execute("SELECT COUNT(*) FROM events WHERE json_extract(body, '$.result')"
                          " = 'accepted'").fetchone()[0]
    db.close()
    assert accepted == ROUNDS + 1  # what the city will count (and the first tap, Bob's)


def test_two_writers_never_hand_out_a_coupon_over_the_limit(tmp_path: Path) -> None:
    overrides = {"terminal": {"mode": "coupon"}, "modes": {"coupon": {
        "debounce_s": 1, "kinds": [{"code": "taxi", "rule": "senior", "limit": 5}]}}}
    # 2 s apart: past the double-tap window, all in one month.
    results = race(tmp_path, overrides, 10, 2_000)
    accepted = sum(r is None for taps in results for r in taps)
    assert accepted == 5, results


def _make_secret(path: Path, barrier: Any, out: Any) -> None:
    barrier.wait(30)
    try:
        out.put(Pseudonyms.load_or_create(path).of("SK-ALICE"))
    except Exception as exc:  # reported to the test, by its repr
        out.put(repr(exc))


def test_two_processes_making_the_secret_at_once_keep_one(tmp_path: Path) -> None:
    """The pseudonym secret is made on first use: two writers starting together must
    end with one secret, the one on disk, or one member would have two pseudonyms (two
    sets of coupon counts)."""
    ctx = mp.get_context("fork")
    for n in range(20):
        path = tmp_path / f"r{n}" / "pseudonym.key"
        path.parent.mkdir()
        barrier, out = ctx.Barrier(WRITERS), ctx.Queue()
        procs = [ctx.Process(target=_make_secret, args=(path, barrier, out))
                 for _ in range(WRITERS)]
        for proc in procs:
            proc.start()
        seen = {out.get(timeout=30) for _ in procs}
        for proc in procs:
            proc.join(10)
        assert seen == {Pseudonyms(path.read_bytes()).of("SK-ALICE")}, (n, seen)
        assert [p.name for p in path.parent.iterdir()] == ["pseudonym.key"]
