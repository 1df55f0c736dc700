"""What a citizen is shown after a tap: one `Verdict` per outcome, in plain Japanese.

The same verdict drives the sound's meaning, the status light and the kiosk screen, so
the three never disagree (EN 301 549 §5.1.3: the information of a sound also reaches
another sense). Each verdict has words, a pictogram and a colour, never colour alone.
Nothing about the person is in it beyond what the mode needs: no name, no member id;
a coupon's name and the uses left are the mode's own answer to the citizen.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from reader.card.reasons import Reason
from reader.wire.event import Event


class Look(StrEnum):
    """How a verdict is shown: the light's LED and the screen's colour and pictogram."""

    ACCEPTED = "accepted"  # green, ○
    RETRY = "retry"  # amber, ↻: nothing is wrong with the card, tap again
    REFUSED = "refused"  # red, ×: this card will not do, see the staff
    TECHNICIAN = "technician"  # red, !: the terminal itself needs a technician


PICTOGRAM = {Look.ACCEPTED: "○", Look.RETRY: "↻", Look.REFUSED: "×", Look.TECHNICIAN: "!"}

# Words a citizen understands, one per reason (card-ap-v1 §4), and what to do next.
REFUSAL: dict[Reason, tuple[Look, str, str]] = {
    Reason.CARD_REMOVED: (Look.RETRY, "もう一度かざしてください",
                          "カードを読み取り機に置いたまま、音が鳴るまでお待ちください"),
    Reason.CARD_ERROR: (Look.RETRY, "もう一度かざしてください",
                        "うまく読み取れませんでした"),
    Reason.DUPLICATE: (Look.ACCEPTED, "受付済みです", "先ほどのタッチで受け付けています"),
    Reason.NOT_ELIGIBLE: (Look.REFUSED, "このクーポンはご利用いただけません",
                          "くわしくは窓口でおたずねください"),
    Reason.OUTSIDE_SCHEDULE: (Look.REFUSED, "受付時間外です",
                              "受付時間をご確認ください"),
    Reason.NOT_REGISTERED: (Look.REFUSED, "このカードは使えません（窓口へ）",
                            "宿毛IDが登録されていないカードです"),
    Reason.EXPIRED: (Look.REFUSED, "このカードは使えません（窓口へ）",
                     "カードの有効期限が切れています"),
    Reason.NOT_YET_VALID: (Look.REFUSED, "このカードは使えません（窓口へ）",
                           "カードはまだ使えません"),
    Reason.REVOKED: (Look.REFUSED, "このカードは使えません（窓口へ）",
                     "このカードは利用が停止されています"),
    Reason.UNKNOWN_ISSUER: (Look.REFUSED, "このカードは使えません（窓口へ）",
                            "この端末では確認できないカードです"),
    Reason.BAD_SIGNATURE: (Look.REFUSED, "このカードは使えません（窓口へ）",
                           "カードの情報を確認できませんでした"),
    Reason.BAD_RECORD: (Look.REFUSED, "このカードは使えません（窓口へ）",
                        "カードの情報を確認できませんでした"),
    Reason.CLONE_SUSPECTED: (Look.REFUSED, "このカードは使えません（窓口へ）",
                             "カードを確認できませんでした"),
}


@dataclass(frozen=True)
class Verdict:
    look: Look
    title: str  # the large line
    note: str  # the smaller line: what it means, or what to do
    at_ms: int  # when the verdict was committed (Unix ms): the screen's clock for "in time"
    seq: int | None = None  # the event's seq, so a screen knows a new tap from a repeat

    @property
    def pictogram(self) -> str:
        return PICTOGRAM[self.look]

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "look": str(self.look), "pictogram": self.pictogram}


def verdict_of(event: Event, at_ms: int) -> Verdict:
    """The citizen's verdict of a recorded tap."""
    if event.reason is not None:
        look, title, note = REFUSAL[event.reason]
        if event.reason is Reason.NOT_ELIGIBLE and event.detail.get("coupon"):
            note = f"{event.detail['coupon']}: ご利用回数の上限に達しています"
        return Verdict(look, title, note, at_ms, event.seq)
    detail = event.detail
    if detail.get("direction") == "arrival":
        return Verdict(Look.ACCEPTED, "登園", "おはようございます", at_ms, event.seq)
    if detail.get("direction") == "departure":
        return Verdict(Look.ACCEPTED, "降園", "さようなら", at_ms, event.seq)
    if "coupon" in detail:
        return Verdict(Look.ACCEPTED, "受付しました",
                       f"{detail['coupon']}　のこり {detail.get('remaining', 0)} 回",
                       at_ms, event.seq)
    return Verdict(Look.ACCEPTED, "受付しました", "ありがとうございます", at_ms, event.seq)


def unrecorded(at_ms: int) -> Verdict:
    """A tap that could not be stored (storage full, an internal error): staff must act."""
    return Verdict(Look.TECHNICIAN, "ただいま受付できません",
                   "係の者にお知らせください（端末の点検が必要です）", at_ms)
