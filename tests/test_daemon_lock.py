"""One daemon per terminal (issue 22 item 1, issue 21 item 9), with real daemons.

A second `run` on the same state directory is refused (exit 2) naming the pid that holds
it, in the technician's language; the city link alone (`sync`) is refused the same way;
`bundle import` says the daemon takes the bundle at its next start; after a SIGKILL the
next daemon starts (flock: no stale lock); `tap` refuses without --force while the
daemon reads the reader, and `sound test` warns. The lock file works for the service
user after root held it, and root is refused while the service user's daemon holds it.
A daemon of another state directory on the same reader is refused too (the reader's own
lock in /run/lock, reader/transports/claim.py), and so is a `tap` without --force.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import service_user as users
from daemon_env import DaemonProc, Deployment, language_env, run_cli
from service_user import ServiceUser

from reader.terminal.lock import LOCK_FILE, DaemonLock, holder

pytestmark = pytest.mark.timeout(120)
unprivileged_user = users.unprivileged_user  # fixture
shared_dir = users.shared_dir  # fixture


@pytest.fixture
def dep(tmp_path: Path) -> Deployment:
    return Deployment(tmp_path)


def test_a_second_run_is_refused_naming_the_first_and_records_nothing(dep: Deployment) -> None:
    first = DaemonProc(dep).wait_ready()
    try:
        second = run_cli("--config", str(dep.config), "run", env=language_env("C.UTF-8"))
        assert second.returncode == 2, second.stderr
        assert f"pid {first.proc.pid}" in second.stderr
        assert "already runs" in second.stderr and "systemctl stop" in second.stderr
        assert "Traceback" not in second.stderr

        ja = run_cli("--config", str(dep.config), "run", env=language_env("ja_JP.UTF-8"))
        assert ja.returncode == 2
        assert str(first.proc.pid) in ja.stderr and "既に" in ja.stderr, ja.stderr

        sync = run_cli("--config", str(dep.config), "sync")  # the same client id
        assert sync.returncode == 2 and str(first.proc.pid) in sync.stderr, sync.stderr

        # A bundle imported by hand is saved; the running daemon takes it at its restart.
        bundle = dep.root / "denylist.cose"
        bundle.write_bytes(dep.issuer.denylist_bundle(version=2))
        imported = run_cli("--config", str(dep.config), "bundle", "import", str(bundle))
        assert imported.returncode == 0, imported.stdout + imported.stderr
        assert f"pid {first.proc.pid}" in imported.stdout and "restart" in imported.stdout

        # The first daemon never noticed: one card, one event.
        first.feed(dep.issuer.issue_card("M00000001", os.urandom(8)))
        first.wait_taps(1)
    finally:
        assert first.terminate() == 0
    assert len(dep.events()) == 1
    assert holder(dep.state) is None  # released on a clean stop


def test_another_state_directory_on_the_same_reader_is_refused(tmp_path: Path) -> None:
    first_dep = Deployment(tmp_path / "a")
    other = Deployment(tmp_path / "b", tid="t-daemon-0002", issuer=first_dep.issuer)
    other.feed = first_dep.feed  # a second configuration naming the same reader
    other.write_config()
    first = DaemonProc(first_dep).wait_ready()
    try:
        second = run_cli("--config", str(other.config), "run", env=language_env("C.UTF-8"))
        assert second.returncode == 2, second.stderr
        assert f"pid {first.proc.pid}" in second.stderr and str(first_dep.feed) in second.stderr
        assert "Traceback" not in second.stderr

        ja = run_cli("--config", str(other.config), "run", env=language_env("ja_JP.UTF-8"))
        assert ja.returncode == 2 and f"pid {first.proc.pid}" in ja.stderr, ja.stderr
        assert "別の" in ja.stderr, ja.stderr

        tap = run_cli("--config", str(other.config), "tap", "--timeout", "0.5")
        assert tap.returncode == 2 and f"pid {first.proc.pid}" in tap.stderr, tap.stderr

        first.feed(first_dep.issuer.issue_card("M00000001", os.urandom(8)))
        first.wait_taps(1)
    finally:
        assert first.terminate() == 0
    # One card, one event, in the terminal that holds the reader.
    assert len(first_dep.events()) == 1 and other.events() == []
    # Released with the daemon: the other configuration may now read the reader.
    alone = run_cli("--config", str(other.config), "tap", "--timeout", "0.3")
    assert alone.returncode == 3, alone.stdout + alone.stderr


def test_a_killed_daemon_leaves_no_stale_lock(dep: Deployment) -> None:
    first = DaemonProc(dep).wait_ready()
    assert holder(dep.state) == first.proc.pid
    first.kill()  # SIGKILL: no clean-up ran
    assert holder(dep.state) is None
    second = DaemonProc(dep).wait_ready()
    try:
        assert holder(dep.state) == second.proc.pid
    finally:
        assert second.terminate() == 0


def test_tap_refuses_while_the_daemon_reads_the_reader(dep: Deployment) -> None:
    daemon = DaemonProc(dep).wait_ready()
    try:
        tap = run_cli("--config", str(dep.config), "tap", "--timeout", "0.3")
        assert tap.returncode == 2, tap.stdout + tap.stderr
        assert f"pid {daemon.proc.pid}" in tap.stderr and "--force" in tap.stderr
        assert "waiting" not in tap.stdout  # it never opened the reader

        ja = run_cli("--config", str(dep.config), "tap", "--timeout", "0.3",
                     env=language_env("ja_JP.UTF-8"))
        assert ja.returncode == 2 and "--force" in ja.stderr and "停止" in ja.stderr, ja.stderr

        forced = run_cli("--config", str(dep.config), "tap", "--timeout", "0.3", "--force")
        assert forced.returncode == 3, forced.stdout + forced.stderr  # no card came
        assert str(daemon.proc.pid) in forced.stderr  # and it was warned

        sound = run_cli("--config", str(dep.config), "sound", "test", "accepted")
        assert f"pid {daemon.proc.pid}" in sound.stderr, sound.stdout + sound.stderr
    finally:
        assert daemon.terminate() == 0
    # Without a daemon, tap does not complain.
    alone = run_cli("--config", str(dep.config), "tap", "--timeout", "0.3")
    assert alone.returncode == 3 and "daemon" not in alone.stderr, alone.stderr


def _in_child_as(user: ServiceUser, state: Path) -> int:
    """Try the lock as `user` in a forked child: 0 taken (and held until the child's
    exit), 2 refused, 1 anything else."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setgroups([])
            os.setgid(user.gid)
            os.setuid(user.uid)
            try:
                DaemonLock.acquire(state)
                code = 0
            except Exception as exc:
                code = 2 if type(exc).__name__ == "TerminalBusyError" else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_service_user_and_root_share_one_lock(unprivileged_user: ServiceUser,
                                              shared_dir: Path) -> None:
    state = shared_dir / "state"
    state.mkdir()
    os.chown(state, unprivileged_user.uid, unprivileged_user.gid)
    # Root ran `run` by hand first: the file it made is handed to the service user.
    with DaemonLock.acquire(state):
        assert _in_child_as(unprivileged_user, state) == 2  # refused while root holds it
    assert (state / LOCK_FILE).stat().st_uid == unprivileged_user.uid
    assert _in_child_as(unprivileged_user, state) == 0
    # A root-owned lock file the service user may not write still locks (read-only flock).
    os.chown(state / LOCK_FILE, 0, 0)
    assert _in_child_as(unprivileged_user, state) == 0
    with DaemonLock.acquire(state):
        assert _in_child_as(unprivileged_user, state) == 2


def test_the_reader_lock_never_follows_a_planted_link(tmp_path: Path) -> None:
    # /run/lock is world-writable: a local user may plant a link where the lock goes, for
    # root's `run` to truncate its target. The lock is not taken through it (the loop
    # reads on, unclaimed, with a warning) and the target is untouched.
    from reader.errors import ReaderBusyError
    from reader.transports import claim

    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    claim.lock_path("pcsc:Planted", tmp_path).symlink_to(victim)
    assert claim.claim("pcsc:Planted", tmp_path) is None
    assert victim.read_text() == "precious\n"

    held = claim.claim("pcsc:Reader 00 00", tmp_path)
    assert held is not None
    assert claim.lock_path("pcsc:Reader 00 00", tmp_path).stat().st_mode & 0o777 == 0o666
    with pytest.raises(ReaderBusyError) as refused:
        claim.claim("pcsc:Reader 00 00", tmp_path)
    assert refused.value.pid == os.getpid() and "Reader 00 00" in str(refused.value)
    held.release()
    again = claim.claim("pcsc:Reader 00 00", tmp_path)
    assert again is not None
    again.release()
