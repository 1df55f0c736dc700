"""The codes a person reads, in words: tap results and reasons, queue, reader, audio and
link states, and the values of an event's detail.

The codes themselves are what programs read (`--json`, status.json, the queue export)
and what crosses the wire (mqtt-v1 §2 `result`, `reason`, `detail`); they never change
with the locale. Where a person reads one (`status`, `tap`, `queue list`, the demo), it
is said through this one table, in the reader's language. The citizens' screen has its
own wording (reader/feedback/words.py): sentences for the person at the reader, where
these are a technician's short labels.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reader.card.reasons import Reason
from reader.system.i18n import N_, _

# kind -> code -> its word (marked here, translated where it is said).
WORDS: dict[str, dict[str, str]] = {
    "result": {"accepted": N_("accepted"), "rejected": N_("rejected")},
    # card-ap-v1 §4: why a tap was refused (every Reason has a word: tests/test_codes.py).
    "reason": {
        Reason.NOT_REGISTERED: N_("no Sukumo ID on the card"),
        Reason.BAD_RECORD: N_("unreadable record"),
        Reason.UNKNOWN_ISSUER: N_("unknown issuer"),
        Reason.BAD_SIGNATURE: N_("bad signature"),
        Reason.NOT_YET_VALID: N_("not valid yet"),
        Reason.EXPIRED: N_("expired"),
        Reason.REVOKED: N_("revoked (on the denylist)"),
        Reason.CLONE_SUSPECTED: N_("suspected clone"),
        Reason.CARD_REMOVED: N_("card taken away mid-read"),
        Reason.CARD_ERROR: N_("card answered out of protocol"),
        Reason.DUPLICATE: N_("repeated tap"),
        Reason.NOT_ELIGIBLE: N_("not eligible"),
        Reason.OUTSIDE_SCHEDULE: N_("outside opening hours"),
    },
    # The queue's states (reader/queue STATES).
    "queue": {"pending": N_("waiting to send"), "in_flight": N_("sent, awaiting ack"),
              "rejected": N_("refused by the city")},
    # What the daemon reports in status.json, and the tap loop's reader states.
    "reader": {"ok": N_("working"), "missing": N_("not found (check its USB cable)"),
               "closed": N_("closed")},
    "audio": {"ok": N_("working"), "missing": N_("no sound device"),
              "disabled": N_("switched off in the settings")},
    "sync": {"online": N_("connected to the city"), "connecting": N_("connecting"),
             "offline": N_("not connected (taps stay queued)")},
    # The link's problems status.json lists (reader/wire/status.py NO_RECEIVER).
    "problem": {"no city receiver subscribed": N_(
        "no city receiver is subscribed at the broker: it drops our batches, taps stay "
        "queued until one subscribes")},
    # The nursery's `detail.direction` (mqtt-v1 §2).
    "direction": {"arrival": N_("arrival"), "departure": N_("departure")},
}

# An event's detail keys (mqtt-v1 §2), as a person reads them before the value.
DETAIL_KEYS = {"direction": N_("direction"), "coupon": N_("coupon"),
               "remaining": N_("uses left"), "event_code": N_("event")}


def said(kind: str, code: object) -> str:
    """The word for `code` of `kind`, in the reader's language; a code the table does not
    know yet (from a newer terminal or city) is shown as it is."""
    word = WORDS[kind].get(str(code))
    return _(word) if word else str(code)


def detail_said(detail: Mapping[str, Any]) -> str:
    """An event's detail as `key: value, …` in words (values with a word, say the
    direction, are said; ids such as a coupon kind stay as they are)."""
    parts = []
    for key, value in detail.items():
        shown = said(key, value) if key in WORDS else str(value)
        parts.append(_("{key}: {value}").format(key=_(DETAIL_KEYS.get(key, key)), value=shown)
                     if key in DETAIL_KEYS else f"{key}: {shown}")
    return ", ".join(parts)
