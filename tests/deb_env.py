"""Helpers for tests/test_deb.py: build the package, and a clean Debian 12 root to put it in.

The root is made by mmdebstrap from Debian's own packages (variant `apt`: the essential
set and apt, no compiler), once per test module, and unpacked afresh for each test. No
systemd runs inside: policy-rc.d forbids starting services, and only /proc and /dev are
bound in.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHROOT_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
              "HOME": "/root", "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"}
COMPILERS = ("gcc", "cc", "c++", "clang", "x86_64-linux-gnu-gcc", "aarch64-linux-gnu-gcc")
SKIP_COPY = {".venv", ".tools", ".git", "dist", "__pycache__", ".pytest_cache",
             ".mypy_cache", ".ruff_cache"}

# The schema migration that version N+1 carries: injected into a copy of the source at
# build time (the real queue has no such version). It changes `events` itself, the
# table that holds the taps, so a migration that lost or renumbered them would show.
TEST_MIGRATION = """    # One version more (a test build of tests/deb_env.py): it alters events.
    [
        "ALTER TABLE events ADD COLUMN upgrade_probe TEXT",
        "CREATE TABLE upgrade_probe (n INTEGER PRIMARY KEY, note TEXT NOT NULL)",
        "INSERT INTO upgrade_probe (n, note) VALUES (4, 'migrated by the N+1 package')",
    ],
]

