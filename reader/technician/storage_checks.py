"""doctor's checks of what the terminal keeps: bundles, the state directory, disk, queue.

Plain functions returning a Check, like the rest of doctor (doctor.py runs them in order).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import grp
import json
import os
import pwd
import shutil
import stat
import time
from pathlib import Path

from reader.config import Settings
from reader.errors import SukumoError
from reader.system.i18n import _
from reader.technician.check import Check

BUNDLE_MAX_AGE_DAYS = 14
DISK_MIN_FREE_MB = 200
BUNDLES = ("trust.cbor", "denylist.cbor")


def check_bundles(settings: Settings, now: float | None = None) -> Check:
    now = time.time() if now is None else now
    folder = settings.paths.bundle_dir
    missing = [name for name in BUNDLES if not (folder / name).is_file()]
    advice = _("bundles arrive from the broker on connect (check 'broker'); offline, import "
               "them from the city's USB stick: `sukumo-reader bundle import FILE`")
    if missing:
        return Check("bundles", False, _("missing in {folder}: {files}").format(
            folder=folder, files=", ".join(missing)), advice)
    ages = {name.removesuffix(".cbor"): (now - (folder / name).stat().st_mtime) / 86400
            for name in BUNDLES}
    detail = _("trust {trust} days old, denylist {denylist} days old").format(
        **{kind: f"{age:.1f}" for kind, age in ages.items()})
    if max(ages.values()) > BUNDLE_MAX_AGE_DAYS:
        return Check("bundles", False, detail, advice)
    behind = _stored_behind_in_force(settings)
    if behind:
        return Check("bundles", False, _("in force but not stored: {bundles}").format(
                         bundles=behind),
                     _("after a restart the older stored bundle would be in force again: "
                       "fix 'state directory', then import the bundle again"))
    return Check("bundles", True, detail)


def _stored_behind_in_force(settings: Settings) -> str:
    """Which bundle the running daemon holds in a newer version than is on disk."""
    from reader.bundles.files import stored_version

    try:
        status = json.loads(settings.paths.status_file.read_text())
        in_force = status["versions"] if status.get("running") else {}
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    behind = []
    for kind in ("trust", "denylist", "config"):
        held = in_force.get(kind)
        stored = stored_version(settings.paths.bundle_dir / f"{kind}.cbor")
        if isinstance(held, int) and held > stored:
            behind.append(_("{bundle} version {held} (stored: {stored})").format(
                bundle=kind, held=held, stored=stored or _("none")))
    return ", ".join(behind)


def check_state_writable(settings: Settings, service_user: str | None) -> Check:
    """Everything under the state directory must be writable by the daemon's user: a file
    it can read but not replace (a bundle root imported) fails only at the next write."""
    from reader.system.ownership import repair_command

    folder = settings.paths.state_dir
    if not folder.is_dir():
        return Check("state directory", False, _("{path} does not exist").format(path=folder),
                     _("run `sukumo-reader provision` (it creates it)"))
    try:
        user = pwd.getpwnam(service_user) if service_user else pwd.getpwuid(os.geteuid())
    except KeyError:
        return Check("state directory", False,
                     _("service user {user} does not exist").format(user=repr(service_user)),
                     _("run scripts/install.sh (it creates the user), or pass --user"))
    groups = {user.pw_gid, *(g.gr_gid for g in grp.getgrall() if user.pw_name in g.gr_mem)}
    bad = [p for p in [folder, *sorted(folder.rglob("*"))]
           if not _writable_by(p, user.pw_uid, groups)]
    if bad:
        shown = ", ".join(f"{p} ({user_of(p.lstat().st_uid)})" for p in bad[:3])
        if len(bad) > 3:
            shown = _("{files} and {n} more").format(files=shown, n=len(bad) - 3)
        return Check("state directory", False,
                     _("not writable by {user}: {files}").format(user=user.pw_name, files=shown),
                     _("give it back to the service: `{command}`").format(
                         command=repair_command(folder)))
    return Check("state directory", True, _("{path}: all writable by {user}").format(
        path=folder, user=user.pw_name))


def _writable_by(path: Path, uid: int, groups: set[int]) -> bool:
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode):
        return info.st_uid == uid
    mode = info.st_mode
    if info.st_uid == uid:
        return bool(mode & stat.S_IWUSR)
    if info.st_gid in groups:
        return bool(mode & stat.S_IWGRP)
    return bool(mode & stat.S_IWOTH)


def check_disk(settings: Settings, min_free_mb: int = DISK_MIN_FREE_MB) -> Check:
    folder = settings.paths.state_dir
    if not folder.is_dir():
        return Check("disk", False,
                     _("state directory {path} does not exist").format(path=folder),
                     _("run `sukumo-reader provision` (it creates it)"))
    usage = shutil.disk_usage(folder)
    free_mb = usage.free // 2**20
    detail = _("{free} MiB free of {total} MiB at {path}").format(
        free=free_mb, total=usage.total // 2**20, path=folder)
    if free_mb < min_free_mb:
        return Check("disk", False, detail,
                     _("free space: `journalctl --vacuum-size=50M`, remove old files; the "
                       "queue needs room to keep taps while offline"))
    return Check("disk", True, detail)


def check_queue(settings: Settings, now: dt.datetime | None = None) -> Check:
    path = settings.paths.database
    if not path.exists():
        from reader.queue.seqmark import mark_path

        if not mark_path(path).exists():  # the mark outlives the file: a first start
            return Check("queue", True, _("no taps recorded yet"))
        return Check("queue", False,
                     _("{path} is missing where a queue existed (its seq mark {mark} is "
                       "there)").format(path=path, mark=mark_path(path)),
                     _("start the daemon (it starts a fresh queue, seq continuing above the "
                       "mark); look for where the file went; call the city support"))
    try:
        from reader.queue import EventQueue

        # on_corrupt="raise": a technician tool never moves the daemon's file aside.
        with EventQueue.open(path, warn_mb=settings.queue.warn_mb,
                             budget_mb=settings.queue.budget_mb, on_corrupt="raise",
                             create=False) as queue:
            summary = queue.summary()
    except (SukumoError, ImportError) as exc:
        return Check("queue", False, _("{path}: {error}").format(path=path, error=exc),
                     _("see `sukumo-reader queue summary`; keep the file, call the city "
                       "support"))
    pending, rejected = summary.pending, summary.rejected  # pending includes in flight
    oldest = summary.oldest_at
    detail = _("{pending} waiting, {rejected} rejected, oldest {oldest}").format(
        pending=pending, rejected=rejected, oldest=oldest or "-")
    alarms = list(getattr(summary, "alarms", []) or [])
    if alarms or summary.over_warn:
        why = "; ".join(map(str, alarms)) or _("database over {mb} MiB").format(
            mb=settings.queue.warn_mb)
        return Check("queue", False, _("{detail}; {why}").format(detail=detail, why=why),
                     _("see `sukumo-reader queue summary`; check 'broker' so the backlog "
                       "drains"))
    if oldest and _age_days(oldest, now) > 1:
        return Check("queue", False,
                     _("{detail} (not draining for over a day)").format(detail=detail),
                     _("the terminal cannot deliver taps: fix 'broker', then watch `status`"))
    return Check("queue", True, detail)


def _age_days(rfc3339: str, now: dt.datetime | None) -> float:
    try:
        then = dt.datetime.fromisoformat(rfc3339.replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    return ((now or dt.datetime.now(dt.UTC)) - then).total_seconds() / 86400


def user_of(uid: int) -> str:
    with contextlib.suppress(KeyError):
        return pwd.getpwuid(uid).pw_name
    return str(uid)
