"""The coupon rule language: what the city can write, and that nothing else gets in."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reader.modes.rules import MAX_DEPTH, RuleError, parse_rule

SENIOR_1950 = {"senior": True, "birth_year": 1950}
YOUNG = {"senior": False, "birth_year": 1990, "grade": "年中"}


@pytest.mark.parametrize(("rule", "attr", "holds"), [
    ("senior", SENIOR_1950, True),
    ("senior", YOUNG, False),
    ("senior", {}, False),  # a card without the attribute
    ("not senior", {}, True),
    ("senior or license_returned", {"license_returned": True}, True),
    ("senior and license_returned", SENIOR_1950, False),
    ("birth_year <= 1956", SENIOR_1950, True),
    ("birth_year <= 1956", YOUNG, False),
    ("birth_year <= 1956", {}, False),
    ("birth_year > 1956 and birth_year < 2000", YOUNG, True),
    ("birth_year == 1950", SENIOR_1950, True),
    ("birth_year != 1950", SENIOR_1950, False),
    ('grade == "年中"', YOUNG, True),
    ("grade != '年長'", YOUNG, True),
    ("senior == true", SENIOR_1950, True),
    ("senior == false", YOUNG, True),
    ("true", {}, True),
    ("false", SENIOR_1950, False),
    # and binds tighter than or, parentheses regroup.
    ("senior or disability and license_returned", SENIOR_1950, True),
    ("(senior or disability) and license_returned", SENIOR_1950, False),
    ("not not senior", SENIOR_1950, True),
    ("  senior\n or\tdisability ", {"disability": True}, True),
    # A card's bool is not a number, whatever Python thinks.
    ("birth_year <= 1956", {"birth_year": True}, False),
])
def test_rules_hold_as_written(rule, attr, holds):
    assert parse_rule(rule).holds(attr) is holds


@pytest.mark.parametrize(("rule", "words"), [
    ("", "a rule is needed"),
    ("seniro", "unknown attribute 'seniro' at position 1"),
    ("senior or birth_yaer < 3", "unknown attribute 'birth_yaer' at position 11"),
    ("birth_year", "birth_year is a number: compare it"),
    ("grade", "grade is text: compare it"),
    ("senior < true", "only == and != apply"),
    ("grade > 'a'", "only == and != apply"),
    ("birth_year <= '1956'", "birth_year is a number"),
    ("senior == 1", "senior is true/false"),
    ("senior and", "rule ends where an attribute was expected"),
    ("senior senior", "unexpected 'senior' at position 8"),
    ("(senior", "never closed"),
    ("senior)", "unexpected ')'"),
    ("birth_year <=", "rule ends where a value"),
    ("birth_year <= senior", "expected a value at position 15"),
    ("senior; import os", "unexpected character ';'"),
    ("__import__('os').system('x')", "unexpected character '.' at position 17"),
    ("__import__ or senior", "unknown attribute '__import__'"),
    ("senior.__class__", "unexpected character '.'"),
    ("not " * (MAX_DEPTH + 1) + "senior", "nested deeper"),
    ("(" * (MAX_DEPTH + 1) + "senior" + ")" * (MAX_DEPTH + 1), "nested deeper"),
    ("senior or " * 60 + "senior", "longer than"),
])
def test_malformed_rules_say_what_and_where(rule, words):
    with pytest.raises(RuleError) as err:
        parse_rule(rule)
    assert words in str(err.value)


@given(st.text(max_size=80))
def test_any_text_is_a_rule_or_a_rule_error(text):
    try:
        rule = parse_rule(text)
    except RuleError:
        return
    assert isinstance(rule.holds(SENIOR_1950), bool)
