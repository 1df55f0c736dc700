"""CardSession against the status-word table of card-ap-v1 §2, as byte-exact tables.

No reader: the session is sans-I/O, so each case feeds responses and checks the next
command or the reason, like h11's tests.
"""

from __future__ import annotations

import pytest

from reader.card.reasons import Reason
from reader.card.session import (
    MAX_EXCHANGES,
    CardSession,
    Phase,
    internal_authenticate_command,
    select_command,
)

AID = bytes.fromhex("F053554B554D4F494401")
OK = b"\x90\x00"


def record_bytes(n: int) -> bytes:
    return n.to_bytes(2, "big") + bytes(range(256)) * (n // 256) + bytes(n % 256)


def run(session: CardSession, answers: list[bytes]) -> list[bytes]:
    """Feed answers in order; return the commands the session sent."""
    sent = []
    for answer in answers:
        command = session.next_command()
        if command is None:
            break
        sent.append(command)
        session.receive(answer)
    return sent


def test_happy_path_bytes():
    s = CardSession(AID)
    ef = record_bytes(100)
    sent = run(s, [OK, ef + OK])
    assert sent == [
        bytes.fromhex("00A4040C0A") + AID,  # SELECT by DF name, no response data
        bytes.fromhex("00B0810000"),  # READ BINARY, SFI 1, offset 0, Le 256
    ]
    assert s.phase is Phase.AWAIT_CHALLENGE and s.result.ef_record == ef[2:]
    challenge = bytes(range(32))
    s.authenticate(challenge)
    assert s.next_command() == bytes.fromhex("0088000020") + challenge + b"\x00"
    s.receive(b"\x11" * 64 + OK)
    assert s.phase is Phase.DONE and s.result.signature == b"\x11" * 64
    assert s.result.reason is None


def test_chunked_read_uses_offsets_and_exact_le():
    s = CardSession(AID)
    ef = record_bytes(600)  # 602 bytes: 256 + 256 + 90
    sent = run(s, [OK, ef[:256] + OK, ef[256:512] + OK, ef[512:] + OK])
    assert sent[2] == bytes.fromhex("00B0010000")  # offset 256, Le 256
    assert sent[3] == bytes.fromhex("00B002005A")  # offset 512, Le 90: exactly 2 + N
    assert s.result.ef_record == ef[2:]


def test_61xx_get_response_chain():
    s = CardSession(AID)
    ef = record_bytes(40)
    sent = run(s, [OK, b"\x61\x14", ef[:20] + b"\x61\x16", ef[20:] + OK])
    assert sent[1] == bytes.fromhex("00B0810000")
    assert sent[2] == bytes.fromhex("00C0000014") and sent[3] == bytes.fromhex("00C0000016")
    assert s.result.ef_record == ef[2:]


def test_6cxx_resends_same_command_with_le():
    s = CardSession(AID)
    ef = record_bytes(40)
    sent = run(s, [OK, b"\x6C\x2A", ef + OK])
    assert sent[2] == bytes.fromhex("00B081002A")
    assert s.result.ef_record == ef[2:]


def test_6282_short_data_is_valid():
    s = CardSession(AID)
    ef = record_bytes(40)
    run(s, [OK, ef + b"\x62\x82"])
    assert s.phase is Phase.AWAIT_CHALLENGE and s.result.ef_record == ef[2:]


def test_6282_before_the_record_ends_is_bad_record():
    s = CardSession(AID)
    run(s, [OK, record_bytes(300)[:100] + b"\x62\x82"])
    assert s.result.reason == "bad_record"


@pytest.mark.parametrize(("step", "sw", "reason"), [
    (0, "6A82", "not_registered"),
    (1, "6A82", "card_error"),  # elsewhere: a broken card
    (0, "6982", "card_error"),
    (1, "6985", "card_error"),
    (1, "6B00", "card_error"),
    (1, "6700", "card_error"),
    (0, "6D00", "card_error"),
    (0, "6E00", "card_error"),
    (1, "6F00", "card_error"),  # anything else
    (0, "9001", "card_error"),
])
def test_status_word_table(step, sw, reason):
    s = CardSession(AID)
    answers = [OK] * step + [bytes.fromhex(sw)]
    run(s, answers)
    assert s.phase is Phase.DONE and s.result.reason == reason


@pytest.mark.parametrize("n", [0, 2049, 0xFFFF])
def test_record_length_out_of_range(n):
    s = CardSession(AID)
    run(s, [OK, n.to_bytes(2, "big") + b"\x00" * 50 + OK])
    assert s.result.reason == "bad_record"


def test_card_that_never_finishes_is_bounded():
    s = CardSession(AID)
    count = 0
    while (cmd := s.next_command()) is not None:
        count += 1
        s.receive(b"\x61\x01" if cmd[1] != 0xA4 else OK)
        assert count <= MAX_EXCHANGES + 1
    assert s.result.reason == "card_error"


def test_endless_6cxx_is_bounded():
    s = CardSession(AID)
    run(s, [OK] + [b"\x6C\x10"] * 10)
    assert s.result.reason == "card_error"


def test_more_data_than_asked_is_card_error():
    s = CardSession(AID)
    run(s, [OK, b"\x01\x00" + bytes(300) + OK])
    assert s.result.reason == "card_error"


def test_empty_read_does_not_loop():
    s = CardSession(AID)
    run(s, [OK] + [OK] * 5)
    assert s.result.reason == "bad_record"


def test_national_aps_can_never_be_selected():
    for aid in ("D392F000260100000001", "D3921000310001010408", "D3921000310001010402"):
        with pytest.raises(ValueError):
            select_command(bytes.fromhex(aid))
        with pytest.raises(ValueError):
            CardSession(bytes.fromhex(aid))


def test_authenticate_apdu_shape():
    assert internal_authenticate_command(b"\x00" * 32)[:5] == bytes.fromhex("0088000020")


def test_6cxx_after_get_response_keeps_what_was_already_received():
    s = CardSession(AID)
    ef = record_bytes(100)
    sent = run(s, [OK, ef[:40] + b"\x61\x00", b"\x6C\x3E", ef[40:] + OK])
    assert sent[2] == bytes.fromhex("00C0000000") and sent[3] == bytes.fromhex("00C000003E")
    assert s.result.reason is None and s.result.ef_record == ef[2:]


def test_6282_on_select_is_not_a_selected_application():
    s = CardSession(AID)
    run(s, [b"\x62\x82"])
    assert s.result.reason == "card_error"


NEIGHBOUR = bytes.fromhex("F053554B554D4F494411")  # a neighbouring town's member AP
THIRD = bytes.fromhex("F053554B554D4F494421")
NOT_FOUND = b"\x6a\x82"


def test_a_home_card_pays_for_one_select_whatever_follows():
    s = CardSession([AID, NEIGHBOUR, THIRD])
    sent = run(s, [OK, record_bytes(50) + OK])
    assert sent == [bytes.fromhex("00A4040C0A") + AID, bytes.fromhex("00B0810000")]
    assert s.phase is Phase.AWAIT_CHALLENGE


def test_6a82_moves_to_the_next_towns_aid_in_order():
    s = CardSession([AID, NEIGHBOUR, THIRD])
    ef = record_bytes(50)
    sent = run(s, [NOT_FOUND, OK, ef + OK])
    assert sent == [bytes.fromhex("00A4040C0A") + AID, bytes.fromhex("00A4040C0A") + NEIGHBOUR,
                    bytes.fromhex("00B0810000")]
    assert s.phase is Phase.AWAIT_CHALLENGE and s.result.ef_record == ef[2:]


def test_no_town_s_aid_is_not_registered_and_other_errors_do_not_move_on():
    s = CardSession([AID, NEIGHBOUR, THIRD])
    assert len(run(s, [NOT_FOUND, NOT_FOUND, NOT_FOUND, OK])) == 3
    assert s.result.reason is Reason.NOT_REGISTERED
    # 6A82 is "no such application"; anything else on SELECT is a card error at once.
    s = CardSession([AID, NEIGHBOUR])
    assert len(run(s, [b"\x69\x85", OK])) == 1 and s.result.reason is Reason.CARD_ERROR


def test_a_national_aid_anywhere_in_the_list_is_refused_before_any_apdu():
    with pytest.raises(ValueError):
        CardSession([AID, bytes.fromhex("D392F000260100000001")])
