"""Issue 21, item 4: Japanese all through. Every command `sukumo-reader --help` lists (and
its `--help`), and every mistake docs/technician.md and docs/configuration.md describe,
run through the real CLI under LANG=ja_JP.UTF-8 on a real terminal (a running daemon that
has recorded taps), and the test fails on any English word left that is not a proper
noun, a path, a setting key, an id or a command.

What may stay Latin is derived, not listed: the commands, options and choices of the
CLI's own parser and the sections, keys and literal values of the settings (what a
technician types), any token with a digit (ids, models, versions: t-0001, RC-S300) and
what is quoted to be typed (`…`, '…'), paths and URLs. The rest is PROPER_NOUNS below,
each with its reason. `run`, `sync` and `kiosk` write the journal, English by design
(docs/languages.md): their `--help` is checked, not their log.
"""

from __future__ import annotations

import argparse
import os
import re
import time
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest
from alsa_capture import file_config
from city_ca import make_ca
from daemon_env import DaemonProc, Deployment, language_env, run_cli
from pydantic import BaseModel

from reader.cli import COMMANDS, build_parser
from reader.config import Settings
from reader.queue import EventQueue
from reader.system.codes import WORDS

JA = language_env("ja_JP.UTF-8")
SILENT = {"ALSA_CONFIG_PATH": ""}  # set per run to an empty asound.conf: no sound device

# Proper nouns and units that stay Latin in Japanese text, each for its reason.
PROPER_NOUNS = {
    # Names of the service, standards, protocols and formats (written so in Japanese too)
    "Sukumo", "ID", "MQTT", "TLS", "CA", "CSR", "CN", "PEM", "DER", "TOML", "JSON", "CSV",
    "USB", "DNS", "NTP", "UTC", "IANA", "ACL", "AID", "APDU", "SW", "DB", "PUBACK",
    "CONNACK", "OpenSSL", "ALSA", "FeliCa", "SONY", "NFC", "IC", "PC", "Chromium", "CCID", "UDP",
    "PostgreSQL", "Unix", "PKCS",
    # ISO 7816 command names in `tap`'s APDU table (the standard's names)
    "SELECT", "READ", "BINARY", "GET", "RESPONSE", "INTERNAL", "AUTHENTICATE",
    # Software a technician installs or runs by that name
    "pcscd", "libccid", "nfcpy", "systemd", "systemctl", "journalctl", "sudo", "apt",
    "mosquitto",
    "adjtimex",  # the system call doctor's clock check names
    "root",  # the superuser's name, as doctor names a file's owner
    # Units
    "ms", "KiB", "MiB", "GiB",
    # The keys of status's versions line and of events (status.json / mqtt-v1 field names)
    "app", "trust", "denylist", "config", "mid", "sn", "seq", "pid", "tid",
}
LATIN = re.compile(r"[A-Za-z][A-Za-z0-9_\-]*(?:\.[A-Za-z0-9_\-]+)*")
TYPED = re.compile(r"`[^`]*`"             # a command to type
                   r"|'[^'\s]*'"          # a quoted value
                   r"|\"[^\"\s]*\""
                   r"|\S*[/\\]\S*"         # paths, URLs, PC/SC
                   r"|(?<![\w-])--?[A-Za-z][\w-]*"   # options
                   r"|\{[^{}']*(?:\{[^{}']*\}[^{}']*)*\}"  # a shape or choices: {"ok": bool}
                   r"|\*\.\w+|\b[\w.-]+\.(?:toml|cbor|card|pem|crt|csr|key|sqlite3|json|csv|conf)\b"
                   r"|\b(?:CN|O|OU)=[^,、（）()]*"  # a certificate's name: CN=Sukumo city CA
                   r"|\bSUKUMO_READER_\S*"  # the settings' environment variables
                   r"|\b(?:udp|usb):\S*"  # nfcpy's device paths
                   r"|\b[\w.]+ *= *(?:[{\[].*|[^\s,、）)]+)"  # a setting as written: x = true
                   r"|\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b"  # environment variables
                   r"|\b0x[0-9A-Fa-f]+\b|(?<![\w-])[0-9A-Fa-f]{16,}\b")  # codes, keys


