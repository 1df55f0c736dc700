"""A real RabbitMQ with its MQTT plugin on loopback: a broker that speaks only MQTT 3.1.1.

Debian 12's rabbitmq-server (3.10) is what a city may already run, clustered; its MQTT
plugin closes the connection to an MQTT 5 CONNECT. `RabbitBroker` starts a throw-away
node of its own (node name, epmd and distribution ports, mnesia and log directories,
config, cookie, all under its workdir; nothing of a system instance is touched), with
the plugin enabled through its own enabled_plugins file (what `rabbitmq-plugins enable
rabbitmq_mqtt` writes), MQTT over TLS with the DevBroker's CA and certificates, and
each client known by its certificate CN (ssl_cert_login), as mqtt-v1 §6 asks.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from reader.devtools.broker import RECEIVER_CN, DevBroker, free_port
from reader.sync.endpoint import tls_context

RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
EPMD = shutil.which("epmd") or "/usr/bin/epmd"


def available() -> bool:
    return Path(RABBITMQ_SERVER).exists()


@dataclass
class RabbitBroker:
    workdir: Path
    users: tuple[str, ...] = ("t-0001", RECEIVER_CN)
    host: str = "127.0.0.1"
    port: int = 0
    pki: DevBroker = field(init=False)
    _procs: list[subprocess.Popen[bytes]] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)
        # The same test CA, server and client certificates as the mosquitto fixture.
        self.pki = DevBroker(self.workdir / "pki", terminals=self.users).ensure_pki()

    @property
    def url(self) -> str:
        return f"mqtts://{self.host}:{self.port}"

    @property
    def muni(self) -> str:
        return self.pki.muni

    def start(self, timeout: float = 90.0) -> RabbitBroker:
        w = self.workdir
        for sub in ("home", "mnesia", "log"):
            (w / sub).mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        epmd_port, dist_port = free_port(), free_port()
        # Every user, with a password nobody has: they log in by their certificate only.
        (w / "definitions.json").write_text(json.dumps({
            "vhosts": [{"name": "/"}],
            "users": [{"name": u, "password_hash": "", "tags": [],
                       "hashing_algorithm": "rabbit_password_hashing_sha256"}
                      for u in self.users],
            "permissions": [{"user": u, "vhost": "/", "configure": ".*", "write": ".*",
                             "read": ".*"} for u in self.users]}))
        pki = self.pki.workdir
        # One listener for terminals and the city alike (RabbitMQ has no per-listener CA):
        # client certificates of either CA log in, each by its own name.
        clients_ca = w / "clients-ca.pem"
        clients_ca.write_bytes(self.pki.ca_file.read_bytes() + self.pki.city_ca_file.read_bytes())
        (w / "rabbitmq.conf").write_text("\n".join([
            "listeners.tcp = none",  # no AMQP: the MQTT listener is the whole broker here
            "mqtt.listeners.tcp = none",
            f"mqtt.listeners.ssl.default = {self.host}:{self.port}",
            f"ssl_options.cacertfile = {clients_ca}",
            f"ssl_options.certfile = {pki / 'server.pem'}",
            f"ssl_options.keyfile = {pki / 'server.key'}",
            "ssl_options.verify = verify_peer",
            "ssl_options.fail_if_no_peer_cert = true",
            "ssl_options.versions.1 = tlsv1.2",
            "ssl_cert_login_from = common_name",
            "mqtt.ssl_cert_login = true",
            "mqtt.allow_anonymous = false",
            f"load_definitions = {w / 'definitions.json'}",
            "log.console = false",
            f"log.file = {w / 'log' / 'rabbit.log'}",
            "",
        ]))
        (w / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(w / "home"),
            "RABBITMQ_NODENAME": f"sukumo-test-{os.getpid()}-{self.port}@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": self.host, "RABBITMQ_DIST_PORT": str(dist_port),
            "ERL_EPMD_PORT": str(epmd_port), "ERL_EPMD_ADDRESS": self.host,
            "RABBITMQ_CONFIG_FILE": str(w / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(w / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(w / "mnesia"), "RABBITMQ_LOG_BASE": str(w / "log"),
            "RABBITMQ_PID_FILE": str(w / "rabbit.pid"),
        }
        out = (w / "server.out").open("ab")
        # An epmd of our own, in the foreground, so stop() ends it (a daemon would outlive us).
        self._procs.append(subprocess.Popen([EPMD, "-port", str(epmd_port)], env=env,
                                            stdout=out, stderr=out, start_new_session=True))
        self._procs.append(subprocess.Popen([RABBITMQ_SERVER], env=env, stdout=out,
                                            stderr=out, start_new_session=True))
        out.close()
        self._wait_ready(timeout)
        return self

    def stop(self) -> None:
        for proc in reversed(self._procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        self._procs.clear()

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        server = self._procs[-1]
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited ({server.returncode}); see "
                                   f"{self.workdir / 'server.out'} and log/")
            if self._logs_in():
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"rabbitmq did not take an MQTT login on {self.host}:{self.port}")

    def _logs_in(self) -> bool:
        """Whether a client that logs in by its certificate is answered CONNACK 0. The
        listener opens before the vhost is up: a CONNECT then ends in `vhost_is_down` and
        a closed connection (seen in CI), so an open port is not yet a ready broker."""
        ident = self.pki.identity(RECEIVER_CN)
        probe = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="ready-probe",
                            protocol=mqtt.MQTTv311, clean_session=True)
        probe.tls_set_context(tls_context(self.pki.ca_file, ident.cert_file, ident.key_file))
        try:
            probe.connect(self.host, self.port, keepalive=10)
            deadline = time.monotonic() + 3.0
            while not probe.is_connected() and time.monotonic() < deadline:
                if probe.loop(0.1) != mqtt.MQTT_ERR_SUCCESS:
                    return False
            return probe.is_connected()
        except OSError:
            return False
        finally:
            probe.disconnect()
