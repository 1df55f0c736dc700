"""`sukumo-reader doctor` speaks the technician's language: under LANG=ja_JP.UTF-8 every
check's title, what was seen and what to do are Japanese (commands, paths and setting
names stay as they are typed), under LANG=C.UTF-8 English, and --json keeps the stable
English `name` of each check beside its `title` in both.

Through the real CLI in a subprocess, against real terminal configs on disk: one nothing
was provisioned for, one with every kind of mistake, and one that reaches a real mosquitto.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import subprocess
import sys
import time
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from daemon_env import language_env

from reader.devtools.broker import DevBroker, free_port

REPO = Path(__file__).resolve().parents[1]
ME = pwd.getpwuid(os.getuid()).pw_name  # stands in for the `sukumo` service user
TID = "t-0001"
JAPANESE = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uff01-\uff60]")
LINE = re.compile(r"^([✓✗]) (\S.*?)  +(\S.*)$")
# Words no Japanese sentence of doctor's has, but nearly every English one does.
ENGLISH = {"the", "a", "an", "and", "or", "not", "no", "is", "are", "be", "to", "of", "in",
           "at", "for", "with", "from", "by", "on", "it", "its", "then", "run", "check",
           "fix", "does", "cannot", "must", "missing", "exist", "found", "ask", "see",
           "file", "files", "days", "free", "waiting", "writable", "connected", "refused",
           "terminal", "mode", "owner", "disabled", "synchronised"}
VERBATIM = re.compile(r"`[^`]*`"                       # a command to type
                      r"|\[\w+\] \w+( = \S+)?"          # a setting: [mqtt] url, [sound] x = y
                      r"|\"[^\"]*\"|'[^']*'"             # a quoted value
                      r"|\S*[/=._:\d]\S*")               # paths, hosts, CN=..., ids, numbers


def _doctor(config: Path, lang: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reader", "doctor", "--config", str(config),
                           "--user", ME, *extra], capture_output=True, text=True,
                          env=language_env(lang),
                          cwd=REPO, timeout=60)


def _english_left(text: str) -> list[str]:
    """English prose left in `text` once what is typed verbatim is taken out."""
    prose = VERBATIM.sub(" ", text)
    words = re.findall(r"[A-Za-z]+", prose)
    sentence = re.search(r"\b[a-z]+ [a-z]+ [a-z]+\b", prose)
    return [w for w in words if w.lower() in ENGLISH] + ([sentence[0]] if sentence else [])


def _columns(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def assert_japanese(out: str) -> list[str]:
    """Every check line and every advice line reads in Japanese; the details line up.
    Returns the check lines' titles."""
    lines = out.splitlines()
    checks = [(i, m) for i, line in enumerate(lines) if (m := LINE.match(line))]
    assert len(checks) >= 10, out
    detail_at = {_columns(lines[i][:m.start(3)]) for i, m in checks}
    assert len(detail_at) == 1, f"details do not line up:\n{out}"
    (column,) = detail_at
    for i, m in checks:
        assert JAPANESE.search(m[2]), f"title not in Japanese: {lines[i]!r}"
        assert JAPANESE.search(m[3]) or m[1] == "✓", f"detail not in Japanese: {lines[i]!r}"
        assert not _english_left(m[3]), f"English left in {lines[i]!r}: {_english_left(m[3])}"
    advice = [line for line in lines if line.lstrip().startswith("→ ")]
    assert advice, out
    for line in advice:
        assert _columns(line[:line.index("→")]) == column, f"advice not under its detail:\n{out}"
        assert JAPANESE.search(line), f"advice not in Japanese: {line!r}"
        assert not _english_left(line), f"English left in {line!r}: {_english_left(line)}"
    assert JAPANESE.search(lines[-1]), lines[-1]  # the verdict line
    return [m[2] for _, m in checks]


def assert_english(out: str) -> None:
    """English, and English that assert_japanese would catch: every ✗ and every advice."""
    for line in out.splitlines():
        assert not JAPANESE.search(line), f"Japanese under C.UTF-8: {line!r}"
        m = LINE.match(line)
        if line.lstrip().startswith("→ ") or (m and m[1] == "✗"):
            assert _english_left(m[3] if m else line), f"not seen as English: {line!r}"


