"""Coupons: eligibility over attr, limits per month/year, double taps, restarts, periods."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from modes_helpers import ModeTerminal, card, jst

from reader.config import load_settings
from reader.errors import ConfigError
from reader.terminal.policy import build_mode

KINDS = [
    {"code": "taxi", "rule": "senior or license_returned", "limit": 2, "period": "month"},
    {"code": "onsen", "rule": "birth_year <= 1956 and not disability", "limit": 1,
     "period": "year"},
]
NOT_ELIGIBLE = ("not_eligible", "rejected", {})


def coupon(code: str, remaining: int) -> tuple:
    return (None, "coupon", {"coupon": code, "remaining": remaining})


def used_up(code: str) -> tuple:
    return ("not_eligible", "rejected", {"coupon": code, "remaining": 0})


def terminal(tmp_path: Path, **coupon_settings: Any) -> ModeTerminal:
    return ModeTerminal(tmp_path, terminal={"mode": "coupon"},
                        modes={"coupon": {"kinds": KINDS, **coupon_settings}})


@pytest.fixture
def coupons(tmp_path: Path):
    term = terminal(tmp_path)
    yield term
    term.close()


def test_limit_per_month_with_the_remaining_count(coupons):
    senior = card("SK-SENIOR", senior=True, birth_year=1960)
    seq = [
        ("2026-11-10 10:00:00", coupon("taxi", 1)),
        ("2026-11-10 10:00:20", ("duplicate", "duplicate", {"coupon": "taxi", "remaining": 1})),
        ("2026-11-10 10:05:00", coupon("taxi", 0)),
        ("2026-11-20 10:00:00", used_up("taxi")),
        ("2026-11-30 23:59:00", used_up("taxi")),
        # A new month in Asia/Tokyo (still November in UTC): two uses again.
        ("2026-12-01 00:01:00", coupon("taxi", 1)),
    ]
    for when, expected in seq:
        assert coupons.tap(senior, jst(when)).verdict == expected, when
    assert [(r, reason, d.get("remaining")) for r, reason, d in coupons.recorded()] == [
        ("accepted", None, 1), ("rejected", "duplicate", 1), ("accepted", None, 0),
        ("rejected", "not_eligible", 0), ("rejected", "not_eligible", 0),
        ("accepted", None, 1)]


def test_not_eligible_when_no_rule_holds(coupons):
    young = card("SK-YOUNG", birth_year=1990)
    disabled = card("SK-D", birth_year=1950, disability=True)
    blank = card("SK-NOATTR")  # a card that says nothing is eligible for nothing
    for member in (young, disabled, blank):
        assert coupons.tap(member, jst("2026-11-10 10:00:00")).verdict == NOT_ELIGIBLE


def test_the_next_eligible_kind_is_offered_when_the_first_is_used_up(coupons):
    elder = card("SK-ELDER", license_returned=True, birth_year=1950)
    got = [coupons.tap(elder, jst(f"2026-11-10 1{h}:00:00")).verdict for h in range(4)]
    assert got == [coupon("taxi", 1), coupon("taxi", 0), coupon("onsen", 0), used_up("taxi")]


def test_limits_survive_a_restart(coupons):
    senior = card("SK-SENIOR", senior=True)
    assert coupons.tap(senior, jst("2026-11-10 10:00:00")).verdict == coupon("taxi", 1)
    coupons.restart()
    assert coupons.tap(senior, jst("2026-11-10 10:00:30")).decision.reason == "duplicate"
    assert coupons.tap(senior, jst("2026-11-11 10:00:00")).verdict == coupon("taxi", 0)
    coupons.restart()
    assert coupons.tap(senior, jst("2026-11-12 10:00:00")).verdict == used_up("taxi")


def test_a_yearly_limit_resets_on_new_year_in_tokyo(tmp_path):
    term = terminal(tmp_path, offer="onsen")
    elder = card("SK-ELDER", senior=True, birth_year=1950)
    try:
        assert term.tap(elder, jst("2026-01-05 10:00:00")).verdict == coupon("onsen", 0)
        assert term.tap(elder, jst("2026-12-31 23:58:00")).verdict == used_up("onsen")
        term.restart()
        assert term.tap(elder, jst("2027-01-01 00:00:00")).verdict == coupon("onsen", 0)
    finally:
        term.close()


def test_an_offer_restricts_the_terminal_to_one_kind(tmp_path):
    term = terminal(tmp_path, offer="onsen")
    try:
        # Eligible for taxi, but this terminal hands out hot-spring coupons only.
        assert term.tap(card("SK-S", senior=True, birth_year=1970),
                        jst("2026-11-10 10:00:00")).verdict == NOT_ELIGIBLE
        assert term.tap(card("SK-E", senior=True, birth_year=1950),
                        jst("2026-11-10 10:00:00")).verdict == coupon("onsen", 0)
    finally:
        term.close()


def _load(tmp_path: Path, body: str):
    path = tmp_path / "reader.toml"
    path.write_text('[terminal]\nmode = "coupon"\n' + body, encoding="utf-8")
    return load_settings(path)


def test_kinds_are_read_from_reader_toml(tmp_path):
    settings = _load(tmp_path, """
[modes.coupon]
offer = "taxi"
[[modes.coupon.kinds]]
code = "taxi"
rule = "senior or license_returned"
limit = 4
period = "month"
""")
    assert settings.modes.coupon.kinds[0].limit == 4
    assert build_mode(settings).name == "coupon"


@pytest.mark.parametrize(("body", "words"), [
    ('[[modes.coupon.kinds]]\ncode = "taxi"\nrule = "senior or seniro"\nlimit = 4\n',
     ["setting modes.coupon.kinds.0.rule", "unknown attribute 'seniro'"]),
    ('[[modes.coupon.kinds]]\ncode = "taxi"\nrule = "senior and (birth_year <= 1956"\n'
     'limit = 4\n', ["setting modes.coupon.kinds.0.rule", "never closed"]),
    ('[[modes.coupon.kinds]]\ncode = "taxi"\nrule = "__import__(\'os\')"\nlimit = 4\n',
     ["setting modes.coupon.kinds.0.rule", "unknown attribute '__import__'"]),
    ('[[modes.coupon.kinds]]\ncode = "taxi"\nrule = "senior"\nlimit = 0\n',
     ["setting modes.coupon.kinds.0.limit"]),
    ('[[modes.coupon.kinds]]\ncode = "taxi"\nrule = "senior"\nlimit = 1\nperiod = "week"\n',
     ["setting modes.coupon.kinds.0.period"]),
    ('[modes.coupon]\noffer = "bus"\n[[modes.coupon.kinds]]\ncode = "taxi"\nrule = "senior"\n'
     'limit = 1\n', ["setting modes.coupon", "offer 'bus' is not one of the kinds"]),
], ids=["unknown-attribute", "malformed", "code-injection", "zero-limit", "bad-period",
        "unknown-offer"])
def test_bad_coupon_settings_are_start_up_errors_naming_the_key(tmp_path, body, words):
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, body)
    for word in words:
        assert word in str(err.value)


def test_a_coupon_terminal_without_kinds_does_not_start(tmp_path):
    with pytest.raises(ConfigError, match=r"modes\.coupon\.kinds is empty"):
        build_mode(_load(tmp_path, ""))