def _allowed() -> set[str]:
    words = set(PROPER_NOUNS)

    def parser_words(parser: argparse.ArgumentParser) -> None:
        for action in parser._actions:
            words.update(s.lstrip("-") for s in action.option_strings)
            # the placeholders of the usage line: METAVAR, or the option's DEST
            metavar = action.metavar if isinstance(action.metavar, str) else action.dest.upper()
            words.update(re.findall(r"\w+", metavar))
            if isinstance(action.choices, dict):
                for name, sub in action.choices.items():
                    words.add(name)
                    parser_words(sub)
            elif action.choices:
                words.update(map(str, action.choices))

    def settings_words(model: type[BaseModel]) -> None:
        for name, field in model.model_fields.items():
            words.add(name)
            for kind in (field.annotation, *typing.get_args(field.annotation)):
                if isinstance(kind, type) and issubclass(kind, BaseModel):
                    settings_words(kind)
                if typing.get_origin(kind) is typing.Literal:
                    words.update(map(str, typing.get_args(kind)))

    parser_words(build_parser())
    settings_words(Settings)
    words.update(["sukumo-reader", "sukumo"])
    # The codes that have words (reader/system/codes.py) are never said raw to a person,
    # even where the same word is also an id to type (`sound test duplicate`).
    return words - {code for table in WORDS.values() for code in table}


ALLOWED = _allowed()


# Names of more than one word, written so in Japanese too.
PROPER_PHRASES = re.compile(r"JSON Lines|Raspberry Pi|Wi-Fi|Sukumo ID")


KEBAB_ID = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)+")  # terminal and facility ids: test-hall


def english_left(text: str, typed: list[str] = ()) -> list[str]:
    """The Latin words of `text` that are neither typed (here, or in the command line
    `typed`: a value the person gave comes back as they gave it), ids, keys nor proper
    nouns."""
    left = ["{'"] if "{'" in text else []  # a Python dict printed as it is
    for token in LATIN.findall(TYPED.sub(" ", PROPER_PHRASES.sub(" ", text))):
        parts = re.split(r"[.\-]", token)
        if any(ch.isdigit() for ch in token) or len(token) < 2 or token in ALLOWED \
                or token in typed \
                or KEBAB_ID.fullmatch(token):
            continue
        if all(part in ALLOWED or not part for part in parts):  # reader.poll_timeout_s
            continue
        left.append(token)
    return left


def test_the_detector_finds_what_the_issue_found() -> None:
    # The texts issue 21 quoted: each must fail, their Japanese must pass.
    for english in ("拒否: duplicate", "受付不可 clone_suspected", "rejected (expired)",
                    "{'direction': 'arrival'}", "Permission denied", "Service not available.",
                    "Could not deserialize key data", "Illegal character",
                    "no city receiver subscribed"):
        assert english_left(english), english
    for fine in ("設定 reader.poll_timeout_s = 9（ファイル /etc/sukumo-reader/reader.toml）",
                 "`sudo systemctl start pcscd.socket` で起動", "端末 t-0001、RC-S300",
                 "モード checkin", "SELECT 00 A4 04 00  9000   1.20 ms"):
        assert not english_left(fine), (fine, english_left(fine))


# -- the terminal the commands run on -------------------------------------------------------

@pytest.fixture(scope="module")
def terminal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    root = tmp_path_factory.mktemp("sweep")
    dep = Deployment(root / "terminal")
    silent = root / "asound.conf"
    silent.write_text("")
    SILENT["ALSA_CONFIG_PATH"] = str(silent)
    daemon = DaemonProc(dep).wait_ready()
    issuer = dep.issuer
    daemon.feed(issuer.issue_card("SK-000001", bytes.fromhex("0102030405060708")))
    daemon.feed(issuer.issue_card("SK-000002", bytes.fromhex("0102030405060709"),
                                  exp=int(time.time()) - 86400))
    daemon.wait_taps(2)
    dev = root / "dev"
    dev.mkdir()
    issuer.save(dev)
    (dev / "trust.cbor").write_bytes(issuer.trust_bundle(2))
    bench = Deployment(root / "bench", issuer=issuer)  # `tap` on its own reader
    try:
        yield {"root": root, "config": dep.config, "dev": dev, "bench": bench.config,
               "bench_feed": bench.feed}
    finally:
        daemon.terminate()


def _said(argv: list[str], env: dict[str, str] | None = None) -> str:
    done = run_cli(*argv, env={**JA, **SILENT, **(env or {})}, timeout=120)
    text = done.stdout + done.stderr
    assert "Traceback" not in text, text
    return text


