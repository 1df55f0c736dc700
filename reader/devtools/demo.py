"""The demo: the whole service on the virtual reader, in about a minute.

A development issuer mints cards and bundles; the real Terminal (queue, sound, modes,
sync) runs its real loop in a thread; the tour presents one card at a time on the
virtual reader and shows what a citizen hears, what the queue holds and what the city
acknowledged. With mosquitto installed, a local broker (TLS, client certificates, the
mqtt-v1 ACL), a local PostgreSQL and the city service (`sukumo-city run`, as a program:
the terminal never imports it) run too; without them the terminal runs offline and
says so.
"""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from reader.bundles import TrustStore
from reader.config import Settings
from reader.devtools import postgres
from reader.devtools.broker import MOSQUITTO, DevBroker
from reader.emulator.card import CardFaults, VirtualCard
from reader.emulator.issuer import DevIssuer, clone_of, foreign_card
from reader.errors import SukumoError
from reader.system.i18n import N_, _
from reader.system.logs import setup_logging
from reader.transports.virtual import VirtualTransport
from reader.wire.event import Event

TID = "t-demo-0001"
# What each sound says; the accepted chime sings the service's name in any language.
SOUND_WORDS = {"accepted": "♪ すくもあいでぃー♪", "duplicate": N_("♪ already recorded"),
               "rejected": N_("♪ rejected"), "arrival": N_("♪ nursery arrival"),
               "departure": N_("♪ nursery departure"), "coupon": N_("♪ coupon"),
               "error": N_("♪ error")}
# The player's state (reader/sound/player.py), as the tour's first lines say it.
AUDIO_WORDS = {"ok": N_("ok"), "missing": N_("missing (no audio device)"),
               "disabled": N_("disabled")}


@dataclass
class Step:
    title: str
    card: VirtualCard | None = None
    action: Callable[[], str] | None = None  # a non-tap step (a bundle, the clock)


class Clock:
    """The demo's simulated wall clock: it starts at the next 08:00 in the terminal's zone
    and runs at real speed; `offset` moves it on (the nursery needs hours between taps).

    A fixed morning start keeps the tour's story true whenever it runs: a tap "in the
    morning" plus eight hours is the same local day, an arrival and then a departure.
    The start is never before now, so freshly issued cards are already valid."""

    def __init__(self, zone: str = "Asia/Tokyo", *, now: float | None = None,
                 hour: int = 8) -> None:
        real = time.time() if now is None else now
        local = datetime.fromtimestamp(real, ZoneInfo(zone))
        start = local.replace(hour=hour, minute=0, second=0, microsecond=0)
        if start.timestamp() < real:
            start += timedelta(days=1)
        self._start = start.timestamp()
        self._since = time.monotonic()
        self.offset = 0.0

    def __call__(self) -> float:
        return self._start + (time.monotonic() - self._since) + self.offset


def city_service_installed() -> bool:
    """The city's side needs its own optional dependencies (the `city` extra) and
    PostgreSQL 15; the terminal never imports it, the demo runs it as a program."""
    return importlib.util.find_spec("city") is not None and postgres.available()


def _city_cmd(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "city.cli", "--config", str(config), *args]


@contextlib.contextmanager
def city(workdir: Path, offline: bool, out: TextIO) -> Iterator[dict[str, Any]]:
    """A local broker, a local PostgreSQL and the city service (`sukumo-city run`) on them,
    when mosquitto, PostgreSQL 15 and the city's dependencies are installed."""
    if offline or not Path(MOSQUITTO).exists() or not city_service_installed():
        why = "--offline" if offline else _("mosquitto is not installed") \
            if not Path(MOSQUITTO).exists() else \
            _("the city service (sukumo-city, PostgreSQL 15) is not installed")
        print(_("City link: none ({why}) — the terminal runs offline; taps are queued.")
              .format(why=why), file=out)
        yield {}
        return
    broker = DevBroker(workdir / "broker", terminals=(TID,), verbose_log=False).start()
    # Its own world-traversable directory: under root the cluster runs as a system user.
    database = postgres.DevPostgres(Path(tempfile.mkdtemp(prefix="sukumo-demo-pg-")))
    proc: subprocess.Popen[bytes] | None = None
    try:
        try:
            proc = _start_city(broker, database, workdir)
        except (SukumoError, subprocess.CalledProcessError, OSError) as exc:
            print(_("City link: none (the city service did not start: {error}) — the "
                    "terminal runs offline; taps are queued.").format(error=exc), file=out)
            yield {}
            return
        ident = broker.identity(TID)
        print(_("City link: local mosquitto {url} (TLS, client certificate CN={tid}) and "
                "the city service (sukumo-city) on a local PostgreSQL.").format(
                    url=broker.url, tid=TID), file=out)
        yield {"url": broker.url, "ca_file": str(broker.ca_file),
               "cert_file": str(ident.cert_file), "key_file": str(ident.key_file),
               "ack_timeout_s": 5.0, "status_interval_s": 10.0}
    finally:
        if proc is not None:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        database.destroy()
        broker.stop()


