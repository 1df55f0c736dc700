"""What a citizen is shown after a tap: one `Verdict` per outcome, its meaning only.

The same verdict drives the sound's meaning, the status light and the kiosk screen, so
the three never disagree (EN 301 549 §5.1.3: the information of a sound also reaches
another sense). A verdict says what happened (`kind`: the reason of a refusal, or the
kind of acceptance), not how to say it: the kiosk process puts it into words in its own
language (words.py), so the daemon — whose journal stays English — never chooses the
words a citizen reads. Each verdict has a pictogram and a colour too, never colour alone.
Nothing about the person is in it beyond what the mode needs: no name, no member id;
a coupon's name and the uses left are the mode's own answer to the citizen. The coupon
travels as the display name the city gave it (`[[modes.coupon.kinds]] name`), never as
its code: an id has no place on a citizen's screen.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from reader.card.reasons import Reason
from reader.config.mode_settings import COUPON_NAME_MAX
from reader.wire.event import Event


class Look(StrEnum):
    """How a verdict is shown: the light's LED and the screen's colour and pictogram."""

    ACCEPTED = "accepted"  # green, ○
    RETRY = "retry"  # amber, ↻: nothing is wrong with the card, tap again
    REFUSED = "refused"  # red, ×: this card will not do, see the staff
    TECHNICIAN = "technician"  # red, !: the terminal itself needs a technician


PICTOGRAM = {Look.ACCEPTED: "○", Look.RETRY: "↻", Look.REFUSED: "×", Look.TECHNICIAN: "!"}

# The kinds of an accepted tap, and the tap that could not be stored; a refused tap's
# kind is its reason's value (card-ap-v1 §4).
ACCEPTED, ARRIVAL, DEPARTURE, COUPON, UNRECORDED = (
    "accepted", "arrival", "departure", "coupon", "unrecorded")
KINDS = frozenset({ACCEPTED, ARRIVAL, DEPARTURE, COUPON, UNRECORDED} | {r.value for r in Reason})

# How each reason is shown: "tap again" when nothing is wrong with the card.
LOOK_OF: dict[Reason, Look] = {reason: Look.REFUSED for reason in Reason} | {
    Reason.CARD_REMOVED: Look.RETRY, Reason.CARD_ERROR: Look.RETRY,
    Reason.DUPLICATE: Look.ACCEPTED, Reason.VOIDED: Look.TECHNICIAN}


@dataclass(frozen=True)
class Verdict:
    look: Look
    kind: str  # accepted / arrival / departure / coupon / unrecorded, or a Reason's value
    at_ms: int  # when the verdict was committed (Unix ms): the screen's clock for "in time"
    seq: int | None = None  # the event's seq, so a screen knows a new tap from a repeat
    coupon_name: str | None = None  # the coupon's display name (accepted, or no uses left)
    remaining: int | None = None  # uses left after this one
    direction: str | None = None  # the nursery's arrival / departure

    @property
    def pictogram(self) -> str:
        return PICTOGRAM[self.look]

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "look": str(self.look)}

    @classmethod
    def from_json(cls, data: object) -> Verdict | None:
        """The verdict of a datagram, or None when it is not one (the kiosk ignores it)."""
        if not isinstance(data, dict):
            return None
        try:
            look, kind, at_ms = Look(data["look"]), data["kind"], data["at_ms"]
        except (KeyError, ValueError, TypeError):
            return None
        seq, coupon_name = data.get("seq"), data.get("coupon_name")
        remaining, direction = data.get("remaining"), data.get("direction")
        if not (kind in KINDS and _is_int(at_ms) and (seq is None or _is_int(seq))
                and (coupon_name is None or (isinstance(coupon_name, str)
                                             and 0 < len(coupon_name) <= COUPON_NAME_MAX))
                and (remaining is None or _is_int(remaining))
                and direction in (None, ARRIVAL, DEPARTURE)):
            return None
        return cls(look, kind, at_ms, seq, coupon_name, remaining, direction)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def verdict_of(event: Event, at_ms: int, coupon_names: Mapping[str, str] | None = None
               ) -> Verdict:
    """The citizen's verdict of a recorded tap; `coupon_names` maps a coupon's code to the
    name the city gave it (a coupon without one is shown as a coupon, never by its code)."""
    detail = event.detail
    code = detail.get("coupon")
    name = (coupon_names or {}).get(str(code)) if code else None
    if event.reason is not None:
        if event.reason is not Reason.NOT_ELIGIBLE or not code:
            return Verdict(LOOK_OF[event.reason], str(event.reason), at_ms, event.seq)
        # Eligible, but no uses left this period: say which coupon ran out.
        return Verdict(LOOK_OF[event.reason], str(event.reason), at_ms, event.seq,
                       coupon_name=name, remaining=0)
    direction = detail.get("direction")
    if direction in (ARRIVAL, DEPARTURE):
        return Verdict(Look.ACCEPTED, direction, at_ms, event.seq, direction=direction)
    if "coupon" in detail:
        return Verdict(Look.ACCEPTED, COUPON, at_ms, event.seq, coupon_name=name,
                       remaining=int(detail.get("remaining", 0)))
    return Verdict(Look.ACCEPTED, ACCEPTED, at_ms, event.seq)


def unrecorded(at_ms: int) -> Verdict:
    """A tap that could not be stored (storage full, an internal error): staff must act."""
    return Verdict(Look.TECHNICIAN, UNRECORDED, at_ms)