def _assert_japanese(argv: list[str], text: str) -> None:
    left = english_left(text, argv)
    assert not left, f"{' '.join(argv)}: English left {sorted(set(left))}\n{text}"


HELP = [[name.replace("_", "-"), "--help"] for name in COMMANDS] + [
    ["queue", "list", "--help"], ["queue", "export", "--help"], ["sound", "test", "--help"],
    ["issue-card", "init", "--help"], ["issue-card", "new", "--help"],
    ["bundle", "import", "--help"], ["config", "show", "--help"], ["--help"]]


@pytest.mark.parametrize("argv", HELP, ids=" ".join)
def test_every_help_is_japanese(argv: list[str]) -> None:
    _assert_japanese(argv, _said(argv))


def _commands(t: dict[str, Path]) -> list[list[str]]:
    config = ["--config", str(t["config"])]
    bench = ["--config", str(t["bench"])]
    card = t["bench_feed"] / "one.card"
    return [
        [*config, "status"], [*config, "queue"], [*config, "queue", "list"],
        [*config, "queue", "export", "--format", "csv", "-o", str(t["root"] / "q.csv")],
        [*config, "readers"], [*config, "doctor"], [*config, "config", "show"],
        [*config, "sound", "test", "accepted"],
        [*config, "bundle", "import", str(t["dev"] / "trust.cbor")],
        ["issue-card", "init", str(t["root"] / "dev2")],
        ["issue-card", "new", str(t["dev"]), "--mid", "SK-000003", "--expired", "-o",
         str(card)],
        [*bench, "tap", "--timeout", "5"],  # takes the card just written: expired
        [*bench, "tap", "--timeout", "1"],  # none
        ["demo", "--offline", "--pace", "0", "--dir", str(t["root"] / "demo")],
        ["provision", "--config-dir", str(t["root"] / "etc"), "--state-dir",
         str(t["root"] / "var"), "--no-chown", "--terminal-id", "t-0001", "--muni", "392081",
         "--facility", "hall", "--mode", "checkin", "--broker", "", "--transport", "pcsc",
         "--root-key", str(t["root"] / "dev2" / "root.pub.pem")],
    ]


def test_every_command_speaks_japanese(terminal: dict[str, Path]) -> None:
    english = {}
    speaker = file_config(terminal["root"] / "speaker.conf", terminal["root"] / "played.raw")
    played = [*_commands(terminal)[0][:2], "sound", "test", "duplicate"]  # a working device
    assert "`duplicate`" in _said(played, {"ALSA_CONFIG_PATH": str(speaker)})
    for argv in [*_commands(terminal), played]:
        text = _said(argv, {"ALSA_CONFIG_PATH": str(speaker)} if argv is played else None)
        if english_left(text, argv):
            english[" ".join(argv)] = (sorted(set(english_left(text, argv))), text)
    assert not english, "\n\n".join(f"{argv}: English left {left}\n{text}"
                                      for argv, (left, text) in english.items())


# -- the mistakes the docs describe, each on its own terminal ---------------------------------

def _provisioned(root: Path, *extra: str) -> Path:
    """A provisioned (offline) terminal under `root`: its reader.toml."""
    done = run_cli("provision", "--config-dir", str(root / "etc"), "--state-dir",
                   str(root / "state"), "--no-chown", "--terminal-id", "t-0001", "--muni",
                   "392081", "--facility", "city-hall", "--mode", "checkin", "--broker", "",
                   "--transport", "pcsc", "--root-key", ROOT, *extra, env=JA)
    assert done.returncode == 0, done.stdout + done.stderr
    return root / "etc" / "reader.toml"


ROOT = ("04fbd0ea5bd96b8586f096b43c0753748e9aea493ce75ea2e1a86b572a15d3aa3a3c96371a3a3f5b91"
        "ddcfb18ffcc8e91652cbdfa0ec44d966e80bac6bca0ce8f2")