def assert_json_names(config: Path) -> dict[str, dict[str, dict]]:
    """--json under both locales: the same English ids, and the title in the language."""
    reports = {}
    for lang in ("ja_JP.UTF-8", "C.UTF-8"):
        done = _doctor(config, lang, "--json")
        assert done.returncode == 1, done.stderr
        reports[lang] = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    ja, en = reports["ja_JP.UTF-8"], reports["C.UTF-8"]
    assert list(ja) == list(en)
    assert {"config", "terminal key", "certificate", "reader", "broker", "queue"} <= set(ja)
    for name in ja:
        assert ja[name]["ok"] == en[name]["ok"], name
        assert en[name]["title"] == name
        assert JAPANESE.search(ja[name]["title"]), ja[name]
        assert not JAPANESE.search(en[name]["detail"] + en[name]["advice"]), en[name]
    return reports


def _root_key() -> str:
    return ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint).hex()


def _config(folder: Path, mqtt: dict[str, str], reader: str, sound: bool) -> Path:
    config = folder / "etc" / "reader.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(
        f'[terminal]\nid = "{TID}"\nmuni = "392081"\nfacility = "city-hall"\n'
        f'mode = "checkin"\n[verify]\nroot_public_key = "{_root_key()}"\n'
        f'[paths]\nstate_dir = "{folder / "var"}"\n[reader]\n{reader}\n'
        f"[sound]\nenabled = {'true' if sound else 'false'}\n[mqtt]\n"
        + "".join(f'{key} = "{value}"\n' for key, value in mqtt.items()))
    return config


def test_doctor_on_a_terminal_nothing_was_provisioned_for(tmp_path: Path) -> None:
    """A reader.toml written by hand: no key, no certificate, no state directory, the
    virtual reader without a feed. Every ✗ and its advice in Japanese."""
    tls = tmp_path / "etc" / "tls"
    config = _config(tmp_path, {"url": "mqtts://127.0.0.1:8883", "ca_file": f"{tls}/ca.crt",
                                "cert_file": f"{tls}/terminal.crt",
                                "key_file": f"{tls}/terminal.key"},
                     'transport = "virtual"', sound=True)
    ja = _doctor(config, "ja_JP.UTF-8")
    assert ja.returncode == 1, ja.stderr
    titles = assert_japanese(ja.stdout)
    assert {"端末の鍵", "証明書", "読み取り機", "市のブローカー", "状態ディレクトリ"} <= set(titles)
    assert f"{tls}/terminal.key に端末の鍵がありません" in ja.stdout
    assert "→ `sukumo-reader provision` を実行してください" in ja.stdout
    assert ja.stdout.splitlines()[-1].endswith("件の点検が不合格です")
    en = _doctor(config, "C.UTF-8")
    assert en.returncode == 1
    assert_english(en.stdout)
    assert f"✗ terminal key     no terminal key at {tls}/terminal.key" in en.stdout
    assert "→ run `sukumo-reader provision` (it generates the key and a CSR)" in en.stdout
    assert_json_names(config)


@pytest.fixture
def pki(tmp_path: Path) -> DevBroker:
    """The city's CA and this terminal's certificate, as files (no broker running); the
    certificate lasts 30 days, so doctor says it expires soon."""
    return DevBroker(tmp_path / "city", cert_days=30).ensure_pki()