SCHEMA_VERSION = len(MIGRATIONS)"""


@dataclass
class Built:
    deb: Path
    version: str
    seconds: float
    output: str  # what scripts/build-deb printed


def build_deb(source: Path, out: Path, script: str = "build-deb") -> Built:
    """scripts/build-deb (or `script`: build-city-deb) of `source`, as a developer runs
    it; the .deb it made."""
    start = time.monotonic()
    result = subprocess.run([str(source / "scripts" / script), "--out", str(out)],
                            capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, result.stdout + result.stderr
    seconds = time.monotonic() - start
    match = re.search(r"built (\S+\.deb)", result.stdout)
    assert match, result.stdout
    deb = Path(match.group(1))
    version = deb.name.split("_")[1]
    return Built(deb, version, seconds, result.stdout)


def copy_source(dest: Path) -> Path:
    shutil.copytree(REPO, dest, ignore=lambda _d, names: [n for n in names if n in SKIP_COPY])
    return dest


def bump_with_migration(src: Path) -> str:
    """Turn a source copy into version N+1 with TEST_MIGRATION; the new version."""
    pyproject = src / "pyproject.toml"
    text = pyproject.read_text()
    old = re.search(r'^version = "(\d+)\.(\d+)\.(\d+)"$', text, re.M)
    assert old, "pyproject.toml has no x.y.z version"
    new = f"{old.group(1)}.{old.group(2)}.{int(old.group(3)) + 1}"
    pyproject.write_text(text.replace(old.group(0), f'version = "{new}"', 1))
    init = src / "reader" / "__init__.py"
    init.write_text(re.sub(r'^__version__ = ".*"$', f'__version__ = "{new}"',
                           init.read_text(), flags=re.M))
    schema = src / "reader" / "queue" / "schema.py"
    code = schema.read_text()
    anchor = "]\n\nSCHEMA_VERSION = len(MIGRATIONS)"
    assert anchor in code, "reader/queue/schema.py changed shape: update TEST_MIGRATION"
    schema.write_text(code.replace(anchor, TEST_MIGRATION, 1))
    changelog = src / "debian" / "changelog"
    entry = (f"sukumo-reader ({new}) bookworm; urgency=medium\n\n"
             "  * Test build: one more queue schema version (tests/deb_env.py).\n\n"
             " -- Sukumo City ID service <sukumo-id@city.sukumo.kochi.jp>  "
             "Tue, 01 Dec 2026 10:00:00 +0000\n\n")
    changelog.write_text(entry + changelog.read_text())
    return new


_made_roots: list[Path] = []  # tarballs made in this test session, reused by later modules


def make_base_root(tarball: Path) -> float:
    """A minimal Debian 12 root as a tarball; seconds it took. mmdebstrap runs once per
    test session (a minute or two from the mirror): a later module gets a copy of the
    same tarball, which every test unpacks afresh anyway."""
    start = time.monotonic()
    made = next((t for t in _made_roots if t.is_file()), None)
    if made is not None:
        shutil.copyfile(made, tarball)
        return time.monotonic() - start
    result = subprocess.run(["mmdebstrap", "--variant=apt", "--quiet", "bookworm",
                             str(tarball)], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    _made_roots.append(tarball)
    return time.monotonic() - start


@dataclass
class Root:
    """An unpacked root with /proc and /dev bound in; `run` is `chroot root sh -c`."""

    path: Path
    mounts: list[Path] = field(default_factory=list)

    @classmethod
    def unpack(cls, tarball: Path, path: Path) -> Root:
        path.mkdir(parents=True)
        subprocess.run(["tar", "-C", str(path), "-xf", str(tarball)], check=True)
        root = cls(path)
        policy = path / "usr" / "sbin" / "policy-rc.d"
        policy.write_text("#!/bin/sh\n# tests: no service starts in this root\nexit 101\n")
        policy.chmod(0o755)
        for target, args in (("dev", ["--bind", "/dev"]), ("proc", ["-t", "proc", "proc"])):
            subprocess.run(["mount", *args, str(path / target)], check=True)
            root.mounts.append(path / target)
        return root

    def run(self, command: str, *, timeout: float = 600, check: bool = True,
            ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(["chroot", str(self.path), "sh", "-c", command],
                                capture_output=True, text=True, timeout=timeout,
                                env=CHROOT_ENV, stdin=subprocess.DEVNULL, cwd="/")
        if check:
            assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
        return result

    def popen(self, command: str, log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            return subprocess.Popen(["chroot", str(self.path), "sh", "-c", f"exec {command}"],
                                    stdout=out, stderr=out, env=CHROOT_ENV, cwd="/",
                                    stdin=subprocess.DEVNULL)

    def put(self, source: Path, inside: str) -> str:
        dest = self.path / inside.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, dest)
        return inside

    def host(self, inside: str) -> Path:
        return self.path / inside.lstrip("/")

    def compilers(self) -> list[str]:
        found = self.run("for c in " + " ".join(COMPILERS) +
                         "; do command -v $c || true; done").stdout
        return found.split()

    def close(self) -> None:
        for mount in reversed(self.mounts):
            subprocess.run(["umount", "-l", str(mount)], check=False)
        self.mounts.clear()
        if not any(os.path.ismount(p) for p in (self.path / "dev", self.path / "proc")):
            shutil.rmtree(self.path, ignore_errors=True)


SYSTEMD_SHIM = """#!/bin/sh
# tests/deb_env.py: stands in for systemd (which cannot be PID 1 in this root) and notes
# each call with the program version present at that moment.
echo "$(basename "$0") $* | $(/opt/sukumo-reader/bin/sukumo-reader --version 2>/dev/null \
    || echo absent)" >> /var/log/systemd-calls
"""


def install_systemd_shim(root: Root) -> Path:
    """What dh_installsystemd's maintainer-script snippets call, recorded in order."""
    (root.path / "run" / "systemd" / "system").mkdir(parents=True, exist_ok=True)
    for name in ("deb-systemd-invoke", "systemctl"):
        shim = root.path / "usr" / "local" / "sbin" / name
        shim.parent.mkdir(parents=True, exist_ok=True)
        shim.write_text(SYSTEMD_SHIM)
        shim.chmod(0o755)
    return root.path / "var" / "log" / "systemd-calls"


def remove_systemd_shim(root: Root) -> None:
    shutil.rmtree(root.path / "run" / "systemd" / "system", ignore_errors=True)
    for name in ("deb-systemd-invoke", "systemctl"):
        (root.path / "usr" / "local" / "sbin" / name).unlink(missing_ok=True)
