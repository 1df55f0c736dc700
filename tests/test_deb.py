"""The Debian package for real: built by scripts/build-deb, installed with apt into a
minimal Debian 12 root without a compiler, upgraded and downgraded there through dpkg.

Builds take a minute or two and the root comes from Debian's mirror, so this runs only
where that is wanted: as root with SUKUMO_TEST_DEB=1 (.ci/run sets it). Elsewhere it is
skipped, not faked. The figures (build time, package size, install time) are printed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from deb_env import (
    REPO,
    Built,
    Root,
    build_deb,
    bump_with_migration,
    copy_source,
    install_systemd_shim,
    make_base_root,
    remove_systemd_shim,
)
from mqtt_env import ReceiverProc, receiver_query
from waiting import end_process, wait_for

from reader.devtools.broker import DevBroker

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(2400),
    pytest.mark.skipif(os.environ.get("SUKUMO_TEST_DEB") != "1" or os.geteuid() != 0
                       or not shutil.which("mmdebstrap"),
                       reason="builds and installs the .deb: set SUKUMO_TEST_DEB=1, as root, "
                              "with mmdebstrap (scripts/bootstrap.sh)"),
]

FIGURES: dict[str, str] = {}
TERMINAL = "/srv/terminal"  # the demo's state: taps recorded by version N, offline
QUEUE = f"{TERMINAL}/state/events.sqlite3"


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("deb")


@pytest.fixture(scope="module")
def base_root(work: Path) -> Path:
    tarball = work / "bookworm.tar"
    FIGURES["mmdebstrap"] = f"{make_base_root(tarball):.0f} s"
    return tarball


@pytest.fixture(scope="module")
def deb_n(work: Path) -> Built:
    built = build_deb(REPO, work / "dist-n")
    FIGURES["build N"] = f"{built.seconds:.0f} s"
    FIGURES["package"] = f"{built.deb.name}, {built.deb.stat().st_size / 2**20:.1f} MiB"
    return built


@pytest.fixture(scope="module")
def deb_n1(work: Path) -> Built:
    src = copy_source(work / "src-n1")
    bump_with_migration(src)
    built = build_deb(src, work / "dist-n1")
    FIGURES["build N+1"] = f"{built.seconds:.0f} s"
    return built


@pytest.fixture
def root(base_root: Path, tmp_path: Path) -> Iterator[Root]:
    r = Root.unpack(base_root, tmp_path / "root")
    yield r
    r.close()


@pytest.fixture(scope="module", autouse=True)
def print_figures(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if FIGURES:
        capman = request.config.pluginmanager.getplugin("capturemanager")
        with capman.global_and_fixture_disabled():
            print("\n[deb figures] " + "; ".join(f"{k}: {v}" for k, v in FIGURES.items()))


def test_lintian_is_clean(deb_n: Built) -> None:
    """No error or warning beyond those debian/sukumo-reader.lintian-overrides explains."""
    result = subprocess.run(["lintian", "--fail-on", "error,warning", str(deb_n.deb)],
                            capture_output=True, text=True, timeout=600)
    tags = [line for line in result.stdout.splitlines() if line[:2] in ("E:", "W:")]
    assert result.returncode == 0 and tags == [], result.stdout + result.stderr


def test_build_deb_gives_lintian_one_verdict_line(deb_n: Built) -> None:
    lines = [line for line in deb_n.output.splitlines() if "lintian" in line]
    assert len(lines) == 1, deb_n.output
    assert re.fullmatch(r"build-deb: lintian: 0 errors, 0 warnings, \d+ info, \d+ overridden "
                        r"\(all: .*\)", lines[0]), lines[0]


def apt_install(root: Root, deb: Built) -> float:
    return apt_install_output(root, deb)[0]


def apt_install_output(root: Root, deb: Built) -> tuple[float, str]:
    inside = root.put(deb.deb, f"/tmp/{deb.deb.name}")
    start = time.monotonic()
    out = root.run(f"apt-get update -q && apt-get install -y -q {inside}", timeout=1200).stdout
    return time.monotonic() - start, out


def condition_met(root: Root) -> bool:
    """The installed unit's start condition, evaluated by systemd-analyze against this root
    (the root has no running systemd: systemd would skip the unit exactly when it fails)."""
    unit = root.host("/lib/systemd/system/sukumo-reader.service").read_text()
    path = re.search(r"^ConditionPathExists=(\S+)$", unit, re.M)
    assert path, "the unit has no start condition"
    condition = f"ConditionPathExists={root.host(path.group(1))}"
    return subprocess.run(["systemd-analyze", "condition", condition],
                          capture_output=True, timeout=60).returncode == 0


def test_the_package_waits_to_be_provisioned_and_ships_only_the_terminal(
        root: Root, deb_n: Built) -> None:
    _, out = apt_install_output(root, deb_n)
    # apt shows the next step; the unit would not start (no restart loop on exit 2).
    assert "Next: sudo sukumo-reader provision" in out, out
    assert not condition_met(root)
    unit = root.host("/lib/systemd/system/sukumo-reader.service").read_text()
    assert "RestartPreventExitStatus=2" in unit and "StartLimitBurst=" in unit
    # Only what the terminal runs: no pip or setuptools, no commands of the dependencies,
    # no city side.
    venv = root.host("/opt/sukumo-reader")
    assert sorted(p.name for p in (venv / "bin").iterdir()) == [
        "python", "python3", "python3.11", "sukumo-reader"]
    site = venv / "lib" / "python3.11" / "site-packages"
    for gone in ("pip", "setuptools", "pkg_resources", "city"):
        assert not (site / gone).exists(), gone
    root.run("sukumo-reader --help >/dev/null")  # still runs without them
    # Provisioned (as a technician would, non-interactively): now it would start.
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    key = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint).hex()
    root.run("sukumo-reader provision --terminal-id t-0042 --muni 392081 --facility hall "
             f"--mode checkin --broker mqtts://city.example:8883 --root-key {key} "
             "--transport pcsc")
    assert condition_met(root)


def compiled_at_start(root: Root) -> list[str]:
    """The modules of /opt that the service user, who may not write there, would compile
    from source when the daemon starts (python -v says where each code object came from)."""
    verbose = root.run("runuser -u sukumo -- /opt/sukumo-reader/bin/python -v -c "
                       "'import reader.cli, reader.terminal.daemon'").stderr
    return re.findall(r"^# code object from '?(/opt/\S+\.py)'?$", verbose, re.MULTILINE)


def test_apt_installs_it_in_a_clean_root_without_a_compiler(root: Root, deb_n: Built) -> None:
    assert root.compilers() == []
    FIGURES["apt-get install (clean root)"] = f"{apt_install(root, deb_n):.0f} s"
    assert root.compilers() == [], "the package pulled a compiler in"
    assert compiled_at_start(root) == [], "the daemon would compile these at every start"

    version = root.run("sukumo-reader --version").stdout.strip()
    assert version == f"sukumo-reader {deb_n.version}"
    doctor = root.run("sukumo-reader doctor --json", check=False)
    report = json.loads(doctor.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["config"]["ok"], report  # the shipped /etc/sukumo-reader/reader.toml loads
    assert not checks["terminal key"]["ok"] and doctor.returncode == 1  # not provisioned yet
    # The message catalogs are in the package: a Japanese terminal speaks Japanese.
    japanese = root.run("LANG=ja_JP.UTF-8 sukumo-reader --help").stdout
    assert japanese.startswith("使い方: ") and "オプション:" in japanese, japanese
    demo = root.run("cd /tmp && sukumo-reader demo --offline --pace 0", timeout=300)
    assert "Demo finished." in demo.stdout and "waiting for the city (offline)" in demo.stdout

    # What the package put where, and for whom.
    assert "sukumo:" in root.run("getent passwd sukumo").stdout
    groups = root.run("id -nG sukumo").stdout.split()
    assert {"audio", "plugdev"} <= set(groups)
    conffiles = root.run("dpkg-query -W -f='${Conffiles}' sukumo-reader").stdout
    assert "/etc/sukumo-reader/reader.toml" in conffiles
    wants = root.host("/etc/systemd/system/multi-user.target.wants/sukumo-reader.service")
    assert os.readlink(wants) == "/lib/systemd/system/sukumo-reader.service"  # enabled
    for path in ("/lib/systemd/system/sukumo-reader.service",
                 "/usr/lib/udev/rules.d/60-sukumo-reader.rules",
                 "/usr/lib/modprobe.d/sukumo-reader-blacklist.conf",
                 "/usr/share/polkit-1/rules.d/50-sukumo-pcscd.rules",
                 "/etc/alsa/conf.d/60-sukumo-reader.conf",
                 "/usr/lib/systemd/journald@sukumo-reader.conf.d/sukumo-reader.conf",
                 "/opt/sukumo-reader/share/sukumo-reader/sounds/accepted.wav",
                 "/opt/sukumo-reader/sounds/accepted.wav"):
        assert root.host(path).exists(), path
    assert not root.host("/etc/systemd/journald.conf.d/sukumo-reader.conf").exists()


def test_remove_keeps_the_queue_and_purge_says_what_it_deletes(root: Root,
                                                                 deb_n: Built) -> None:
    apt_install(root, deb_n)
    root.run("sukumo-reader demo --offline --pace 0 --dir /tmp/d && "
             "cp /tmp/d/state/events.sqlite3 /var/lib/sukumo-reader/events.sqlite3 && "
             "mkdir /var/lib/sukumo-reader/bundles", timeout=300)
    root.run("apt-get remove -y -q sukumo-reader")
    # Nothing left under /opt: not the byte-code postinst compiled, nor what root's
    # commands (the demo above) wrote.
    assert not root.host("/opt/sukumo-reader").exists()
    assert root.host("/var/lib/sukumo-reader/events.sqlite3").is_file()
    assert root.host("/etc/sukumo-reader/reader.toml").is_file()

    purge = root.run("apt-get purge -y -q sukumo-reader").stdout
    assert "deleted /etc/sukumo-reader" in purge
    assert "deleted /var/lib/sukumo-reader/bundles" in purge
    # The queue still holds the demo's unsent taps: purge keeps it and says so.
    assert "KEPT /var/lib/sukumo-reader/events.sqlite3" in purge
    assert root.host("/var/lib/sukumo-reader/events.sqlite3").is_file()
    assert not root.host("/etc/sukumo-reader").exists()


def queue_rows(root: Root) -> list[tuple[str, int, dict]]:
    with sqlite3.connect(root.host(QUEUE)) as db:
        rows = db.execute("SELECT id, seq, body FROM events ORDER BY seq").fetchall()
    return [(i, s, json.loads(b)) for i, s, b in rows]


def schema_version(root: Root) -> int:
    with sqlite3.connect(root.host(QUEUE)) as db:
        return int(db.execute("PRAGMA user_version").fetchone()[0])


def write_terminal_config(root: Root, broker: DevBroker) -> str:
    ident = broker.identity("t-demo-0001")
    tls = {name: root.put(path, f"{TERMINAL}/tls/{name}") for name, path in
           (("ca.crt", broker.ca_file), ("terminal.crt", ident.cert_file),
            ("terminal.key", ident.key_file))}
    issuer = json.loads(root.host(f"{TERMINAL}/dev-issuer/dev-issuer.json").read_text())
    config = root.host(f"{TERMINAL}/reader.toml")
    config.write_text(f"""[terminal]
