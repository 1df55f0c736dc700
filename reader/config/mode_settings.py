"""[modes.<mode>] of reader.toml: what a tap means in each mode (docs/modes.md)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, field_validator, model_validator

from reader.config.section import Section
from reader.modes.rules import parse_rule
from reader.system.i18n import _

_CODE = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class CheckinSettings(Section):
    # Accepted taps of one member closer than this are `duplicate` (no double points).
    debounce_s: int = Field(60, ge=0, le=86400)


class EventWindow(Section):
    code: str = Field(pattern=_CODE)
    # With a UTC offset (2026-12-01T10:00:00+09:00): a schedule means one instant everywhere.
    start: AwareDatetime
    end: AwareDatetime  # exclusive
    facility: str | None = Field(None, min_length=1, max_length=64)  # None: any facility

    @model_validator(mode="after")
    def _ordered(self) -> EventWindow:
        if self.end <= self.start:
            raise ValueError(_("event {code}: end {end} is not after start {start}").format(
                code=self.code, end=self.end, start=self.start))
        return self


class EventSettings(Section):
    schedule: tuple[EventWindow, ...] = ()

    @field_validator("schedule")
    @classmethod
    def _no_overlap(cls, schedule: tuple[EventWindow, ...]) -> tuple[EventWindow, ...]:
        # A tap must belong to exactly one event, or its event_code would be a guess.
        for i, a in enumerate(schedule):
            for j, b in enumerate(schedule[i + 1:], i + 1):
                same_place = a.facility is None or b.facility is None or a.facility == b.facility
                if same_place and a.start < b.end and b.start < a.end:
                    raise ValueError(_(
                        "events {i} ({a}) and {j} ({b}) overlap at the same facility: "
                        "{a_times} and {b_times}").format(
                            i=i, a=a.code, j=j, b=b.code,
                            a_times=f"{a.start.isoformat()}..{a.end.isoformat()}",
                            b_times=f"{b.start.isoformat()}..{b.end.isoformat()}"))
        return schedule


class NurserySettings(Section):
    # After an accepted tap, taps of the same child closer than this are `duplicate`.
    min_gap_s: int = Field(300, ge=0, le=86400)
    # Children of neighbouring towns this nursery has, as "<muni>:<member id>" (the city's
    # config bundle, `nursery_children`): a child of another town passes only if listed.
    neighbour_children: list[Annotated[str, Field(pattern=r"^[0-9]{6}:[^\x00-\x1f]{1,64}$")]
                             ] = Field(default_factory=list, max_length=10_000)


COUPON_NAME_MAX = 40  # characters: one line on the kiosk screen at 800×480


class CouponKind(Section):
    code: str = Field(pattern=_CODE)
    # What citizens read on the kiosk screen (e.g. "タクシー券"); the code never reaches a
    # screen. Without a name the screen says "coupon".
    name: str | None = Field(None, min_length=1, max_length=COUPON_NAME_MAX)
    rule: str  # eligibility over the card's attr; syntax in reader/modes/rules.py
    limit: int = Field(ge=1, le=100000)  # uses per member per period
    period: Literal["month", "year"] = "month"  # calendar period in terminal.timezone
    # The town that pays for this kind: only its residents can be granted it. None: the
    # terminal's own town (a rule never grants a neighbour's resident unless it says so).
    muni: str | None = Field(None, pattern=r"^[0-9]{6}$")

    @field_validator("rule")
    @classmethod
    def _parses(cls, rule: str) -> str:
        parse_rule(rule)
        return rule


class CouponSettings(Section):
    kinds: tuple[CouponKind, ...] = ()
    # The kind this terminal hands out; None: the first kind (in order) the member is
    # eligible for and has uses left of.
    offer: str | None = None
    # Accepted coupon taps of one member closer than this are `duplicate`: a double tap
    # must not spend two tickets.
    debounce_s: int = Field(60, ge=0, le=86400)

    @property
    def names(self) -> dict[str, str]:
        """code -> the display name citizens read, for the kinds that have one."""
        return {k.code: k.name for k in self.kinds if k.name}

    @model_validator(mode="after")
    def _known_codes(self) -> CouponSettings:
        codes = [k.code for k in self.kinds]
        if len(set(codes)) != len(codes):
            raise ValueError(_("coupon kind codes repeat: {codes}").format(codes=codes))
        if self.offer is not None and self.offer not in codes:
            raise ValueError(_("offer {offer} is not one of the kinds {codes}").format(
                offer=repr(self.offer), codes=codes))
        return self


class WatchSettings(Section):
    pass


class ModesSettings(Section):
    checkin: CheckinSettings = CheckinSettings()
    event: EventSettings = EventSettings()
    nursery: NurserySettings = NurserySettings()
    coupon: CouponSettings = CouponSettings()
    watch: WatchSettings = WatchSettings()