def _start_city(broker: DevBroker, database: postgres.DevPostgres,
                workdir: Path) -> subprocess.Popen[bytes]:
    """PostgreSQL up, the city database migrated, `sukumo-city run` subscribed."""
    database.start()
    database.psql("CREATE DATABASE city")
    rcv = broker.receiver
    config = workdir / "city.toml"
    config.write_text(
        f'[database]\ndsn = "{database.dsn("city")}"\n\n[mqtt]\n'
        f'url = "{broker.city_url}"\nca_file = "{broker.ca_file}"\n'
        f'cert_file = "{rcv.cert_file}"\nkey_file = "{rcv.key_file}"\n'
        'client_id = "city-demo"\n\n[log]\nformat = "text"\n')
    ready, log = workdir / "city.ready", workdir / "city.log"
    with log.open("ab") as sink:
        subprocess.run(_city_cmd(config, "migrate"), stdout=sink, stderr=sink, check=True)
        proc = subprocess.Popen(_city_cmd(config, "run", "--ready-file", str(ready)),
                                stdout=sink, stderr=sink)
    deadline = time.monotonic() + 15
    while not ready.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    if not ready.exists():
        proc.kill()
        raise SukumoError(_("not subscribed after 15 s; see {log}").format(log=log))
    return proc


def run_demo(*, workdir: Path | None = None, offline: bool = False, interactive: bool = False,
             pace_s: float = 2.0, out: TextIO = sys.stdout, inp: TextIO = sys.stdin) -> int:
    from reader.terminal.daemon import Terminal

    setup_logging("ERROR", "text", stream=sys.stderr)
    own_dir = workdir is None
    root = Path(tempfile.mkdtemp(prefix="sukumo-demo-")) if workdir is None else workdir
    root.mkdir(parents=True, exist_ok=True)
    issuer = DevIssuer.generate()
    issuer.save(root / "dev-issuer")
    print(_("sukumo-reader demo — 宿毛ID terminal on the virtual reader"), file=out)
    print(_("State: {root}  (development keys only)").format(root=root), file=out)
    try:
        with city(root, offline, out) as mqtt:
            settings = Settings(
                terminal={"id": TID, "facility": "sukumo-sports-center", "mode": "checkin"},
                reader={"transport": "virtual"},
                verify={"root_public_key": issuer.root_public_hex},
                paths={"state_dir": str(root / "state")},
                mqtt=mqtt, log={"level": "ERROR", "format": "text"})
            cards = _cards(issuer)
            _install_bundles(issuer, settings)
            clock = Clock(settings.terminal.timezone)
            transport = VirtualTransport(settings.reader)
            terminal = Terminal(settings, transport=transport, wall=clock)
            state = terminal.player.state
            audio = _(AUDIO_WORDS[state]) if state in AUDIO_WORDS else state
            print(_("Audio: {audio}   Reader: virtual   Mode: {mode}   Queue: {queue}")
                  .format(audio=audio, mode=terminal.mode.name,
                          queue=settings.paths.database) + "\n", file=out)
            loop = threading.Thread(target=terminal.run, name="tap-loop", daemon=True)
            loop.start()
            try:
                if interactive:
                    _interactive(terminal, transport, cards, out, inp)
                else:
                    for number, step in enumerate(_tour(issuer, terminal, cards, clock), 1):
                        _do_step(number, step, terminal, transport, out, pace_s)
                _finish(terminal, bool(mqtt), root, out)
            finally:
                terminal.stop()
                loop.join(5)
                terminal.close()
    finally:
        if own_dir:
            shutil.rmtree(root, ignore_errors=True)
    return 0


