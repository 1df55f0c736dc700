"""The city's Debian package for real: built by scripts/build-city-deb, installed with apt
into a minimal Debian 12 root without a compiler (tests/deb_env.py), its unit checked by
systemd-analyze, and its venv migrating a real PostgreSQL (tests/pg_env.py).

One build and one installed root serve every test here; the build and mmdebstrap run side
by side. As tests/test_deb.py: only as root with SUKUMO_TEST_DEB=1 (.ci/run sets it);
elsewhere skipped, not faked. The figures (build, install, size) are printed.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from deb_env import (
    REPO,
    Built,
    Root,
    build_deb,
    install_systemd_shim,
    make_base_root,
    remove_systemd_shim,
)
from mqtt_env import (
    SyncProc,
    append_events,
    assert_stored_once,
    city_config,
    receiver_query,
    terminal_settings,
)
from pg_env import PgDatabase, pg, pg_cluster  # noqa: F401
from test_city_unit import INSTALLED_BINARY, exposure, verify
from waiting import end_process, wait_for

from reader.devtools.broker import DevBroker

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(1800),
    pytest.mark.skipif(os.environ.get("SUKUMO_TEST_DEB") != "1" or os.geteuid() != 0
                       or not shutil.which("mmdebstrap"),
                       reason="builds and installs the .deb: set SUKUMO_TEST_DEB=1, as root, "
                              "with mmdebstrap (scripts/bootstrap.sh)"),
]

FIGURES: dict[str, str] = {}
CONFIG = "/etc/sukumo-city/city.toml"


class Installed:
    def __init__(self, root: Root, deb: Built, apt_output: str) -> None:
        self.root, self.deb, self.apt_output = root, deb, apt_output


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    work = tmp_path_factory.mktemp("city-deb")
    tarball = work / "bookworm.tar"
    with ThreadPoolExecutor(2) as pool:
        built = pool.submit(build_deb, REPO, work / "dist", "build-city-deb")
        debootstrap = pool.submit(make_base_root, tarball)
        deb = built.result()
        FIGURES["mmdebstrap"] = f"{debootstrap.result():.0f} s"
    FIGURES["build"] = f"{deb.seconds:.0f} s (beside mmdebstrap)"
    FIGURES["package"] = f"{deb.deb.name}, {deb.deb.stat().st_size / 2**20:.1f} MiB"
    root = Root.unpack(tarball, work / "root")
    try:
        assert root.compilers() == []
        inside = root.put(deb.deb, f"/tmp/{deb.deb.name}")
        start = time.monotonic()
        out = root.run(f"apt-get update -q && apt-get install -y -q {inside}", timeout=1200)
        FIGURES["apt-get install (clean root)"] = f"{time.monotonic() - start:.0f} s"
        yield Installed(root, deb, out.stdout + out.stderr)
    finally:
        root.close()


@pytest.fixture(scope="module", autouse=True)
def print_figures(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if FIGURES:
        capman = request.config.pluginmanager.getplugin("capturemanager")
        with capman.global_and_fixture_disabled():
            print("\n[city deb figures] " + "; ".join(f"{k}: {v}" for k, v in FIGURES.items()))


def test_lintian_is_clean(installed: Installed) -> None:
    """No error or warning beyond those sukumo-city.lintian-overrides explains."""
    result = subprocess.run(["lintian", "--fail-on", "error,warning", str(installed.deb.deb)],
                            capture_output=True, text=True, timeout=600)
    tags = [line for line in result.stdout.splitlines() if line[:2] in ("E:", "W:")]
    assert result.returncode == 0 and tags == [], result.stdout + result.stderr


def test_installed_without_a_compiler_and_it_runs(installed: Installed) -> None:
    root = installed.root
    assert root.compilers() == [], "the package pulled a compiler in"
    help_text = root.run("sukumo-city --help").stdout
    assert "migrate" in help_text and "run" in help_text, help_text
    japanese = root.run("LANG=ja_JP.UTF-8 sukumo-city --help").stdout
    assert japanese.startswith("使い方: "), japanese
    # Everything `run` imports is in the venv (psycopg with its libpq, the pool, the
    # metrics, PKCS#11); the terminal's hardware libraries are not.
    venv_python = "/opt/sukumo-city/bin/python"
    root.run(f"{venv_python} -c 'import city.intake, city.bundles, city.db, psycopg_pool, "
             "prometheus_client, pkcs11; import psycopg; assert psycopg.pq.__impl__ == \"binary\"'")
    absent = root.run(f"{venv_python} -c 'import smartcard'", check=False)
    assert absent.returncode != 0
    assert not root.host("/opt/sukumo-city/bin/sukumo-reader").exists()
    assert not root.host("/opt/sukumo-city/bin/pip").exists()

    # Installed, not started: the shipped city.toml loads and names what is missing.
    assert "Next: set [database] dsn" in installed.apt_output, installed.apt_output
    unconfigured = root.run("sukumo-city migrate", check=False)
    assert unconfigured.returncode == 2, unconfigured
    assert "database.dsn is empty" in unconfigured.stderr
    assert "Traceback" not in unconfigured.stderr
    assert not list(root.host("/etc/systemd/system").glob("*/sukumo-city*")), \
        "an instance was enabled before the database was configured"


def test_user_conffile_and_unit_where_the_docs_say(installed: Installed) -> None:
    root = installed.root
    passwd = root.run("getent passwd sukumo-city").stdout.split(":")
    assert passwd[6].strip() == "/usr/sbin/nologin" and int(passwd[2]) < 1000  # system user
    conffiles = root.run("dpkg-query -W -f='${Conffiles}' sukumo-city").stdout
    assert CONFIG in conffiles
    for path, mode in (("/etc/sukumo-city", 0o750), (CONFIG, 0o640)):
        st = root.host(path).stat()
        assert stat.S_IMODE(st.st_mode) == mode, path
        assert st.st_uid == 0
        assert root.run(f"stat -c %G {path}").stdout.strip() == "sukumo-city"
    # The service user reads the settings (and cannot write them).
    reads = root.run(f"runuser -u sukumo-city -- sukumo-city --config {CONFIG} migrate",
                     check=False)
    assert reads.returncode == 2 and "database.dsn is empty" in reads.stderr, reads
    assert root.host("/lib/systemd/system/sukumo-city@.service").is_file()
    assert root.host("/usr/lib/sysusers.d/sukumo-city.conf").is_file()
    assert root.host("/opt/sukumo-city/docs/city.md").is_file()
    assert root.host("/usr/share/man/man1/sukumo-city.1.gz").is_file()


def test_installed_unit_is_valid_and_hardened(installed: Installed, tmp_path: Path) -> None:
    unit = installed.root.host("/lib/systemd/system/sukumo-city@.service").read_text()
    assert INSTALLED_BINARY in unit
    verify(unit, tmp_path / "verify")
    level = exposure(unit, tmp_path / "security")
    FIGURES["systemd-analyze security"] = f"{level}"
    assert level <= 2.0


def test_installed_venv_migrates_a_real_postgresql(installed: Installed,
                                                    pg: PgDatabase) -> None:  # noqa: F811
    root = installed.root
    env = f"SUKUMO_CITY_DATABASE__DSN='{pg.dsn}'"
    first = root.run(f"{env} sukumo-city migrate --pre")
    assert "applied: 0001_pre_initial" in first.stdout, first.stdout
    again = root.run(f"{env} sukumo-city migrate")
    assert "the schema is up to date" in again.stdout, again.stdout
    # Every migration the package carries, once (all are `pre` ones today).
    from city.db import migrations

    assert pg.query("SELECT name FROM city.migrations ORDER BY name") == [
        (name,) for name, _phase in migrations()]
    # What `run` does every hour, and a town, as the service user would.
    maintained = root.run(f"{env} runuser -u sukumo-city -- sukumo-city maintain")
    assert "partitions made:" in maintained.stdout, maintained.stdout
    root.run(f"{env} sukumo-city add-town 392081")
    assert pg.query("SELECT 1 FROM pg_roles WHERE rolname = 'town_392081'") == [(1,)]


def test_two_installed_instances_share_a_terminals_taps(installed: Installed,
                                                        tmp_path: Path) -> None:
    """Two instances of the installed program, as the template runs them (the service
    user, /etc/sukumo-city/city.toml, one client id each from the environment), receive
    one terminal's taps through a real mosquitto with TLS: each tap stored once, acked,
    and both instances did their share."""
    root = installed.root
    broker = DevBroker(tmp_path / "broker").start()
    procs = []
    try:
        city_db = tmp_path / "city"
        config = city_config(broker, city_db, tmp_path / "city.toml")
        ident = broker.receiver
        for path in (broker.ca_file, ident.cert_file, ident.key_file):
            root.put(Path(path), str(path))  # the same paths inside the root
            root.run(f"chown root:sukumo-city {path} && chmod 0640 {path}")
        root.put(config, CONFIG)
        root.run(f"chown root:sukumo-city {CONFIG} && chmod 0640 {CONFIG}")
        for n in (1, 2):
            # What sukumo-city@N.service runs (setpriv: exec, so the pid is the program's).
            procs.append(root.popen(
                f"env SUKUMO_CITY_MQTT__CLIENT_ID=city-test-{n} setpriv --reuid=sukumo-city "
                f"--regid=sukumo-city --init-groups sukumo-city run --ready-file /tmp/ready-{n}",
                tmp_path / f"city-{n}.log"))
        for n in (1, 2):
            wait_for(root.host(f"/tmp/ready-{n}").exists, 30, f"instance {n} subscribed")

        settings = terminal_settings(broker, tmp_path / "t1", batch_max_events=10)
        ids = append_events(settings.paths.database, 200)
        sync = SyncProc(settings, tmp_path / "sync.log")
        try:
            copies = assert_stored_once(city_db, ids, settings.paths.database, timeout=60)
            assert set(copies.values()) == {1}
        finally:
            sync.stop()
        by = dict(receiver_query(city_db, "SELECT receiver, count(*) FROM city.events "
                                          "GROUP BY 1"))
        assert set(by) == {"city-test-1", "city-test-2"}, by
    finally:
        for proc in procs:
            end_process(proc, timeout=15)
        broker.stop()
    for n, proc in enumerate(procs, 1):
        log = (tmp_path / f"city-{n}.log").read_text()
        assert proc.returncode == 0 and "Traceback" not in log, log


def systemd_calls(root: Root, command: str) -> tuple[str, list[str]]:
    """`command` run with systemd's stand-in (tests/deb_env.py); its output and the
    systemctl calls the maintainer scripts made."""
    log = install_systemd_shim(root)
    log.unlink(missing_ok=True)
    try:
        out = root.run(command)
    finally:
        remove_systemd_shim(root)
    calls = log.read_text().splitlines() if log.exists() else []
    return out.stdout + out.stderr, [c.split(" | ")[0] for c in calls]


def test_reinstall_reloads_systemd_restarts_nothing_and_says_the_upgrade_order(
        installed: Installed) -> None:
    root = installed.root
    root.run(f"echo '# edited on site' >> {CONFIG}")
    out, calls = systemd_calls(root, f"dpkg -i /tmp/{installed.deb.deb.name}")
    assert "systemctl --system daemon-reload" in calls, calls
    assert not [c for c in calls if " start" in c or "restart" in c], calls
    assert f"upgraded from {installed.deb.version}" in out, out
    assert "migrate --pre" in out, out
    assert "# edited on site" in root.host(CONFIG).read_text()  # a conffile: kept


def test_remove_stops_the_instances_and_purge_deletes_the_settings(
        installed: Installed) -> None:
    root = installed.root
    wants = root.host("/etc/systemd/system/multi-user.target.wants")
    wants.mkdir(parents=True, exist_ok=True)
    (wants / "sukumo-city@1.service").symlink_to("/lib/systemd/system/sukumo-city@.service")
    # dpkg itself: apt runs it with a PATH (Dpkg::Path) that skips the stand-in.
    _, calls = systemd_calls(root, "dpkg --remove sukumo-city")
    assert "deb-systemd-invoke stop sukumo-city@*.service" in calls, calls
    assert calls[-1] == "systemctl --system daemon-reload", calls
    assert not root.host(INSTALLED_BINARY).exists()
    assert root.host(CONFIG).is_file()  # remove keeps the settings
    out, _ = systemd_calls(root, "dpkg --purge sukumo-city")
    assert "deleted /etc/sukumo-city" in out and "the database was not touched" in out
    assert not root.host("/etc/sukumo-city").exists()
    assert not (wants / "sukumo-city@1.service").is_symlink()
