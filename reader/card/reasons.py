"""Why a tap was rejected: the reasons of card-ap-v1 §4, one enum for every layer.

The card core gives the reasons of checks 1-8 and of the link; a mode gives one of
`MODE_REASONS` (check 9). The event carries the value as text (mqtt-v1 §2 `reason`);
a `StrEnum` compares and serialises as that text.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    NOT_REGISTERED = "not_registered"  # 1: SELECT was not 90 00
    BAD_RECORD = "bad_record"  # 2, 5: unreadable record, or not for the selected AP
    UNKNOWN_ISSUER = "unknown_issuer"  # 3
    BAD_SIGNATURE = "bad_signature"  # 4
    NOT_YET_VALID = "not_yet_valid"  # 6
    EXPIRED = "expired"  # 6
    REVOKED = "revoked"  # 7
    CLONE_SUSPECTED = "clone_suspected"  # 8
    CARD_REMOVED = "card_removed"  # the card left mid-sequence
    CARD_ERROR = "card_error"  # a status word or frame outside the protocol
    DUPLICATE = "duplicate"  # 9: the modes'
    NOT_ELIGIBLE = "not_eligible"
    OUTSIDE_SCHEDULE = "outside_schedule"
    # Not a card's or a mode's verdict: the terminal's storage failed while recording the
    # tap, the citizen got the error sound, and the event that may have reached the disk
    # goes to the city as this instead (reader/queue/voiding.py; docs/city-integration.md).
    VOIDED = "voided"


MODE_REASONS = frozenset({Reason.DUPLICATE, Reason.NOT_ELIGIBLE, Reason.OUTSIDE_SCHEDULE})
