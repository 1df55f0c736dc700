"""Files under the state directory belong to whoever owns the state directory.

The daemon runs as the service user; a technician runs the CLI as that user or with
sudo. A file root creates there (a bundle, the queue's -wal/-shm, the pseudonym secret)
would be one the daemon can read but never replace, so everything written under the
state directory is handed to the directory's owner, and when that is impossible (an
unprivileged caller who does not own the place) the caller is told the command to run.
"""

from __future__ import annotations

import os
from pathlib import Path


def owner_of(state_dir: Path) -> tuple[int, int]:
    """(uid, gid) of the state directory (its nearest existing ancestor if not made yet)."""
    path = Path(state_dir)
    while not path.exists() and path != path.parent:
        path = path.parent
    info = path.stat()
    return info.st_uid, info.st_gid


def adopt(path: Path, state_dir: Path) -> None:
    """Give `path` to the state directory's owner when we are root (a no-op otherwise:
    an unprivileged caller's files are already its own)."""
    if os.geteuid() != 0:
        return
    uid, gid = owner_of(state_dir)
    info = os.lstat(path)
    if (info.st_uid, info.st_gid) != (uid, gid):
        os.chown(path, uid, gid, follow_symlinks=False)


def repair_command(state_dir: Path) -> str:
    """What a technician runs to give the state directory back to its owner."""
    uid, _ = owner_of(state_dir)
    try:
        import pwd

        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = str(uid)
    return f"sudo chown -R {name}: {state_dir}"
