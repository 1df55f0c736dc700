"""A development city with its own CA (`city/ca`), the broker trusting it and checking its
CRL, and terminals whose certificates it issued — some already part-used, to renew.

Nothing is mocked: the CA's files and log, real mosquitto with TLS, the §6 ACL and
`crlfile`, terminals as `sukumo-reader sync` processes.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from mqtt_env import ROOT_HEX
from paho.mqtt.enums import CallbackAPIVersion
from waiting import wait_for

from city.ca.authority import CertificateAuthority, init_ca, init_root
from reader.config import Settings
from reader.devtools.broker import DevBroker
from reader.sync.endpoint import make_csr, tls_context
from reader.sync.pairs import CRASH_ENV
from reader.system.uuid7 import uuid7_str

REPO = Path(__file__).resolve().parent.parent
MUNI = "392081"
PREFIX = "sukumo/v1"


@dataclass(frozen=True)
class TerminalPair:
    tid: str
    cert_file: Path
    key_file: Path
    serial: str


class DevCity:
    """The city's CA under a root, its CRL published, and a broker trusting both."""

    def __init__(self, root: Path) -> None:
        self.root = root
        init_root(root / "root")
        self.ca: CertificateAuthority = init_ca(root / "ca", MUNI, root / "root")
        self.server_key, self.server_cert = self.ca.server_certificate(
            root / "broker-tls", ["127.0.0.1", "localhost"])
        self.ca.publish_crl()
        self.broker = DevBroker(root / "broker", terminals=(), terminal_ca=self.ca.trust_file,
                                server_cert=self.server_cert, server_key=self.server_key,
                                crl_file=self.ca.crl_file)

    def terminal(self, tid: str, *, days: int = 365, days_left: float | None = None,
                 csr_tid: str | None = None) -> TerminalPair:
        """A key and a certificate the CA issued for `tid`; with `days_left`, issued so long
        ago that only that much of its validity is left."""
        folder = self.root / "terminals" / tid
        folder.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        not_before = None
        if days_left is not None:
            not_before = dt.datetime.now(dt.UTC) - dt.timedelta(days=days - days_left)
        cert = self.ca.sign(make_csr(key, csr_tid or tid, MUNI), days=days,
                            not_before=not_before)
        key_file, cert_file = folder / "terminal.key", folder / "terminal.crt"
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
        cert_file.write_text(self.ca.chain_pem(cert))
        return TerminalPair(tid, cert_file, key_file, f"{cert.serial_number:x}")

    def settings(self, pair: TerminalPair, state_dir: Path, **mqtt: Any) -> Settings:
        options: dict[str, Any] = {
            "url": self.broker.url, "ca_file": self.ca.trust_file,
            "cert_file": pair.cert_file, "key_file": pair.key_file, "ack_timeout_s": 3.0,
            "status_interval_s": 1.0, "reconnect_min_s": 0.2, "reconnect_max_s": 1.0, **mqtt}
        return Settings(terminal={"id": pair.tid, "muni": MUNI},
                        paths={"state_dir": state_dir},
                        verify={"root_public_key": ROOT_HEX}, mqtt=options)

    def issued(self, tid: str) -> list[str]:
        return [c.serial for c in self.ca.log.issued() if c.tid == tid]


class Terminal:
    """`sukumo-reader sync` for one terminal; `crash_at` kills it (SIGKILL) at that step
    of installing a renewed pair (reader/sync/pairs.py)."""

    def __init__(self, settings: Settings, log: Path, crash_at: str | None = None) -> None:
        self.log = log
        env = {**os.environ}
        env.pop(CRASH_ENV, None)
        if crash_at:
            env[CRASH_ENV] = crash_at
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "reader", "sync",
                 "--settings-json", settings.model_dump_json()],
                stdout=out, stderr=out, cwd=REPO, env=env)

    def stop(self) -> None:
        from waiting import end_process

        end_process(self.proc, timeout=15)


class Watcher:
    """A city-side client (the receiver's certificate) that keeps the last retained status
    of each terminal."""

    def __init__(self, city: DevCity) -> None:
        broker = city.broker
        ident = broker.receiver
        self.status: dict[str, dict[str, Any]] = {}
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5,
                                  client_id=f"watch-{uuid7_str()[-8:]}")
        self.client.tls_set_context(tls_context(city.ca.trust_file, ident.cert_file,
                                                ident.key_file))
        self.client.on_message = self._on_message
        # Subscribed on every connect: paho reconnects by itself after a broker restart,
        # with a new session.
        self.client.on_connect = lambda c, *_a: c.subscribe([(f"{PREFIX}/+/+/status", 1)])
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.connect_async(broker.host, broker.city_port)  # retried until it listens
        self.client.loop_start()
        wait_for(self.client.is_connected, 10, "watcher connected")

    def _on_message(self, _c: Any, _ud: Any, message: mqtt.MQTTMessage) -> None:
        self.status[message.topic.split("/")[-2]] = json.loads(message.payload)

    def cert_serial(self, tid: str) -> str | None:
        doc = self.status.get(tid) or {}
        if doc.get("state") != "online":
            return None
        return (doc.get("cert") or {}).get("serial")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def terminal_client(city: DevCity, pair: TerminalPair) -> mqtt.Client:
    """A bare paho client with a terminal's certificate, connected and looping."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5,
                         client_id=pair.tid)
    client.tls_set_context(tls_context(city.ca.trust_file, pair.cert_file, pair.key_file))
    client.connect(city.broker.host, city.broker.port)
    client.loop_start()
    wait_for(client.is_connected, 5, f"{pair.tid} connected")
    return client


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


class CityService:
    """`sukumo-city run` on a private PostgreSQL database, answering renewals from the
    city's CA (`[ca] dir`); ready once subscribed."""

    def __init__(self, city: DevCity, workdir: Path, name: str = "r1") -> None:
        from mqtt_env import city_config

        self.db = workdir / f"{name}-city.db"
        self.ready = workdir / f"{name}.ready"
        self.log = workdir / f"{name}.log"
        config = city_config(city.broker, self.db, workdir / f"{name}.toml", name=name)
        config.write_text(config.read_text() + f'\n[ca]\ndir = "{city.ca.ca_dir}"\n')
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "city.cli", "--config", str(config), "run",
                 "--ready-file", str(self.ready)], stdout=out, stderr=out, cwd=REPO)
        wait_for(self.ready.exists, 30, f"city service {name} subscribed")

    def answering(self) -> int:
        """How many times its certificate responder has subscribed (it logs each time)."""
        return self.log.read_text().count("answering certificate requests")

    def fleet(self, tid: str) -> dict[str, Any] | None:
        """The terminal's row of the fleet view (city.terminals_v1)."""
        from mqtt_env import receiver_query

        rows = receiver_query(self.db, "SELECT tid, online, cert_not_after::text "
                              f"FROM city.terminals_v1 WHERE tid = '{tid}'")
        return {"tid": rows[0][0], "online": rows[0][1], "cert_not_after": rows[0][2]} \
            if rows else None

    def stop(self) -> None:
        from waiting import end_process

        end_process(self.proc)