# docs/configuration.md "Mistakes are refused, never guessed": (what, reader.toml, env)
CONFIG_MISTAKES = [
    ("a value out of bounds", "[reader]\npoll_timeout_s = 9\n", {}),
    ("an unknown key", "[reader]\ntransprot = \"pcsc\"\n", {}),
    ("an unknown section", "[readers]\ntransport = \"pcsc\"\n", {}),
    ("an unknown key in the environment", "", {"SUKUMO_READER_READER__TRANSPROT": "pcsc"}),
    ("an unknown section in the environment", "", {"SUKUMO_READER_LOGG__LEVEL": "DEBUG"}),
    ("a mode that does not exist", "[terminal]\nmode = \"checkn\"\n", {}),
    ("not TOML: a line ends in a value", "[terminal]\nid = \"t-0001\n", {}),
    ("not TOML: a header not closed", "[terminal\n", {}),
    ("not TOML: a key without a value", "[terminal]\nid\n", {}),
    ("an empty root key", "[verify]\nroot_public_key = \"\"\n", {}),
]


@pytest.mark.parametrize(("what", "toml", "env"), CONFIG_MISTAKES,
                         ids=[m[0] for m in CONFIG_MISTAKES])
def test_every_documented_settings_mistake_is_said_in_japanese(
        tmp_path: Path, what: str, toml: str, env: dict[str, str]) -> None:
    config = tmp_path / "reader.toml"
    config.write_text(toml + f'[paths]\nstate_dir = "{tmp_path / "state"}"\n'
                      if "[paths]" not in toml and not toml.startswith("[terminal\n")
                      else toml)
    for command in (["config", "show"], ["doctor"], ["status"]):
        argv = ["--config", str(config), *command]
        _assert_japanese(argv, _said(argv, env))


def test_every_documented_operator_mistake_is_said_in_japanese(tmp_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    config = _provisioned(tmp_path)
    etc = tmp_path / "etc"
    rogue = make_ca(tmp_path / "rogue", "Not the city")  # a certificate from another CA
    city = make_ca(tmp_path / "city")
    csr = x509.load_pem_x509_csr((etc / "tls" / "terminal.csr").read_bytes())
    cert = tmp_path / "terminal.crt"
    cert.write_bytes(rogue.sign(csr.subject, csr.public_key())
                     .public_bytes(serialization.Encoding.PEM))
    dev = tmp_path / "dev"
    assert run_cli("issue-card", "init", str(dev)).returncode == 0
    damaged = tmp_path / "damaged"  # a queue file an SD card damaged (docs/technician.md)
    damaged_config = _provisioned(damaged)
    EventQueue.open(damaged / "state" / "events.sqlite3").close()
    database = damaged / "state" / "events.sqlite3"
    database.write_bytes(os.urandom(100) + database.read_bytes()[100:])
    provision = ["provision", "--config-dir", str(tmp_path / "etc2"), "--no-chown",
                 "--state-dir", str(tmp_path / "state2"), "--terminal-id", "t-0002",
                 "--muni", "392081", "--facility", "hall", "--broker", "", "--transport",
                 "pcsc"]
    mistakes = [
        ["--config", str(tmp_path / "nowhere" / "reader.toml"), "status"],  # no such file
        ["--config", str(config), "doctor", "--user", "root"],  # no certificate, no bundles
        ["--config", str(config), "queue"],  # the daemon has not run here
        ["provision", "--config-dir", str(etc), "--no-chown", "--import-cert", str(cert),
         "--ca", str(city.path)],  # signed by another CA
        ["provision", "--config-dir", str(etc), "--no-chown", "--import-cert",
         str(dev / "trust.cbor"), "--ca", str(city.path)],  # not a certificate
        [*provision, "--mode", "checkn", "--root-key", ROOT],
        [*provision, "--mode", "checkin", "--root-key", str(dev / "trust.cbor")],
        [*provision, "--mode", "checkin", "--root-key", ROOT[:-2]],
        [*provision, "--mode", "checkin", "--root-key", ROOT, "--broker", "http://x"],
        [*provision, "--mode", "checkin", "--root-key", ROOT, "--transport", "virtual"],
        ["--config", str(config), "bundle", "import", str(dev / "trust.cbor")],  # another root
        ["--config", str(config), "tap", "--timeout", "0.1"],  # no trust bundle, no reader
        ["--config", str(damaged_config), "queue", "summary"],
        ["--config", str(damaged_config), "doctor", "--user", "root"],
    ]
    english = {}
    for argv in mistakes:
        text = _said(argv)
        if english_left(text, argv):
            english[" ".join(argv)] = (sorted(set(english_left(text, argv))), text)
    assert not english, "\n\n".join(f"{argv}: English left {left}\n{text}"
                                    for argv, (left, text) in english.items())
