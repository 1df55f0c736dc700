"""A small real file system to fill: a tmpfs of a few MiB, and a ballast file that takes
every free byte of it (the tests run as root; elsewhere they are skipped, not faked)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import io_shim as shim
from io_shim import preload_env  # noqa: F401  (for the tests)


@contextlib.contextmanager
def mounted_tmpfs(tmp_path: Path, size_mib: int) -> Iterator[Path]:
    mount_point = tmp_path / "tmpfs"
    mount_point.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mib}m", "tmpfs",
                        str(mount_point)], check=True, capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot mount a {size_mib} MiB tmpfs here (needs root / "
                    f"CAP_SYS_ADMIN): {exc}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False, timeout=10)


def fill_disk(directory: Path) -> Path:
    """Take every free byte of the file system with a ballast file."""
    ballast = directory / "ballast"
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 4096)
    finally:
        os.close(fd)
    return ballast


def io_shim(directory: Path) -> Path:
    """The LD_PRELOAD shim over fsync/fdatasync (scripts/io_shim.py), built with cc;
    skipped (not faked) where there is no C compiler."""
    try:
        return shim.build(directory)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot build the I/O shim: {exc}")
