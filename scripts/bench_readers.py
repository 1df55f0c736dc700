"""Per-APDU and per-tap time through the real reader stacks, and what our layer adds.

    uv run python scripts/bench_readers.py [--apdus 500] [--taps 50]

PC/SC: a private pcscd with vpcd (tests/pcsc_env.py) and reader.emulator.vpcd's card; nfcpy:
its udp driver against reader.emulator.nfc_udp's Type 4B card. For each stack:
  raw APDU        the library call alone (scard.SCardTransmit / Type4Tag.transceive)
  link APDU       the same APDU through our CardLink (error mapping, bytes conversion)
  tap APDUs       one tap's APDUs (valid-member: SELECT, READ BINARY, INTERNAL AUTH)
                  through perform_tap, against the same commands replayed raw
  perform_tap     the whole tap, including record and card-signature verification
  extra AID       the same tap when the card's town is the profile's second AID (横展開: a
                  neighbour's card answers 6A82 to the home AID first), alternated with
                  the home tap in one loop so both see the same machine
Our overhead per tap = tap APDUs − raw replay. The goal is ≤ 1 ms per tap.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from spec_vectors import load_vectors, vector_trust  # noqa: E402

from reader.card.profiles import Profile  # noqa: E402
from reader.config import ReaderSettings  # noqa: E402
from reader.emulator.card import VirtualCard  # noqa: E402
from reader.terminal.tap import perform_tap  # noqa: E402
from reader.transports.base import CardLink  # noqa: E402

VECTORS = load_vectors()
MEMBER = next(c for c in VECTORS["cards"] if c["name"] == "valid-member")
PROFILE = Profile(bytes.fromhex(MEMBER["aid"]), "member")
# A home town whose AID the card does not have, then the card's own: one extra SELECT.
NEIGHBOUR_PROFILE = Profile(bytes.fromhex("F053554B554D4F494499"), "member",
                            more_aids=(bytes.fromhex(MEMBER["aid"]),))
SELECT = bytes.fromhex("00A4040C0A") + bytes.fromhex(MEMBER["aid"])


def per_call_ms(fn: Callable[[], object], n: int) -> float:
    """Median of n timed calls, in ms."""
    times = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def measure(name: str, link: CardLink, raw: Callable[[bytes], object], apdus: int,
            taps: int) -> None:
    trust = vector_trust(VECTORS)
    raw_apdu = per_call_ms(lambda: raw(SELECT), apdus)
    link_apdu = per_call_ms(lambda: link.transmit(SELECT, 5.0), apdus)
    tap_apdus, replays, totals, extra = [], [], [], []
    for _ in range(taps):
        started = time.perf_counter()
        neighbour = perform_tap(link, NEIGHBOUR_PROFILE, trust, "t-0001",
                                wall=lambda: VECTORS["now"])
        extra.append((time.perf_counter() - started) * 1000)
        assert neighbour.reason is None and len(neighbour.transcript) == 4, neighbour.detail
        started = time.perf_counter()
        outcome = perform_tap(link, PROFILE, trust, "t-0001", wall=lambda: VECTORS["now"])
        totals.append((time.perf_counter() - started) * 1000)
        assert outcome.reason is None, outcome.detail
        tap_apdus.append(sum(outcome.timings_ms))
        commands = [e.command for e in outcome.transcript]
        started = time.perf_counter()
        for command in commands:
            raw(command)
        replays.append((time.perf_counter() - started) * 1000)
    tap_ms, replay_ms = statistics.median(tap_apdus), statistics.median(replays)
    print(f"{name}")
    print(f"  raw APDU (SELECT)      {raw_apdu:8.3f} ms   median of {apdus}")
    added_us = (link_apdu - raw_apdu) * 1000
    print(f"  link APDU (SELECT)     {link_apdu:8.3f} ms   ({added_us:+.1f} µs)")
    print(f"  tap APDUs ({len(commands)})          {tap_ms:8.3f} ms   median of {taps} taps")
    print(f"  same APDUs, raw        {replay_ms:8.3f} ms")
    print(f"  our overhead per tap   {tap_ms - replay_ms:8.3f} ms   (goal ≤ 1 ms)")
    print(f"  perform_tap total      {statistics.median(totals):8.3f} ms   (incl. verification)")
    print(f"  extra AID tap total    {statistics.median(extra):8.3f} ms   (one more SELECT)")


def bench_pcsc(apdus: int, taps: int) -> None:
    from pcsc_env import running_pcscd
    from smartcard import scard

    from reader.emulator.vpcd import VpcdCard
    from reader.transports.pcsc import PcscLink, PcscTransport

    with (tempfile.TemporaryDirectory(prefix="sukumo-pcscd-") as work,
          running_pcscd(Path(work)) as server):
        slot = VpcdCard(server.port)
        slot.tap(VirtualCard.from_vector(MEMBER))
        transport = PcscTransport(ReaderSettings(transport="pcsc"))
        transport.open()
        started = time.perf_counter()
        link = transport.wait_for_card(5)
        detected = (time.perf_counter() - started) * 1000
        assert isinstance(link, PcscLink), "no card on vpcd"
        print(f"pcscd + vpcd: card seen {detected:.0f} ms after the tap (pcscd polls vpcd)")

        handle = link.channel.handle  # the link's own context; its calls go via a thread

        def raw(command: bytes) -> object:
            return scard.SCardTransmit(handle, scard.SCARD_PCI_T1, list(command))

        measure("PC/SC (pyscard → pcscd → vpcd → virtual card)", link, raw, apdus, taps)
        transport.close()
        slot.lift()


def bench_nfcpy(apdus: int, taps: int) -> None:
    from reader.emulator.nfc_udp import Type4BPeer
    from reader.transports.nfc import NfcLink, NfcpyTransport

    peer = Type4BPeer()
    peer.tap(VirtualCard.from_vector(MEMBER))
    transport = NfcpyTransport(ReaderSettings(transport="nfcpy", nfc_path=peer.path))
    transport.open()
    link = transport.wait_for_card(5)
    assert isinstance(link, NfcLink), "no card on the udp peer"
    measure("nfcpy (udp driver → ISO-DEP → Type 4B peer → virtual card)", link,
            lambda command: link.tag.transceive(bytearray(command)), apdus, taps)
    transport.close()
    peer.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apdus", type=int, default=500)
    parser.add_argument("--taps", type=int, default=50)
    parser.add_argument("--only", choices=["pcsc", "nfcpy"])
    args = parser.parse_args(argv)
    if args.only in (None, "pcsc"):
        try:
            bench_pcsc(args.apdus, args.taps)
        except Exception as exc:  # pytest.skip's exception when pcscd / vpcd are missing
            print(f"PC/SC skipped: {exc}")
        print()
    if args.only in (None, "nfcpy"):
        bench_nfcpy(args.apdus, args.taps)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
