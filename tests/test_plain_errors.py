"""Issue 21, item 4: a library's or the system's English is not appended to what a person
reads. The sentence names the file and the fix in the reader's words; the library's own
text goes to the log (reader/system/plain.py), where whoever debugs it finds it."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from reader.cli import main
from reader.emulator.issuer import DevIssuer

ROOT = DevIssuer.generate().root_public_hex


@pytest.fixture
def originals(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="reader.original")
    return caplog


def _kept(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.name == "reader.original")


def test_a_wrong_root_key_file(tmp_path: Path, capsys, originals) -> None:
    wrong = tmp_path / "trust.cbor"
    wrong.write_bytes(DevIssuer.generate().trust_bundle(1))
    assert main(["provision", "--config-dir", str(tmp_path / "etc"), "--no-chown",
                 "--state-dir", str(tmp_path / "state"), "--terminal-id", "t-0001", "--muni",
                 "392081", "--facility", "hall", "--mode", "checkin", "--broker", "",
                 "--transport", "pcsc", "--root-key", str(wrong)]) == 2
    said = capsys.readouterr().err
    assert f"root public key file {wrong} holds no public key" in said and "root.pub.pem" in said
    assert "deserialize" not in said and "ASN.1" not in said, said
    assert "deserialize" in _kept(originals)  # cryptography's words, for the log only


def test_a_file_that_is_not_toml(tmp_path: Path, capsys, originals) -> None:
    config = tmp_path / "reader.toml"
    config.write_text('[terminal]\nid = "t-0001\n')
    assert main(["--config", str(config), "config", "show"]) == 2
    said = capsys.readouterr().err
    assert f"config file {config} is not valid TOML: line 2, column 13: a line ends inside " \
           "a value" in said, said
    assert "Illegal character" not in said
    assert "Illegal character" in _kept(originals)


def test_a_missing_file(tmp_path: Path, capsys, originals) -> None:
    config = tmp_path / "reader.toml"
    config.write_text(f'[verify]\nroot_public_key = "{ROOT}"\n'
                      f'[paths]\nstate_dir = "{tmp_path / "state"}"\n')
    missing = tmp_path / "usb" / "trust.cbor"
    assert main(["--config", str(config), "bundle", "import", str(missing)]) == 2
    said = capsys.readouterr().err
    assert f"cannot read bundle file {missing}: it does not exist" in said, said
    assert "No such file or directory" not in said
    assert "No such file or directory" in _kept(originals)
