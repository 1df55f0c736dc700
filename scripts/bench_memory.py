"""The import floor of the daemon's memory: a bare python importing what the daemon imports.

The daemon's idle RSS is mostly its interpreter and the libraries it chose (pydantic,
cryptography, paho, cbor2, ALSA through ctypes …); what the project itself holds is the
difference to this floor (issue 13: 56.3 MB idle against a 52.5 MB floor). The module
list is the daemon's own: one idle `sukumo-reader run` with PYTHONPROFILEIMPORTTIME=1
reports every module it imported (on stderr, which Daemon sends to its log), and a
fresh python imports the same modules in the same order and reports its VmRSS, read the
same way as the daemon's (/proc/PID/status).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

from bench_terminal import Daemon, DaemonSetup

_IMPORT_LINE = re.compile(r"^import time:\s+\d+\s+\|\s+\d+\s+\|\s*(\S+)\s*$")
_FLOOR = """
import ctypes, gc, importlib, json, sys
missing = []
for name in json.loads(sys.stdin.read()):
    try:
        importlib.import_module(name)
    except Exception:
        missing.append(name)
# As the daemon does once started (reader/cli/run.py): freed start-up heap goes back to
# the kernel, or the floor would count glibc's retained free memory.
gc.collect()
ctypes.CDLL(None).malloc_trim(0)
rss = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS:"))
print(json.dumps({"rss_kb": rss, "missing": missing}))
"""


def daemon_modules(setup: DaemonSetup, settle_s: float = 3.0) -> list[str]:
    """Every module an idle daemon imported, in the order the imports finished."""
    log = setup.root / "importtime.log"
    os.environ["PYTHONPROFILEIMPORTTIME"] = "1"
    try:
        with Daemon(setup.config, log) as daemon:
            daemon.start()
            time.sleep(settle_s)  # the sync thread, the first status file, the sound device
    finally:
        del os.environ["PYTHONPROFILEIMPORTTIME"]
    names = []
    for line in log.read_text(errors="replace").splitlines():
        match = _IMPORT_LINE.match(line)
        if match and match.group(1) not in names:
            names.append(match.group(1))
    if not names:
        raise RuntimeError("the daemon reported no imports (PYTHONPROFILEIMPORTTIME)")
    return names


def _rss_after_importing(names: list[str]) -> tuple[float, int]:
    out = subprocess.run([sys.executable, "-c", _FLOOR], input=json.dumps(names),
                         capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    return result["rss_kb"] / 1024, len(names) - len(result["missing"])


def import_floor_mb(setup: DaemonSetup) -> dict[str, float | int]:
    """`rss_mb_import_floor`: every module the daemon imported, ours included, so what
    the daemon holds above it is its state (threads, buffers, caches, sound clips);
    `rss_mb_libraries_floor`: the same without reader.*, the dependencies alone."""
    names = daemon_modules(setup)
    floor, imported = _rss_after_importing(names)
    libraries = [n for n in names if n != "reader" and not n.startswith("reader.")]
    libraries_floor, _ = _rss_after_importing(libraries)
    return {"rss_mb_import_floor": floor, "rss_mb_libraries_floor": libraries_floor,
            "import_floor_modules": imported}
