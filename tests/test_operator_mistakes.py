"""Issue 12, failure 5: operator mistakes end with exit 2 and a message naming the key,
never a traceback (exit 70), and the TLS files are checked before `run` starts.

Each case runs the real `sukumo-reader run` (or `provision`) as a process.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from daemon_env import Deployment, run_cli

from reader.devtools.broker import DevBroker

# On the curve's field, but not on the curve: passes the hex pattern.
OFF_CURVE = "04" + "11" * 64


def _run(dep: Deployment, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = run_cli("--config", str(dep.config), "run", env=env, timeout=60)
    return result.returncode, result.stdout + result.stderr


def _assert_explained(code: int, out: str, *names: str) -> None:
    assert "Traceback" not in out, out
    assert code == 2, out
    for name in names:
        assert name in out, out


@pytest.fixture
def dep(tmp_path: Path) -> Deployment:
    return Deployment(tmp_path / "terminal")


def test_a_config_file_that_is_not_utf8(dep: Deployment) -> None:
    dep.config.write_bytes(dep.config.read_bytes() + '\n# 宿毛市\n'.encode("shift_jis"))
    _assert_explained(*_run(dep), str(dep.config), "UTF-8")


def test_a_root_key_that_is_not_a_point_on_the_curve(dep: Deployment) -> None:
    dep.config.write_text(dep.config.read_text().replace(dep.issuer.root_public_hex,
                                                         OFF_CURVE))
    _assert_explained(*_run(dep), "verify.root_public_key", "P-256 curve")


def test_broken_json_in_the_environment(dep: Deployment) -> None:
    code, out = _run(dep, env={"SUKUMO_READER_MODES__COUPON__KINDS": "[{"})
    _assert_explained(code, out, "SUKUMO_READER_MODES__COUPON__KINDS", "not valid JSON")


def test_state_dir_pointing_at_a_file(dep: Deployment, tmp_path: Path) -> None:
    a_file = tmp_path / "not-a-dir"
    a_file.write_text("x")
    dep.config.write_text(dep.config.read_text().replace(
        f'state_dir = "{dep.state}"', f'state_dir = "{a_file}"'))
    _assert_explained(*_run(dep), "paths.state_dir", "not a directory")


def test_state_dir_under_proc(dep: Deployment) -> None:
    dep.config.write_text(dep.config.read_text().replace(
        f'state_dir = "{dep.state}"', 'state_dir = "/proc/sukumo"'))
    _assert_explained(*_run(dep), "paths.state_dir", "pseudo-filesystem")


def test_state_dir_that_cannot_be_created(dep: Deployment, tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("x")
    dep.config.write_text(dep.config.read_text().replace(
        f'state_dir = "{dep.state}"', f'state_dir = "{blocked}/state"'))
    _assert_explained(*_run(dep), "paths.state_dir")


# -- the TLS files, checked before `run` starts -------------------------------------------

@pytest.fixture
def pki(tmp_path: Path) -> DevBroker:
    return DevBroker(tmp_path / "pki", terminals=("t-daemon-0001", "t-other-0002")
                     ).ensure_pki()


def _with_tls(dep: Deployment, pki: DevBroker, key: Path, cert: Path | None = None) -> None:
    ident = pki.identity(dep.tid)
    dep.write_config(f"""
[mqtt]
url = "mqtts://127.0.0.1:1"
ca_file = "{pki.ca_file}"
cert_file = "{cert or ident.cert_file}"
key_file = "{key}"
""")


def test_the_genuine_tls_files_start(dep: Deployment, pki: DevBroker) -> None:
    """The control: with right files the checks pass and the daemon gets ready."""
    from daemon_env import DaemonProc

    _with_tls(dep, pki, pki.identity(dep.tid).key_file)
    daemon = DaemonProc(dep).wait_ready()
    assert daemon.terminate() == 0


def test_a_key_file_readable_by_others(dep: Deployment, pki: DevBroker) -> None:
    key = pki.identity(dep.tid).key_file
    os.chmod(key, 0o644)
    _with_tls(dep, pki, key)
    _assert_explained(*_run(dep), "mqtt.key_file", "0644", "chmod 0600")


def test_a_key_that_does_not_match_the_certificate(dep: Deployment, pki: DevBroker) -> None:
    _with_tls(dep, pki, pki.identity("t-other-0002").key_file)
    _assert_explained(*_run(dep), "mqtt.cert_file", "not for this terminal's key")


def test_a_certificate_for_another_terminal(dep: Deployment, pki: DevBroker) -> None:
    other = pki.identity("t-other-0002")
    _with_tls(dep, pki, other.key_file, other.cert_file)
    _assert_explained(*_run(dep), "mqtt.cert_file", "CN=t-other-0002")


def test_a_garbage_key(dep: Deployment, pki: DevBroker, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.key"
    garbage.write_bytes(os.urandom(300))
    garbage.chmod(0o600)
    _with_tls(dep, pki, garbage)
    _assert_explained(*_run(dep), "mqtt.key_file", "not an unencrypted PEM private key")


def test_the_ca_given_as_the_key(dep: Deployment, pki: DevBroker, tmp_path: Path) -> None:
    ca_as_key = tmp_path / "ca-as-key.pem"
    ca_as_key.write_bytes(pki.ca_file.read_bytes())
    ca_as_key.chmod(0o600)
    _with_tls(dep, pki, ca_as_key)
    _assert_explained(*_run(dep), "mqtt.key_file", "not an unencrypted PEM private key")


def test_provision_with_a_garbage_key_in_place(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    (etc / "tls").mkdir(parents=True)
    (etc / "tls" / "terminal.key").write_bytes(b"not a key")
    from reader.emulator.issuer import DevIssuer

    result = run_cli("provision", "--config-dir", str(etc), "--state-dir", str(tmp_path / "v"),
                     "--no-chown", "--terminal-id", "t-0001", "--muni", "392081",
                     "--facility", "hall", "--mode", "checkin", "--broker", "",
                     "--root-key", DevIssuer.generate().root_public_hex)
    _assert_explained(result.returncode, result.stdout + result.stderr, "terminal.key",
                      "not an unencrypted PEM private key")
