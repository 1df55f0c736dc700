"""A real `sukumo-reader run` in a subprocess, fed taps through its virtual feed directory.

`Deployment` is one terminal's files: a development issuer whose trust (and, when asked,
denylist) bundles are already applied in the state directory, a feed directory and a
reader.toml. `DaemonProc` starts the daemon on it, drops cards into the feed (each
`*.card` file is one tap, written atomically by rename) and reads back what the daemon
logged and what it committed to its queue database, through an independent connection.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from waiting import end_process, wait_for  # noqa: F401

from reader.bundles.store import TrustStore
from reader.emulator.card import VirtualCard
from reader.emulator.issuer import DevIssuer
from reader.queue.pseudonym import Pseudonyms

REPO = Path(__file__).resolve().parent.parent
DAEMON = [sys.executable, "-c", "import sys; from reader.cli import main; sys.exit(main())"]
READY_TIMEOUT_S = 30.0


class Deployment:
    """A terminal's config, state and feed under `root`, trusting a fresh dev issuer."""

    def __init__(self, root: Path, *, tid: str = "t-daemon-0001",
                 denied_serials: Sequence[bytes] = (), issuer: DevIssuer | None = None) -> None:
        self.root, self.tid = root, tid
        self.issuer = issuer or DevIssuer.generate()
        self.state = root / "state"
        self.feed = root / "feed"
        self.feed.mkdir(parents=True, exist_ok=True)
        bundles = self.state / "bundles"
        bundles.mkdir(parents=True, exist_ok=True)
        # Persisted by the store: the daemon loads them at start, as after a real sync.
        store = TrustStore(bytes.fromhex(self.issuer.root_public_hex), self.issuer.muni, tid,
                           bundles)
        store.apply("trust", self.issuer.trust_bundle())
        store.apply("denylist", self.issuer.denylist_bundle(serials=denied_serials))
        self.config = root / "reader.toml"
        self.write_config()

    def write_config(self, extra: str = "", *, root_key: bool = True,
                     reader_extra: str = "") -> Path:
        key = f'root_public_key = "{self.issuer.root_public_hex}"' if root_key else ""
        self.config.write_text(f"""
[terminal]
id = "{self.tid}"
muni = "{self.issuer.muni}"
facility = "test-hall"
[reader]
transport = "virtual"
virtual_feed = "{self.feed}"
poll_timeout_s = 0.05
{reader_extra}
[verify]
{key}
[paths]
state_dir = "{self.state}"
[sound]
enabled = false
[log]
format = "json"
{extra}
""")
        return self.config

    def pseudonym(self, mid: str) -> str:
        """What the daemon's logs and status call member `mid` (its secret, read back)."""
        return Pseudonyms.load_or_create(self.state / "pseudonym.key").of(mid)

    @property
    def database(self) -> Path:
        return self.state / "events.sqlite3"

    def status_file_exists(self) -> bool:
        return (self.state / "status.json").exists()

    def status(self) -> dict[str, Any]:
        return json.loads((self.state / "status.json").read_text())

    def events(self) -> list[dict[str, Any]]:
        """The queue's events (mqtt-v1 §2 bodies) in seq order, read-only."""
        if not self.database.exists():
            return []
        conn = sqlite3.connect(f"file:{self.database}?mode=ro", uri=True, timeout=10)
        try:
            rows = conn.execute("SELECT body FROM events ORDER BY seq").fetchall()
        except sqlite3.OperationalError:
            return []  # schema not created yet
        finally:
            conn.close()
        return [json.loads(body) for (body,) in rows]


class DaemonProc:
    """`sukumo-reader --config FILE run` on a Deployment; stdout and stderr in files."""

    def __init__(self, dep: Deployment, *, env: dict[str, str] | None = None,
                 args: Sequence[str] | None = None) -> None:
        self.dep = dep
        self.stdout = dep.root / "daemon.out"
        self.stderr = dep.root / "daemon.err"
        self._fed = 0
        environ = {k: v for k, v in os.environ.items() if not k.startswith("SUKUMO_READER_")}
        environ.pop("NOTIFY_SOCKET", None)
        environ.update(env or {})
        argv = list(args) if args is not None else ["--config", str(dep.config), "run"]
        with self.stdout.open("wb") as out, self.stderr.open("wb") as err:
            self.proc = subprocess.Popen([*DAEMON, *argv], stdout=out, stderr=err,
                                         cwd=REPO, env=environ)

    # -- output -------------------------------------------------------------------------
    def out_text(self) -> str:
        return self.stdout.read_text(errors="replace")

    def err_text(self) -> str:
        return self.stderr.read_text(errors="replace")

    def log_entries(self) -> list[dict[str, Any]]:
        entries = []
        for line in self.out_text().splitlines():
            try:
                entries.append(json.loads(line))
            except ValueError:
                continue  # a line cut by a kill
        return entries

    def logged(self, msg: str) -> list[dict[str, Any]]:
        return [e for e in self.log_entries() if e.get("msg") == msg]

    # -- lifecycle ----------------------------------------------------------------------
    def wait_ready(self) -> DaemonProc:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited ({self.proc.returncode}):\n"
                                     f"{self.out_text()[-3000:]}\n{self.err_text()[-3000:]}")
            return bool(self.logged("terminal ready"))

        wait_for(ready, READY_TIMEOUT_S, "terminal ready")
        return self

    def feed(self, card: VirtualCard | str) -> Path:
        """One tap: the card's JSON (or any text: a broken file) as the next feed file."""
        self._fed += 1
        tmp = self.dep.feed / f"{self._fed:06d}.tmp"
        tmp.write_text(card if isinstance(card, str) else card.to_json())
        return tmp.rename(tmp.with_suffix(".card"))

    def wait_taps(self, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
        """Wait until `count` taps were logged as recorded; their log entries."""
        def enough() -> list[dict[str, Any]] | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited ({self.proc.returncode}):\n"
                                     f"{self.out_text()[-3000:]}\n{self.err_text()[-3000:]}")
            taps = self.logged("tap recorded")
            return taps if len(taps) >= count else None

        return wait_for(enough, timeout, f"{count} taps recorded")

    def terminate(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


def language_env(lang: str, **extra: str) -> dict[str, str]:
    """This shell's environment in one language: without our settings (SUKUMO_READER_*)
    and without its own locale (LANG*, LC_*, LANGUAGE), then LANG=lang."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SUKUMO_READER_", "LC_", "LANG"))}
    return {**env, "LANG": lang, **extra}


def run_cli(*argv: str, env: dict[str, str] | None = None,
            timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """`sukumo-reader ARGV...` to completion, without any SUKUMO_READER_ from this shell."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SUKUMO_READER_")}
    environ.update(env or {})
    return subprocess.run([*DAEMON, *argv], capture_output=True, text=True, cwd=REPO,
                          env=environ, timeout=timeout)
