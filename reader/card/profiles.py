"""AP profiles (card-ap-v1 §1): which application a tap selects, and the national-AID guard.

The city application lives in the My Number Card's free area under its own AID. The
national applications (JPKI, 券面, 券面入力補助, 住基) hold the 12-digit individual number
and all start with J-LIS's registered prefix D392: no profile, file or bundle may ever
make the terminal select one, so the guard is here, under everything that builds an AID.
"""

from __future__ import annotations

from dataclasses import dataclass

# card-ap-v1 §1 default AIDs; a neighbouring town sets its own in the AP profile.
MEMBER_AID = "F053554B554D4F494401"
NURSERY_AID = "F053554B554D4F494402"
# J-LIS's registered prefix: JPKI, 券面, 券面入力補助 and 住基 APs all start with it.
NATIONAL_AID_PREFIX = bytes.fromhex("D392")
APS = ("member", "nursery")  # what a record's `ap` may say (card-ap-v1 §3)


def is_national(aid: bytes) -> bool:
    return aid.startswith(NATIONAL_AID_PREFIX)


@dataclass(frozen=True)
class Profile:
    """Which application to select and whether the card must prove its key (AP profile)."""

    aid: bytes  # the home town's AID: SELECTed first, so its cards pay for nothing more
    ap: str  # "member" | "nursery": what the record's `ap` must say
    authenticate: bool = True  # a national AID is refused by session.select_command
    # Neighbouring towns' AIDs for the same AP (card-ap-v1 §1: a town may deploy the AP
    # under its own), SELECTed in order after `aid` answers 6A82. Whether a town's cards
    # are accepted is not decided here but by [verify] accept_munis (check 3).
    more_aids: tuple[bytes, ...] = ()

    @property
    def aids(self) -> tuple[bytes, ...]:
        return (self.aid, *self.more_aids)