id = "t-demo-0001"
muni = "{broker.muni}"
facility = "sukumo-sports-center"
[verify]
root_public_key = "{issuer['root_public_hex']}"
[paths]
state_dir = "{TERMINAL}/state"
[mqtt]
url = "{broker.url}"
ca_file = "{tls['ca.crt']}"
cert_file = "{tls['terminal.crt']}"
key_file = "{tls['terminal.key']}"
ack_timeout_s = 3.0
status_interval_s = 2.0
reconnect_min_s = 0.2
reconnect_max_s = 1.0
""")
    return f"{TERMINAL}/reader.toml"


def dpkg_install(root: Root, deb: Built) -> str:
    inside = root.put(deb.deb, f"/tmp/{deb.deb.name}")
    return root.run(f"dpkg -i {inside}").stdout


def test_upgrade_with_migration_keeps_every_tap_and_downgrade_refuses(
        root: Root, deb_n: Built, deb_n1: Built, tmp_path: Path) -> None:
    apt_install(root, deb_n)
    root.run(f"sukumo-reader demo --offline --pace 0 --dir {TERMINAL}", timeout=300)
    before = queue_rows(root)
    assert [seq for _, seq, _ in before] == list(range(1, 13))  # the demo tour's taps
    old_schema = schema_version(root)
    root.run("echo '# edited on site' >> /etc/sukumo-reader/reader.toml")

    # Upgrade N -> N+1 through dpkg; the maintainer scripts stop the service before the
    # new files land and start it once they are all there.
    calls = install_systemd_shim(root)
    out = dpkg_install(root, deb_n1)
    remove_systemd_shim(root)
    assert f"upgraded from {deb_n.version}" in out
    log = calls.read_text().splitlines()
    stop = next(i for i, line in enumerate(log) if line.startswith("deb-systemd-invoke stop"))
    start = next(i for i, line in enumerate(log) if line.startswith("deb-systemd-invoke start"))
    assert stop < start
    assert log[stop].endswith(f"sukumo-reader {deb_n.version}"), log  # old files, stopped
    assert log[start].endswith(f"sukumo-reader {deb_n1.version}"), log  # new files, started
    assert any("daemon-reload" in line for line in log[stop:start]), log
    assert root.run("sukumo-reader --version").stdout.strip() == \
        f"sukumo-reader {deb_n1.version}"
    assert "# edited on site" in root.host("/etc/sukumo-reader/reader.toml").read_text()

    broker = DevBroker(tmp_path / "broker").start()
    try:
        config = write_terminal_config(root, broker)
        summary = root.run(f"sukumo-reader --config {config} queue summary").stdout
        assert "10" in summary, summary
        assert schema_version(root) == old_schema + 1  # N+1 migrated the queue
        assert queue_rows(root) == before  # same ids, same seqs, same bodies

        # Downgrade to N: it must refuse the newer schema, clearly, and change nothing.
        dpkg_install(root, deb_n)
        refused = root.run(f"timeout 60 sukumo-reader --config {config} run", check=False)
        assert refused.returncode not in (0, 124, 70), refused.stdout + refused.stderr
        message = refused.stdout + refused.stderr
        assert "newer than this sukumo-reader knows" in message, message
        assert "Traceback" not in message
        # Not downgraded, not rewritten: N+1's schema and every tap are still there. (The
        # file's bytes may differ: opening a WAL database checkpoints its -wal file.)
        assert schema_version(root) == old_schema + 1
        assert queue_rows(root) == before

        # Back to N+1, and every tap reaches the city with its id and seq.
        dpkg_install(root, deb_n1)
        city = tmp_path / "city"
        receiver = ReceiverProc(broker, city, tmp_path)
        sync = root.popen(f"sukumo-reader --config {config} sync", tmp_path / "sync.log")
        try:
            def delivered() -> list[tuple[str, int]]:
                return receiver_query(city, "SELECT id::text, seq FROM city.events ORDER BY seq")
            wait_for(lambda: len(delivered()) == len(before), 60, "all taps at the city")
            assert delivered() == [(i, s) for i, s, _ in before]
            wait_for(lambda: not queue_rows(root), 30, "the queue emptied by the acks")

            def app_version() -> str | None:  # what the city sees (docs/fleet.md)
                rows = receiver_query(city, "SELECT app_version FROM city.terminals_v1")
                return rows[0][0] if rows else None
            wait_for(lambda: app_version() == deb_n1.version, 30, "the status with versions.app")
        finally:
            end_process(sync, timeout=15)
            receiver.stop()
        assert sync.returncode == 0, (tmp_path / "sync.log").read_text()
    finally:
        broker.stop()
