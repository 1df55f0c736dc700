"""Issue 12, failure 1: a bundle reported in force is on disk, whoever runs the CLI.

A real unprivileged service user (`useradd -r`) owns the state directory, as install.sh
makes it. Root imports the trust bundle (`sudo sukumo-reader bundle import`), then the
service user imports a denylist that revokes a card: it must be on disk, so a terminal
restarted with no network still refuses the card. Where the user cannot store a bundle,
the CLI fails and names the command to run, and doctor says ✗. In the daemon, a bundle
that arrived over MQTT but could not be stored is an alarm (status.json and the retained
MQTT status) until it is stored, which the daemon keeps trying.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import mqtt_env
import pytest
import service_user as users
from daemon_env import DaemonProc, Deployment, wait_for
from mqtt_env import close_client, mqtt_section, raw_client, retained_status
from service_user import ServiceUser, as_user
from test_daemon_sdnotify import NotifyListener

from reader.bundles.files import stored_version
from reader.bundles.store import TrustStore
from reader.cli import main
from reader.config import load_settings
from reader.devtools.broker import RECEIVER_CN, DevBroker
from reader.emulator.issuer import DevIssuer
from reader.wire.topics import Topics

broker = mqtt_env.broker  # fixture
unprivileged_user = users.unprivileged_user  # fixture
shared_dir = users.shared_dir  # fixture
REVOKED = bytes.fromhex("04a1b2c3d4e5f607")


def _terminal(root: Path, user: ServiceUser) -> tuple[DevIssuer, Path, Path]:
    issuer = DevIssuer.generate()
    state = root / "state"
    state.mkdir(mode=0o750)
    os.chown(state, user.uid, user.gid)
    config = root / "reader.toml"
    config.write_text(f"""