def test_doctor_on_a_misconfigured_terminal(tmp_path: Path, pki: DevBroker) -> None:
    """Every kind of mistake a technician meets: a key anyone can read, a certificate that
    expires within 30 days, a broker nobody listens on, the reader's feed gone, old
    bundles, a file the service cannot write, a queue file that went missing."""
    ident = pki.identity(TID)
    ident.key_file.chmod(0o644)
    feed = tmp_path / "feed"  # never made: the virtual reader's "USB cable" is out
    config = _config(tmp_path, {"url": f"mqtts://127.0.0.1:{free_port()}",
                                "ca_file": str(pki.ca_file), "cert_file": str(ident.cert_file),
                                "key_file": str(ident.key_file)},
                     f'transport = "virtual"\nvirtual_feed = "{feed}"', sound=False)
    bundles = tmp_path / "var" / "bundles"
    bundles.mkdir(parents=True)
    old = time.time() - 20 * 86400
    for name in ("trust.cbor", "denylist.cbor"):
        (bundles / name).write_bytes(b"\xa0")
        os.utime(bundles / name, (old, old))
    (bundles / "trust.cbor").chmod(0o444)  # left read-only: the next import fails
    (tmp_path / "var" / "events.sqlite3.seq").write_text("41\n")  # the queue existed
    ja = _doctor(config, "ja_JP.UTF-8")
    assert ja.returncode == 1, ja.stderr
    assert_japanese(ja.stdout)
    for seen in ("のモードが 0644", "あと 29 日", "接続を拒否されました", "フィード用ディレクトリ",
                 "trust は 20.0 日前", f"{ME} が書き込めません", "キューがあったはずの"):
        assert seen in ja.stdout, (seen, ja.stdout)
    assert f"chown {ME}: {ident.key_file} && chmod 0600 {ident.key_file}" in ja.stdout
    en = _doctor(config, "C.UTF-8")
    assert_english(en.stdout)
    for seen in ("has mode 0644", "in 29 days", "cannot reach the broker",
                 "connection refused", "feed directory", "20.0 days old",
                 f"not writable by {ME}", "is missing where a queue existed"):
        assert seen in en.stdout, (seen, en.stdout)
    reports = assert_json_names(config)
    for name in ("terminal key", "certificate", "reader", "broker", "bundles",
                 "state directory", "queue"):
        assert not reports["ja_JP.UTF-8"][name]["ok"], reports["ja_JP.UTF-8"][name]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[DevBroker]:
    b = DevBroker(tmp_path / "broker").start()
    yield b
    b.stop()


@pytest.mark.mqtt
def test_doctor_reaching_a_real_broker(tmp_path: Path, broker: DevBroker) -> None:
    """A terminal that gets in: the ✓ lines say what was seen, in Japanese too."""
    ident = broker.identity(TID)
    feed = tmp_path / "feed"
    feed.mkdir()
    (tmp_path / "var").mkdir()
    config = _config(tmp_path, {"url": broker.url, "ca_file": str(broker.ca_file),
                                "cert_file": str(ident.cert_file),
                                "key_file": str(ident.key_file)},
                     f'transport = "virtual"\nvirtual_feed = "{feed}"', sound=False)
    ja = _doctor(config, "ja_JP.UTF-8")
    assert_japanese(ja.stdout)
    ok = [line for line in ja.stdout.splitlines() if line.startswith("✓")]
    assert len(ok) >= 6, ja.stdout
    broker_line = next(line for line in ok if "市のブローカー" in line)
    assert f"TLS で {TID} として MQTT 5 で接続し" in broker_line
    assert any("音は無効です" in line for line in ok)
    assert any(f"すべて {ME} が書き込めます" in line for line in ok)
    en = _doctor(config, "C.UTF-8")
    assert_english(en.stdout)
    assert f"connected as {TID} over MQTT 5 (persistent session), broker accepted us" \
        in en.stdout
    reports = assert_json_names(config)
    for name in ("config", "terminal key", "reader", "audio", "broker", "state directory",
                 "disk", "queue"):
        assert reports["ja_JP.UTF-8"][name]["ok"], reports["ja_JP.UTF-8"][name]


@pytest.mark.parametrize("lang", ["ja_JP.UTF-8", "C.UTF-8"])
def test_every_check_has_a_title_in_the_language(lang: str, monkeypatch) -> None:
    """Also the checks the configs above do not reach (pcscd: RC-S300 terminals only)."""
    from reader.system import i18n
    from reader.technician.check import TITLES, Check

    for key in [k for k in os.environ if k.startswith(("LC_", "LANG"))]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("LANG", lang)
    i18n.install()
    try:
        for name in TITLES:
            check = Check(name, True, "")
            assert check.as_dict()["name"] == name
            if lang.startswith("ja"):
                assert JAPANESE.search(check.title), (name, check.title)
            else:
                assert check.title == name
    finally:
        monkeypatch.undo()
        i18n.install()
