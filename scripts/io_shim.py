"""An LD_PRELOAD shim over fsync/fdatasync: counts them, can make each one cost time (a
storage model), and can make them fail with EIO on one file (a failing SD card).

Built with the machine's C compiler on first use (`build(dir)`); the benchmarks
(scripts/bench_storage.py) and the storage tests (tests/disk_env.py) load it into a real
process through LD_PRELOAD. Controlled by the environment of that process:

- SUKUMO_SHIM_SYNC_DELAY_US: each fsync/fdatasync first sleeps this long, then syncs: a
  storage whose flush costs that much (an SD card's cache flush), whatever the disk here;
- SUKUMO_SHIM_EIO_WHEN: a path; while a file exists there, fsync/fdatasync of any file
  whose name ends with SUKUMO_SHIM_EIO_SUFFIX (default "-wal") fail with EIO and sync
  nothing, as a card that lost the write does (Linux: the pages are marked clean anyway);
- `sukumo_shim_syncs()` (ctypes) returns the calls so far, failed or not.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from pathlib import Path

SOURCE = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static unsigned long syncs;

unsigned long sukumo_shim_syncs(void) { return __atomic_load_n(&syncs, __ATOMIC_SEQ_CST); }

static int should_fail(int fd) {
    const char *when = getenv("SUKUMO_SHIM_EIO_WHEN");
    if (!when || access(when, F_OK) != 0) return 0;
    const char *suffix = getenv("SUKUMO_SHIM_EIO_SUFFIX");
    if (!suffix) suffix = "-wal";
    char link[64], target[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n <= 0) return 0;
    target[n] = 0;
    size_t s = strlen(suffix);
    return (size_t)n >= s && strcmp(target + n - s, suffix) == 0;
}

static int before(int fd) {
    __atomic_add_fetch(&syncs, 1, __ATOMIC_SEQ_CST);
    const char *delay = getenv("SUKUMO_SHIM_SYNC_DELAY_US");
    if (delay) {
        long us = atol(delay);
        struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
    }
    if (should_fail(fd)) { errno = EIO; return -1; }
    return 0;
}

int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    return before(fd) ? -1 : real(fd);
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    return before(fd) ? -1 : real(fd);
}
"""


def build(directory: Path) -> Path:
    """Compile the shim into `directory` (once); its path. RuntimeError without cc."""
    directory.mkdir(parents=True, exist_ok=True)
    lib = directory / "sukumo_io_shim.so"
    if lib.exists():
        return lib
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise RuntimeError("no C compiler (apt install gcc) to build the I/O shim")
    src = directory / "sukumo_io_shim.c"
    src.write_text(SOURCE)
    subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", str(lib), str(src), "-ldl"],
                   check=True, capture_output=True, timeout=60)
    return lib


def preload_env(lib: Path, **settings: str) -> dict[str, str]:
    """The environment of a child process running under the shim."""
    env = dict(os.environ, LD_PRELOAD=str(lib))
    env.update({f"SUKUMO_SHIM_{key.upper()}": value for key, value in settings.items()})
    return env


def syncs() -> int | None:
    """fsync + fdatasync calls of this process so far; None when not under the shim."""
    preload = os.environ.get("LD_PRELOAD", "")
    lib = next((p for p in preload.split(":") if p.endswith("sukumo_io_shim.so")), None)
    if lib is None:
        return None
    fn = ctypes.CDLL(lib).sukumo_shim_syncs
    fn.restype = ctypes.c_ulong
    return int(fn())
