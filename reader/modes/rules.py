"""Coupon eligibility rules: a tiny, closed language over a card's `attr` (card-ap-v1 §3).

A rule is text in reader.toml or a config bundle, so it is parsed here, never `eval`ed:
the only names are the record's known attributes, the only values are integers, quoted
text and true/false, and the only operators are these:

    rule       := or_expr
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | atom
    atom       := "(" or_expr ")" | "true" | "false" | NAME | NAME CMP VALUE
    CMP        := "==" | "!=" | "<" | "<=" | ">" | ">="      (only == / != for bool, text)
    VALUE      := integer | "text" | 'text' | true | false

A bare NAME must be a bool attribute (`senior`); numbers and text must be compared
(`birth_year <= 1956`, `grade == "年中"`). A card without the attribute makes a bare
name and every comparison false, so `not senior` holds for a card that says nothing.
Errors are `RuleError` (a ValueError, so pydantic shows it under the setting's key).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from reader.card.record import KNOWN_ATTRS
from reader.system.i18n import N_, _

MAX_RULE_LEN = 500
MAX_DEPTH = 16  # nesting of not / parentheses: a rule is a sentence, not a program

_TOKEN = re.compile(r"""(?:
    (?P<int>-?[0-9]+)
  | (?P<text>"[^"]*"|'[^']*')
  | (?P<cmp><=|>=|==|!=|<|>)
  | (?P<paren>[()])
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
)""", re.VERBOSE)
_KEYWORDS = {"and", "or", "not", "true", "false"}
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
    ">": operator.gt, ">=": operator.ge,
}

Attr = Mapping[str, bool | int | str]


class RuleError(ValueError):
    """The rule text is not a rule of this language."""


@dataclass(frozen=True)
class Const:
    value: bool

    def holds(self, attr: Attr) -> bool:
        return self.value


@dataclass(frozen=True)
class Flag:
    name: str

    def holds(self, attr: Attr) -> bool:
        return attr.get(self.name) is True


@dataclass(frozen=True)
class Compare:
    name: str
    op: str
    value: bool | int | str

    def holds(self, attr: Attr) -> bool:
        have = attr.get(self.name)
        # bool is an int in Python: a card saying birth_year=true must not compare as 1.
        if have is None or type(have) is not type(self.value):
            return False
        return _COMPARE[self.op](have, self.value)


@dataclass(frozen=True)
class Not:
    inner: Rule

    def holds(self, attr: Attr) -> bool:
        return not self.inner.holds(attr)


@dataclass(frozen=True)
class AllOf:
    parts: tuple[Rule, ...]

    def holds(self, attr: Attr) -> bool:
        return all(p.holds(attr) for p in self.parts)


@dataclass(frozen=True)
class AnyOf:
    parts: tuple[Rule, ...]

    def holds(self, attr: Attr) -> bool:
        return any(p.holds(attr) for p in self.parts)


Rule = Const | Flag | Compare | Not | AllOf | AnyOf


def parse_rule(text: str) -> Rule:
    """Parse `text`; RuleError says what is wrong and where."""
    if not isinstance(text, str) or not text.strip():
        raise RuleError(_('a rule is needed, e.g. "senior or license_returned" (or "true")'))
    if len(text) > MAX_RULE_LEN:
        raise RuleError(_("rule longer than {limit} characters").format(limit=MAX_RULE_LEN))
    return _Parser(_tokens(text), text).parse()


def _tokens(text: str) -> list[tuple[str, str, int]]:
    """(kind, text, 1-based position) per token."""
    out: list[tuple[str, str, int]] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos == len(text):
            return out
        m = _TOKEN.match(text, pos)
        if m is None:
            raise RuleError(_("unexpected character {char!r} at position {at}").format(
                char=text[pos], at=pos + 1))
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind), m.start(kind) + 1))
        pos = m.end()


class _Parser:
    def __init__(self, tokens: list[tuple[str, str, int]], text: str) -> None:
        self._tokens, self._text, self._i, self._depth = tokens, text, 0, 0

    def parse(self) -> Rule:
        rule = self._or()
        if self._i < len(self._tokens):
            _kind, value, at = self._tokens[self._i]
            raise RuleError(_("unexpected {value!r} at position {at} (missing and/or?)").format(
                value=value, at=at))
        return rule

    def _peek(self) -> tuple[str, str, int] | None:
        return self._tokens[self._i] if self._i < len(self._tokens) else None

    def _take(self, what: str) -> tuple[str, str, int]:
        tok = self._peek()
        if tok is None:
            raise RuleError(_("rule ends where {what} was expected").format(what=what))
        self._i += 1
        return tok

    def _at_word(self, word: str) -> bool:
        tok = self._peek()
        return tok is not None and tok[0] == "word" and tok[1] == word

    def _or(self) -> Rule:
        parts = [self._and()]
        while self._at_word("or"):
            self._i += 1
            parts.append(self._and())
        return parts[0] if len(parts) == 1 else AnyOf(tuple(parts))

    def _and(self) -> Rule:
        parts = [self._not()]
        while self._at_word("and"):
            self._i += 1
            parts.append(self._not())
        return parts[0] if len(parts) == 1 else AllOf(tuple(parts))

    def _not(self) -> Rule:
        if not self._at_word("not"):
            return self._atom()
        self._i += 1
        return Not(self._nested(self._not))

    def _nested(self, parse: Callable[[], Rule]) -> Rule:
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise RuleError(_("rule nested deeper than {limit} levels").format(limit=MAX_DEPTH))
        try:
            return parse()
        finally:
            self._depth -= 1

    def _atom(self) -> Rule:
        kind, value, at = self._take(_("an attribute"))
        if kind == "paren" and value == "(":
            inner = self._nested(self._or)
            close = self._peek()
            if close is None or close[1] != ")":
                raise RuleError(_("'(' at position {at} is never closed").format(at=at))
            self._i += 1
            return inner
        if kind == "word" and value in ("true", "false"):
            return Const(value == "true")
        if kind != "word" or value in _KEYWORDS:
            raise RuleError(_("expected an attribute at position {at}, found {value!r}").format(
                at=at, value=value))
        return self._attribute(value, at)

    def _attribute(self, name: str, at: int) -> Rule:
        if name not in KNOWN_ATTRS:
            raise RuleError(_("unknown attribute {name!r} at position {at} (known: {known})")
                            .format(name=name, at=at, known=", ".join(KNOWN_ATTRS)))
        kind = KNOWN_ATTRS[name]
        tok = self._peek()
        if tok is None or tok[0] != "cmp":
            if kind is not bool:
                raise RuleError(_("{name} is {kind}: compare it, e.g. {example}").format(
                    name=name, kind=_kind_name(kind), example=_example(name, kind)))
            return Flag(name)
        self._i += 1
        op = tok[1]
        value = self._value(self._take(_("a value after {op!r}").format(op=op)))
        if type(value) is not kind:
            raise RuleError(_("{name} is {kind}, compared with {value!r} at position {at}")
                            .format(name=name, kind=_kind_name(kind), value=value, at=tok[2]))
        if kind is not int and op not in ("==", "!="):
            raise RuleError(_("{name} is {kind}: only == and != apply").format(
                name=name, kind=_kind_name(kind)))
        return Compare(name, op, value)

    @staticmethod
    def _value(tok: tuple[str, str, int]) -> bool | int | str:
        kind, value, at = tok
        if kind == "int":
            return int(value)
        if kind == "text":
            return value[1:-1]
        if kind == "word" and value in ("true", "false"):
            return value == "true"
        raise RuleError(_("expected a value at position {at}, found {value!r}").format(
            at=at, value=value))


def _kind_name(kind: type) -> str:
    return _({bool: N_("true/false"), int: N_("a number"), str: N_("text")}[kind])


def _example(name: str, kind: type) -> str:
    return f"{name} <= 1956" if kind is int else f'{name} == "..."'
