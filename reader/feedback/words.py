"""A verdict in words, in the language of the process that shows it (the kiosk's).

The daemon sends only a verdict's meaning (verdict.py); the kiosk process renders it
here with its own catalog, so the screen speaks the terminal's language (Japanese under
firmware_config/locale) while the daemon's journal stays English. The Japanese texts
were chosen for citizens of every age; the English ones are their plain originals.
"""

from __future__ import annotations

from typing import Any

from reader.card.reasons import Reason
from reader.feedback.verdict import ARRIVAL, COUPON, DEPARTURE, UNRECORDED, Verdict
from reader.system.i18n import N_, _, language, ngettext

TAP_AGAIN = N_("Please tap again")
SEE_COUNTER = N_("This card cannot be used (please ask at the counter)")
NOT_CHECKED = N_("The card's details could not be checked")
NOT_NOW = (N_("Cannot accept taps right now"),
           N_("Please tell the staff (the terminal needs a check)"))

# One title and one note per reason (card-ap-v1 §4): what it means, or what to do next.
REFUSAL: dict[Reason, tuple[str, str]] = {
    Reason.CARD_REMOVED: (TAP_AGAIN,
                          N_("Keep the card on the reader until you hear the sound")),
    Reason.CARD_ERROR: (TAP_AGAIN, N_("The card could not be read")),
    Reason.DUPLICATE: (N_("Already received"), N_("Your tap a moment ago was received")),
    Reason.NOT_ELIGIBLE: (N_("This coupon cannot be used"),
                          N_("Please ask at the counter for details")),
    Reason.OUTSIDE_SCHEDULE: (N_("Outside opening hours"),
                              N_("Please check the opening hours")),
    Reason.NOT_REGISTERED: (SEE_COUNTER, N_("This card has no Sukumo ID registered")),
    Reason.EXPIRED: (SEE_COUNTER, N_("This card has expired")),
    Reason.NOT_YET_VALID: (SEE_COUNTER, N_("This card cannot be used yet")),
    Reason.REVOKED: (SEE_COUNTER, N_("This card has been suspended")),
    Reason.UNKNOWN_ISSUER: (SEE_COUNTER, N_("This terminal cannot check this card")),
    Reason.BAD_SIGNATURE: (SEE_COUNTER, NOT_CHECKED),
    Reason.BAD_RECORD: (SEE_COUNTER, NOT_CHECKED),
    Reason.CLONE_SUSPECTED: (SEE_COUNTER, N_("The card could not be checked")),
    Reason.VOIDED: NOT_NOW,  # what the citizen was shown when its recording failed
}

# The kiosk's own texts: the page while no verdict is shown, and its labels.
IDLE_TITLE = N_("Please tap your card")
SERVICE = N_("Sukumo ID")  # the city's card service, 宿毛ID
STAFF_LABEL = N_("For staff")
# Out of service: nothing records a tap, so nothing on the screen may invite one.
CLOSED_TITLE = N_("This terminal cannot be used")
CLOSED_NOTE = N_("Please use another terminal or tell the staff")
# The page's own staff line when it has lost the kiosk (the kiosk cannot say it then).
KIOSK_LOST = N_("The screen has lost its server; it restarts by itself. If this stays, "
                "call a technician.")


def words(verdict: Verdict) -> tuple[str, str]:
    """(the large line, the smaller line) of a verdict, in this process's language."""
    kind = verdict.kind
    if kind == UNRECORDED:
        return _(NOT_NOW[0]), _(NOT_NOW[1])
    if kind == ARRIVAL:
        return _("Arrival"), _("Good morning")
    if kind == DEPARTURE:
        return _("Departure"), _("Goodbye")
    if kind == COUPON:
        n = verdict.remaining or 0
        return _("Tap received"), ngettext("{coupon}: {remaining} use left",
                                           "{coupon}: {remaining} uses left", n).format(
            coupon=coupon_name(verdict), remaining=n)
    if kind in REFUSAL:
        title, note = REFUSAL[Reason(kind)]
        if kind == Reason.NOT_ELIGIBLE and verdict.remaining == 0:
            return _(title), _("{coupon}: no uses left").format(coupon=coupon_name(verdict))
        return _(title), _(note)
    return _("Tap received"), _("Thank you")


def coupon_name(verdict: Verdict) -> str:
    """The name the city gave the coupon; a coupon it did not name is just "coupon"."""
    return verdict.coupon_name or _("coupon")


def shown(verdict: Verdict) -> dict[str, Any]:
    """What the page gets: the verdict's meaning, its words and its pictogram."""
    title, note = words(verdict)
    return {**verdict.to_json(), "title": title, "note": note,
            "pictogram": verdict.pictogram}


def page_texts() -> dict[str, str]:
    """The page's own texts and its `<html lang>`, in this process's language."""
    return {"lang": language(), "idle_title": _(IDLE_TITLE), "service": _(SERVICE),
            "staff_label": _(STAFF_LABEL), "closed_title": _(CLOSED_TITLE),
            "closed_note": _(CLOSED_NOTE), "kiosk_lost": _(KIOSK_LOST)}
