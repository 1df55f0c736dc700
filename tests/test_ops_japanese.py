"""The technician's operational commands speak the technician's language (issue 15):
under a Japanese locale `bundle import`, `queue export`, `tap` and `provision
--import-cert` say what went wrong and what to do in Japanese, under C.UTF-8 in English,
each with its documented exit code and never a traceback. Machine values (the refusal's
reason code) stay as they are in both, and the city link (`sync`, the daemon's link
alone) logs a refused bundle in English under a Japanese locale: the journal stays English.

Each case is a real `python -m reader` process with a clean environment (no
SUKUMO_READER_*, LC_* or LANG* from this shell; LANG set alone), on a real terminal
directory, real signed bundles and a real SQLite file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import mqtt_env
import pytest
from city_ca import make_ca
from daemon_env import REPO, Deployment, language_env
from mqtt_env import close_client, raw_client, terminal_settings, wait_for

from reader.devtools.broker import RECEIVER_CN, DevBroker
from reader.emulator.issuer import DevIssuer
from reader.queue import EventQueue
from reader.wire.topics import Topics

broker = mqtt_env.broker  # fixture

JA, EN = "ja_JP.UTF-8", "C.UTF-8"
ROOT = ("04fbd0ea5bd96b8586f096b43c0753748e9aea493ce75ea2e1a86b572a15d3aa3a3c96371a3a3f5b91"
        "ddcfb18ffcc8e91652cbdfa0ec44d966e80bac6bca0ce8f2")  # the vectors' test root


def _cli(lang: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reader", *argv], capture_output=True,
                          text=True, env=language_env(lang), cwd=REPO, timeout=60)


def _said(done: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in done.stderr, done.stderr
    return done.stdout + done.stderr


@pytest.fixture
def dep(tmp_path: Path) -> Deployment:
    return Deployment(tmp_path / "terminal")


@pytest.mark.parametrize(("lang", "words"), [
    (JA, ["拒否しました（`malformed`）", "署名付きバンドルではありません",
          "--kind trust|denylist|config を指定してください"]),
    (EN, ["refused (malformed)", "is not a signed bundle", "give --kind trust|denylist|config"]),
])
def test_a_garbage_bundle_file_is_refused_in_the_technicians_language(
        dep: Deployment, tmp_path: Path, lang: str, words: list[str]) -> None:
    garbage = tmp_path / "bundle.cbor"
    garbage.write_bytes(os.urandom(64))
    done = _cli(lang, "--config", str(dep.config), "bundle", "import", str(garbage))
    assert done.returncode == 1, done.stdout + done.stderr
    text = _said(done)
    for word in words:
        assert word in text, text


@pytest.mark.parametrize(("lang", "words"), [
    (JA, ["拒否しました（`untrusted_signer`）", "現在の運用鍵ではありません",
          "先にトラストバンドルを読み込んでください"]),
    (EN, ["refused (untrusted_signer)", "is not a current ops key",
          "import the trust bundle first"]),
])
def test_a_bundle_signed_by_an_unknown_key_is_refused_with_its_reason_and_next_step(
        dep: Deployment, tmp_path: Path, lang: str, words: list[str]) -> None:
    stranger = DevIssuer.generate()  # its ops key is in no trust bundle of this terminal
    bundle = tmp_path / "denylist.cbor"
    bundle.write_bytes(stranger.denylist_bundle(version=5))
    done = _cli(lang, "--config", str(dep.config), "bundle", "import", str(bundle))
    assert done.returncode == 1, done.stdout + done.stderr
    text = _said(done)
    for word in words:
        assert word in text, text
    assert stranger.ops_kid.decode() in text  # which key, named as its issuer names it
    held = dep.state / "bundles" / "denylist.cbor"
    assert stranger.denylist_bundle(version=5) != held.read_bytes()  # nothing replaced


@pytest.mark.parametrize(("lang", "words"), [
    (JA, ["壊れています", "何も変更していません", "救出します"]),
    (EN, ["is corrupt", "Nothing was changed", "salvages its events"]),
])
def test_queue_export_of_a_corrupt_database_says_so_and_touches_nothing(
        dep: Deployment, lang: str, words: list[str]) -> None:
    EventQueue.open(dep.database).close()
    wrecked = os.urandom(100) + dep.database.read_bytes()[100:]  # the header, as an SD card
    dep.database.write_bytes(wrecked)
    before = sorted(p.name for p in dep.state.iterdir())
    done = _cli(lang, "--config", str(dep.config), "queue", "export", "--format", "jsonl")
    assert done.returncode == 1, done.stdout + done.stderr
    text = _said(done)
    for word in words:
        assert word in text, text
    assert str(dep.database) in text
    assert dep.database.read_bytes() == wrecked  # not moved aside from under a daemon
    assert sorted(p.name for p in dep.state.iterdir()) == before


@pytest.mark.parametrize(("lang", "words"), [
    (JA, ["読み取り機: 見つかりません", "virtual の読み取り機が見つかりません",
          "USB ケーブルを確認してください"]),
    (EN, ["reader: not found", "no virtual reader was found", "check its USB cable"]),
])
def test_tap_with_no_reader_names_the_problem(dep: Deployment, tmp_path: Path, lang: str,
                                              words: list[str]) -> None:
    # The feed directory stands for the reader: not there, as a reader unplugged.
    config = dep.config.read_text().replace(str(dep.feed), str(tmp_path / "unplugged"))
    dep.config.write_text(config)
    done = _cli(lang, "--config", str(dep.config), "tap", "--timeout", "1")
    assert done.returncode == 3, done.stdout + done.stderr
    text = _said(done)
    for word in words:
        assert word in text, text


@pytest.mark.parametrize(("lang", "words"), [
    (JA, ["X.509 証明書（PEM または DER）ではありません", "市の認証局が署名した証明書ファイル"]),
    (EN, ["is not an X.509 certificate (PEM or DER)", "the certificate file the city CA signed"]),
])
def test_provision_with_a_garbage_certificate_names_it_plainly(
        tmp_path: Path, lang: str, words: list[str]) -> None:
    etc = tmp_path / "etc"
    first = _cli(lang, "provision", "--config-dir", str(etc), "--state-dir",
                 str(tmp_path / "state"), "--no-chown", "--terminal-id", "t-0001", "--muni",
                 "392081", "--facility", "hall", "--mode", "checkin", "--root-key", ROOT,
                 "--transport", "virtual", "--dev", "--broker", "")
    assert first.returncode == 0, first.stdout + first.stderr
    garbage = tmp_path / "terminal.crt"
    garbage.write_bytes(os.urandom(40))
    done = _cli(lang, "provision", "--config-dir", str(etc), "--no-chown",
                "--import-cert", str(garbage), "--ca", str(make_ca(tmp_path / "city").path))
    assert done.returncode == 2, done.stdout + done.stderr
    text = _said(done)
    for word in words:
        assert word in text, text
    assert "ParseError" not in text and str(garbage) in text
    assert not (etc / "tls" / "terminal.crt").exists()  # nothing installed


@pytest.mark.mqtt
@pytest.mark.timeout(90)
def test_the_city_link_logs_a_refused_bundle_in_english_under_a_japanese_locale(
        broker: DevBroker, tmp_path: Path) -> None:
    """`sync` is the daemon's city link alone: its journal stays English and structured
    (the refusal's reason code and text), whatever the terminal's locale."""
    settings = terminal_settings(broker, tmp_path / "t1")
    settings = settings.model_copy(update={"log": settings.log.model_copy(
        update={"format": "json"})})
    log = tmp_path / "sync.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "reader", "sync", "--settings-json",
                                 settings.model_dump_json()], stdout=out, stderr=out,
                                cwd=REPO, env=language_env(JA))

    def logged(msg: str) -> list[dict[str, Any]]:
        entries = []
        for line in log.read_text(errors="replace").splitlines():
            try:
                entries.append(json.loads(line))
            except ValueError:
                continue
        return [e for e in entries if e.get("msg") == msg]

    try:
        wait_for(lambda: logged("connected to the city broker"), 20, "online")
        city = raw_client(broker, RECEIVER_CN)
        forged = DevIssuer.generate().trust_bundle(version=9)  # not signed by the pinned root
        topics = Topics("sukumo/v1", broker.muni, "t-0001")
        city.publish(topics.bundle("trust"), forged, qos=1, retain=True).wait_for_publish(5)
        close_client(city)
        [refusal] = wait_for(lambda: logged("bundle refused"), 20, "the refusal logged")
    finally:
        proc.terminate()
        proc.wait(15)
    assert refusal["reason"] == "bad_signature"
    assert refusal["why"] == ("the trust bundle is not signed by the root key pinned on "
                              "this terminal")