def _cards(issuer: DevIssuer) -> dict[str, VirtualCard]:
    now = int(time.time())
    valid = issuer.issue_card("SK-000123", bytes.fromhex("0102030405060708"), name=_("Sato-san"),
                              attr={"senior": True, "birth_year": 1948})
    rogue = DevIssuer.generate()  # its own keys and kid: not in the city's trust bundle
    return {
        "member": valid,
        "revoked": issuer.issue_card("SK-000777", bytes.fromhex("2122232425262728"),
                                     name=_("revoked card")),
        "clone": clone_of(valid, _("clone of Sato-san's card")),
        "expired": issuer.issue_card("SK-000456", bytes.fromhex("3132333435363738"),
                                     iat=now - 6 * 365 * 86400, exp=now - 86400,
                                     name=_("expired card")),
        "mynumber": foreign_card(_("My Number Card without 宿毛ID")),
        "unknown": rogue.issue_card("SK-999999", bytes.fromhex("4142434445464748"),
                                    name=_("card from an unknown issuer")),
        "torn": issuer.issue_card("SK-000321", bytes.fromhex("5152535455565758"),
                                  name=_("card pulled away too fast"),
                                  faults=CardFaults(tear_after=2)),
        "child": issuer.issue_card("SK-KID-0042", bytes.fromhex("1112131415161718"),
                                   ap="nursery", name=_("Haruto-kun (nursery card)"),
                                   attr={"grade": "年中"}),
    }


def _install_bundles(issuer: DevIssuer, settings: Settings) -> None:
    """What the city would have sent: trust and denylist bundles, kept on disk."""
    trust = TrustStore.from_settings(settings)
    trust.apply("trust", issuer.trust_bundle(1))
    trust.apply("denylist", issuer.denylist_bundle(1, [bytes.fromhex("2122232425262728")]))


def _tour(issuer: DevIssuer, terminal: Any, cards: dict[str, VirtualCard],
          clock: Clock) -> list[Step]:
    def to_nursery() -> str:
        bundle = issuer.config_bundle(TID, {"mode": "nursery", "facility": "sukumo-hoikuen",
                                            "min_gap_s": 300}, version=1)
        terminal.trust.apply("config", bundle)  # the same path a bundle from MQTT takes
        deadline = time.monotonic() + 5
        while terminal.mode.name != "nursery" and time.monotonic() < deadline:
            time.sleep(0.05)
        return _("config bundle v1 applied → mode {mode}, facility {facility}, AID {aid}").format(
            mode=terminal.mode.name, facility=terminal.settings.terminal.facility,
            aid=terminal.profile.aid.hex().upper())

    def later() -> str:
        clock.offset += 8 * 3600
        return _("(simulated) eight hours later…")

    return [
        Step(_("A member taps her card"), cards["member"]),
        Step(_("She taps again right away"), cards["member"]),
        Step(_("A revoked card (its serial is on the city's denylist)"), cards["revoked"]),
        Step(_("A clone: her record copied onto another chip"), cards["clone"]),
        Step(_("An expired card"), cards["expired"]),
        Step(_("A My Number Card with no 宿毛ID registered"), cards["mynumber"]),
        Step(_("A card signed by an issuer the city does not trust"), cards["unknown"]),
        Step(_("A card pulled away mid-read"), cards["torn"]),
        Step(_("The city switches this terminal to the nursery (保育園 登降園)"),
             action=to_nursery),
        Step(_("A child taps in the morning"), cards["child"]),
        Step(_("Time passes"), action=later),
        Step(_("The child taps out in the afternoon"), cards["child"]),
    ]