[terminal]
id = "t-own-0001"
muni = "{issuer.muni}"
[verify]
root_public_key = "{issuer.root_public_hex}"
[paths]
state_dir = "{state}"
""")
    files = root / "usb"
    files.mkdir(mode=0o755)
    (files / "trust.cbor").write_bytes(issuer.trust_bundle())
    for version in (100, 101):
        (files / f"denylist-{version}.cbor").write_bytes(
            issuer.denylist_bundle(version=version, serials=[REVOKED]))
    return issuer, config, files


def test_root_and_the_service_user_both_store_what_they_apply(
        unprivileged_user: ServiceUser, shared_dir: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    user = unprivileged_user
    _, config, files = _terminal(shared_dir, user)
    state = shared_dir / "state"
    # root, as `sudo sukumo-reader bundle import trust.cbor`
    assert main(["--config", str(config), "bundle", "import", str(files / "trust.cbor")]) == 0
    for path in (state / "bundles", state / "bundles" / "trust.cbor"):
        info = path.stat()
        assert (info.st_uid, info.st_gid) == (user.uid, user.gid), path
    # then the service user (the daemon's own account) applies a revocation
    code, out = as_user(user, ["--config", str(config), "bundle", "import",
                               str(files / "denylist-100.cbor")], shared_dir / "out1")
    assert code == 0, out
    assert "applied denylist bundle version 100" in out
    assert stored_version(state / "bundles" / "denylist.cbor") == 100
    # "restart with no network": what is on disk is in force
    restarted = TrustStore.from_settings(load_settings(config))
    assert restarted.versions["denylist"] == 100
    assert restarted.is_denied(REVOKED, "anyone")


def test_a_bundle_the_service_user_cannot_store_is_a_failure_with_the_fix(
        unprivileged_user: ServiceUser, shared_dir: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    user = unprivileged_user
    issuer, config, files = _terminal(shared_dir, user)
    bundles = shared_dir / "state" / "bundles"
    # What an older release left behind after `sudo ... bundle import`: root:root 0755.
    bundles.mkdir(mode=0o755)
    TrustStore(bytes.fromhex(issuer.root_public_hex), issuer.muni, "t-own-0001",
               bundles).apply("trust", issuer.trust_bundle())
    for path in (bundles, bundles / "trust.cbor"):
        os.chown(path, 0, 0)
    code, out = as_user(user, ["--config", str(config), "bundle", "import",
                               str(files / "denylist-100.cbor")], shared_dir / "out2")
    assert code != 0, out
    assert "NOT stored" in out and f"sudo chown -R {user.name}: {shared_dir / 'state'}" in out
    assert "applied denylist" not in out
    assert stored_version(bundles / "denylist.cbor") == 0
    capsys.readouterr()
    main(["--config", str(config), "doctor", "--user", user.name, "--json"])
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    assert not checks["state directory"]["ok"]
    assert str(bundles) in checks["state directory"]["detail"]
    assert "sudo chown -R" in checks["state directory"]["advice"]
    # root running the same import repairs the ownership on the way
    assert main(["--config", str(config), "bundle", "import",
                 str(files / "denylist-101.cbor")]) == 0
    assert bundles.stat().st_uid == user.uid
    capsys.readouterr()
    main(["--config", str(config), "doctor", "--user", user.name, "--json"])
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    assert checks["state directory"]["ok"], checks["state directory"]


@pytest.fixture
def dep(tmp_path: Path, broker: DevBroker) -> Deployment:
    dep = Deployment(tmp_path / "terminal", tid="t-0001")
    dep.write_config(mqtt_section(broker, "t-0001"))
    return dep


@pytest.fixture
def notify() -> Iterator[NotifyListener]:
    # Not under tmp_path: an AF_UNIX path must fit in 108 bytes.
    with tempfile.TemporaryDirectory(prefix="sdn-") as short:
        lst = NotifyListener(Path(short) / "notify")
        yield lst
        lst.close()


@pytest.fixture
def daemon(dep: Deployment, notify: NotifyListener) -> Iterator[DaemonProc]:
    proc = DaemonProc(dep, env={"NOTIFY_SOCKET": str(notify.path)}).wait_ready()
    yield proc
    proc.kill()


@pytest.mark.mqtt
@pytest.mark.timeout(90)
def test_the_daemon_raises_an_alarm_and_keeps_trying_to_store(
        broker: DevBroker, dep: Deployment, daemon: DaemonProc,
        notify: NotifyListener, capsys: pytest.CaptureFixture[str]) -> None:
    bundles = dep.state / "bundles"
    blocker = bundles / "denylist.cbor.tmp"
    blocker.mkdir()  # the store's temporary file cannot be written, even by root
    city = raw_client(broker, RECEIVER_CN)
    topic = Topics("sukumo/v1", dep.issuer.muni, dep.tid).bundle("denylist")
    city.publish(topic, dep.issuer.denylist_bundle(version=7, serials=[REVOKED]), qos=1,
                 retain=True).wait_for_publish(5)
    close_client(city)
    alarm = "denylist bundle version 7 is in force but not stored"

    def alarmed() -> dict | None:
        try:
            status = dep.status()
        except (OSError, ValueError):
            return None
        return status if any(alarm in a for a in status["alarms"]) else None

    wait_for(alarmed, 20, "alarm in status.json")
    wait_for(lambda: any(line.startswith("STATUS=") and alarm in line
                         for _, msg in list(notify.messages) for line in msg.splitlines()),
             20, "alarm in systemd's STATUS=")
    status_topic = Topics("sukumo/v1", dep.issuer.muni, dep.tid).status
    wait_for(lambda: any(alarm in a for a in retained_status(broker, status_topic)
                         .get("alarms", [])), 20, "alarm in the MQTT status")
    assert stored_version(bundles / "denylist.cbor") == 1
    capsys.readouterr()
    main(["--config", str(dep.config), "doctor", "--user", "root", "--json"])
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    assert not checks["bundles"]["ok"]
    assert "denylist version 7 (stored: 1)" in checks["bundles"]["detail"]
    blocker.rmdir()  # the technician frees the way: the daemon stores it by itself
    wait_for(lambda: stored_version(bundles / "denylist.cbor") == 7, 20, "stored")
    wait_for(lambda: not alarmed(), 20, "alarm cleared")
