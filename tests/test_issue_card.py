"""`sukumo-reader issue-card`: development cards that a terminal judges as the spec says."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from daemon_env import language_env

from reader.bundles.store import TrustStore
from reader.card.profiles import Profile
from reader.cli import main
from reader.emulator.card import VirtualCard
from reader.emulator.issuer import DevIssuer
from reader.terminal.tap import perform_tap
from reader.transports.virtual import VirtualTransport

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("flags", "reason"), [
    ([], None),
    (["--expired"], "expired"),
    (["--clone"], "clone_suspected"),
    (["--unregistered"], "not_registered"),
    (["--torn-after", "2"], "card_removed"),
])
def test_issued_cards_get_their_verdicts(tmp_path: Path, capsys, flags, reason) -> None:
    dev = tmp_path / "dev"
    assert main(["issue-card", "init", str(dev)]) == 0
    assert "DEVELOPMENT KEYS" in capsys.readouterr().out
    out = tmp_path / "tap.card"
    assert main(["issue-card", "new", str(dev), "--mid", "SK-42", "--attr", "senior=true",
                 "-o", str(out), *flags]) == 0
    issuer = DevIssuer.load(dev)
    trust = TrustStore(bytes.fromhex(issuer.root_public_hex), issuer.muni, "t-0001")
    trust.apply("trust", (dev / "trust.cbor").read_bytes())
    trust.apply("denylist", (dev / "denylist.cbor").read_bytes())
    transport = VirtualTransport()
    transport.present(VirtualCard.from_json(out.read_text()))
    outcome = perform_tap(transport.wait_for_card(0.1), Profile(
        bytes.fromhex("F053554B554D4F494401"), "member"), trust, "t-0001")
    assert outcome.reason == reason
    if reason is None:
        assert outcome.record.mid == "SK-42" and outcome.record.attr == {"senior": True}
    assert json.loads(out.read_text())["name"]


@pytest.mark.parametrize(("lang", "lines"), [
    ("ja_JP.UTF-8", ("開発用の鍵です", "reader.toml に固定する値:", "次に:  sukumo-reader bundle "
                     "import", "カードを {card} に書き出しました")),
    ("C.UTF-8", ("DEVELOPMENT KEYS", "pin in reader.toml:", "then:  sukumo-reader bundle "
                 "import", "card written to {card}")),
])
def test_issue_card_speaks_the_terminals_language(tmp_path: Path, lang, lines) -> None:
    env = language_env(lang)
    dev, card = tmp_path / "dev", tmp_path / "a.card"

    def cli(*argv: str) -> str:
        done = subprocess.run([sys.executable, "-m", "reader", "issue-card", *argv],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    out = cli("init", str(dev)) + cli("new", str(dev), "-o", str(card))
    for line in lines:
        assert line.format(card=card) in out, out
    assert f"bundle import {dev / 'denylist.cbor'}" in out
    assert json.loads(card.read_text())["name"] == "SK-DEV-0001"


def test_init_writes_the_root_key_file_provision_takes(tmp_path: Path, capsys) -> None:
    # docs/technician.md answers provision's root key question with a root.pub.pem file.
    dev = tmp_path / "dev"
    assert main(["issue-card", "init", str(dev)]) == 0
    pem = dev / "root.pub.pem"
    assert f"--root-key {pem}" in capsys.readouterr().out
    provision = ["provision", "--config-dir", str(tmp_path / "etc"), "--no-chown",
                 "--state-dir", str(tmp_path / "state"), "--terminal-id", "t-0001",
                 "--muni", "392081", "--facility", "hall", "--mode", "checkin",
                 "--broker", "", "--transport", "pcsc"]
    assert main([*provision, "--root-key", str(pem)]) == 0
    toml = (tmp_path / "etc" / "reader.toml").read_text()
    assert f'root_public_key = "{DevIssuer.load(dev).root_public_hex}"' in toml
    # The wrong file from the same stick: named, with the fix, without cryptography's words.
    env = language_env("ja_JP.UTF-8")
    done = subprocess.run([sys.executable, "-m", "reader", *provision, "--root-key",
                           str(dev / "trust.cbor")], env=env, capture_output=True, text=True,
                          cwd=REPO, timeout=60)
    assert done.returncode == 2, done.stderr
    assert f"ルート公開鍵ファイル {dev / 'trust.cbor'} に公開鍵" in done.stderr, done.stderr
    assert "root.pub.pem" in done.stderr
    for english in ("deserialize", "ASN.1", "Could not"):
        assert english not in done.stderr, done.stderr