def _do_step(number: int, step: Step, terminal: Any, transport: VirtualTransport, out: TextIO,
             pace_s: float) -> None:
    print(str(number).rjust(2) + ". " + step.title, file=out)  # words: the step's title
    if step.action is not None:
        print("    " + step.action(), file=out)
        return
    assert step.card is not None
    event = _tap(terminal, transport, step.card)
    if event is None:
        print("    " + _("✗ not recorded (see the log)"), file=out)
        return
    # The reason stays its wire value (mqtt-v1 §2): the word the city's records use.
    verdict = _("ACCEPTED") if event.accepted else _("REJECTED: {reason}").format(
        reason=event.reason)
    detail = f"  {dict(event.detail)}" if event.detail else ""
    sound = terminal.state.last_sound or "-"
    words = _(SOUND_WORDS[sound]) if sound in SOUND_WORDS else sound
    # Without an audio device nothing is heard: say so rather than print a chime.
    heard = (words if terminal.player.state == "ok"
             else _("(silent: no audio device; would be {sound})").format(sound=words))
    print("    " + _("card {name} → {verdict}").format(name=repr(step.card.name),
                                                      verdict=verdict) + detail, file=out)
    print("    " + _("sound {heard} · stored as seq {seq} · mid {mid}").format(
        heard=heard, seq=event.seq, mid=event.card.mid if event.card else "-"), file=out)
    print("    " + _city_line(terminal, event.id, wait_s=2.0), file=out)
    time.sleep(pace_s)


def _tap(terminal: Any, transport: VirtualTransport, card: VirtualCard) -> Event | None:
    before = terminal.state.taps + terminal.state.unrecorded
    transport.present(card)
    deadline = time.monotonic() + 10
    while terminal.state.taps + terminal.state.unrecorded == before:
        if time.monotonic() > deadline:
            break
        time.sleep(0.005)
    transport.lift()
    return terminal.state.last_event if terminal.state.taps + terminal.state.unrecorded > before \
        else None


def _city_line(terminal: Any, event_id: str, wait_s: float) -> str:
    if terminal.sync is None or terminal.sync.state == "offline":
        summary = terminal.queue.summary()
        return _("queue: {n} waiting for the city (offline)").format(n=summary.pending)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if not any(e["id"] == event_id for e in terminal.queue.iter_events("unacked")):
            return _("city ✓ stored and acknowledged (queue: {n})").format(
                n=terminal.queue.summary().pending)
        time.sleep(0.05)
    return _("city: not yet acknowledged ({state}); it stays queued until it is").format(
        state=terminal.sync.state)


def _interactive(terminal: Any, transport: VirtualTransport, cards: dict[str, VirtualCard],
                 out: TextIO, inp: TextIO) -> None:
    keys = list(cards)
    while True:
        choices = "  ".join(f"[{i}] {cards[k].name}" for i, k in enumerate(keys, 1))
        print("\n" + _("Tap a card: {choices}  [q] quit").format(choices=choices), file=out)
        line = inp.readline()
        if not line or line.strip().lower() in ("q", "quit", "exit"):
            return
        choice = line.strip()
        if not choice.isdigit() or not 1 <= int(choice) <= len(keys):
            print("    " + _("(type a number from the list)"), file=out)
            continue
        card = cards[keys[int(choice) - 1]]
        _do_step(int(choice), Step(_("tap: {name}").format(name=card.name), card), terminal,
                 transport, out, 0)


def _finish(terminal: Any, online: bool, root: Path, out: TextIO) -> None:
    if online:
        deadline = time.monotonic() + 10
        while terminal.queue.summary().pending and time.monotonic() < deadline:
            time.sleep(0.1)
    s = terminal.queue.summary()
    print("\n" + _("Queue: {n} taps recorded (seq 1..{n}), {pending} waiting, {rejected} set "
                   "aside by the city.").format(n=s.last_seq, pending=s.pending,
                                                rejected=s.rejected), file=out)
    if online:  # what the city's staff see: its own command, on its own database
        summary = subprocess.run(_city_cmd(root / "city.toml", "summary"), text=True,
                                 capture_output=True, timeout=30)
        print(_("City (sukumo-city summary):") + "\n    "
              + "\n    ".join(summary.stdout.splitlines() or [summary.stderr.strip()]),
              file=out)
    print(_("Demo finished."), file=out)
