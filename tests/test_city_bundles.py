"""Bundles signed from a hardware key, through the real stacks: the ops key made inside a
SoftHSM2 token (Debian's softhsm2, behind PKCS#11, as a city's HSM or YubiKey would be),
`sukumo-city bundle sign|publish` against a real PostgreSQL registry and a real mosquitto
with TLS and the ACL, and the terminal's own verifier (TrustStore) at the other end."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from mqtt_env import broker, raw_client  # noqa: F401
from pg_env import PgDatabase, pg, pg_cluster  # noqa: F401
from waiting import wait_for

from city.signing import PIN_ENV
from reader.bundles.store import TrustStore
from reader.card.cose import decode_sign1
from reader.devtools.broker import DevBroker
from reader.emulator.issuer import DevIssuer
from reader.errors import BundleError
from reader.wire.topics import Topics

SOFTHSM = Path("/usr/lib/softhsm/libsofthsm2.so")
PIN = "246810"
MUNI = "392081"
pytestmark = pytest.mark.skipif(not SOFTHSM.exists() or not shutil.which("softhsm2-util"),
                                reason="softhsm2 is not installed (scripts/bootstrap.sh)")


@pytest.fixture
def token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """A fresh SoftHSM2 token labelled city-ops, for this test only."""
    (tmp_path / "tokens").mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tmp_path / 'tokens'}\n"
                    "objectstore.backend = file\nlog.level = ERROR\n")
    monkeypatch.setenv("SOFTHSM2_CONF", str(conf))
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "city-ops",
                    "--pin", PIN, "--so-pin", "13579111"], check=True, capture_output=True)
    monkeypatch.setenv(PIN_ENV, PIN)
    yield {"SOFTHSM2_CONF": str(conf), PIN_ENV: PIN}


def city(config: Path, *args: str, env: dict[str, str] | None = None,
         ) -> subprocess.CompletedProcess[str]:
    """The real console command, as a city operator runs it."""
    return subprocess.run([sys.executable, "-m", "city.cli", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def city_toml(tmp_path: Path, dsn: str, dev: DevBroker | None = None) -> Path:
    lines = ["[database]", f"dsn = {dsn!r}", "[signing]", f"module = '{SOFTHSM}'",
             "token = 'city-ops'", "key_label = 'ops-2026'"]
    if dev is not None:
        ident = dev.receiver
        lines += ["[mqtt]", f"url = {dev.city_url!r}", f"ca_file = '{dev.ca_file}'",
                  f"cert_file = '{ident.cert_file}'", f"key_file = '{ident.key_file}'"]
    path = tmp_path / "city.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def trust_with_token_key(tmp_path: Path, config: Path, issuer: DevIssuer) -> TrustStore:
    """The key ceremony in small: the ops key is made in the token, the root (offline)
    signs a trust bundle naming it; the terminal pins the root and takes the bundle."""
    made = city(config, "bundle", "keygen")
    assert made.returncode == 0, made.stderr
    ops = json.loads(made.stdout)
    assert len(bytes.fromhex(ops["pk"])) == 65 and ops["key"].startswith("pkcs11:")
    window = {"nbf": 0, "exp": 4_000_000_000}
    payload = {"issuers": [{"kid": issuer.issuer_kid.hex(), "muni": MUNI,
                            "pk": issuer_point(issuer)} | window],
               "ops": [{"kid": ops["kid"], "pk": ops["pk"]} | window]}
    (tmp_path / "trust.json").write_text(json.dumps(payload))
    root_key = tmp_path / "root.hex"
    root_key.write_text(f"{issuer.root.private_numbers().private_value:064x}\n")
    signed = city(config, "bundle", "sign", "trust", str(tmp_path / "trust.json"),
                  "--muni", MUNI, "--version", "1", "--offline", "--key-file", str(root_key),
                  "--kid", b"root".hex(), "--out", str(tmp_path / "trust.cbor"))
    assert signed.returncode == 0, signed.stderr
    terminal = TrustStore(bytes.fromhex(issuer.root_public_hex), MUNI, "t-0001", None)
    assert terminal.apply("trust", (tmp_path / "trust.cbor").read_bytes()) == 1
    return terminal


def issuer_point(issuer: DevIssuer) -> str:
    from reader.card.cose import point_of

    return point_of(issuer.issuer.public_key()).hex()


def test_a_denylist_signed_inside_softhsm_verifies_on_a_terminal(
        tmp_path: Path, token: dict[str, str], pg: PgDatabase) -> None:  # noqa: F811
    config = city_toml(tmp_path, pg.dsn)
    assert city(config, "migrate").returncode == 0
    terminal = trust_with_token_key(tmp_path, config, DevIssuer.generate(MUNI))
    (tmp_path / "deny.json").write_text(json.dumps({"serials": ["0102030405060708"],
                                                    "members": ["M00000042"]}))
    out = tmp_path / "deny.cbor"
    signed = city(config, "bundle", "sign", "denylist", str(tmp_path / "deny.json"),
                  "--muni", MUNI, "--out", str(out))
    assert signed.returncode == 0, signed.stderr
    assert "version 1" in signed.stdout and PIN not in signed.stdout + signed.stderr
    # The terminal's own verifier: signature by an ops key of its trust bundle.
    assert terminal.apply("denylist", out.read_bytes()) == 1
    assert terminal.is_denied(bytes.fromhex("0102030405060708"), "")
    assert terminal.is_denied(b"\0" * 8, "M00000042")
    # The next one takes the registry's next version, and the registry says who and how.
    assert city(config, "bundle", "sign", "denylist", str(tmp_path / "deny.json"),
                "--muni", MUNI, "--out", str(tmp_path / "deny2.cbor")).returncode == 0
    assert terminal.apply("denylist", (tmp_path / "deny2.cbor").read_bytes()) == 2
    log = city(config, "bundle", "log")
    assert log.stdout.count("signed") == 2 and "pkcs11:token=city-ops;object=ops-2026" \
        in log.stdout, log.stdout


def test_a_wrong_pin_or_a_missing_token_is_a_clear_refusal(
        tmp_path: Path, token: dict[str, str], pg: PgDatabase) -> None:  # noqa: F811
    config = city_toml(tmp_path, pg.dsn)
    assert city(config, "migrate").returncode == 0
    assert city(config, "bundle", "keygen").returncode == 0
    again = city(config, "bundle", "keygen")
    assert again.returncode == 2 and "already holds a key labelled 'ops-2026'" in again.stderr
    (tmp_path / "deny.json").write_text("{}")
    wrong = city(config, "bundle", "sign", "denylist", str(tmp_path / "deny.json"),
                 "--muni", MUNI, "--out", str(tmp_path / "x.cbor"), env={PIN_ENV: "000000"})
    assert wrong.returncode == 2 and "wrong PIN" in wrong.stderr, wrong.stderr
    assert "Traceback" not in wrong.stderr and not (tmp_path / "x.cbor").exists()
    other = city(config, "bundle", "sign", "denylist", str(tmp_path / "deny.json"),
                 "--muni", MUNI, "--out", str(tmp_path / "x.cbor"), "--token", "no-such")
    assert other.returncode == 2 and "no PKCS#11 token labelled 'no-such'" in other.stderr


def retained(dev: DevBroker, topic: str) -> bytes | None:
    """The retained bundle on `topic`, as terminal t-0001 receives it (None: none)."""
    got: list[bytes] = []
    client = raw_client(dev, "t-0001")
    client.on_message = lambda _c, _u, msg: got.append(msg.payload)
    client.subscribe(topic, qos=1)
    try:
        wait_for(lambda: bool(got), 10, "the retained bundle")
    except AssertionError:
        return None
    finally:
        client.disconnect()
        client.loop_stop()
    return got[0]


def test_a_stale_version_is_refused_before_it_is_published(
        tmp_path: Path, token: dict[str, str], pg: PgDatabase,  # noqa: F811
        broker: DevBroker) -> None:  # noqa: F811
    config = city_toml(tmp_path, pg.dsn, broker)
    assert city(config, "migrate").returncode == 0
    trust_with_token_key(tmp_path, config, DevIssuer.generate(MUNI))
    (tmp_path / "deny.json").write_text(json.dumps({"serials": [], "members": []}))
    for n in (1, 2):
        assert city(config, "bundle", "sign", "denylist", str(tmp_path / "deny.json"),
                    "--muni", MUNI, "--out", str(tmp_path / f"v{n}.cbor")).returncode == 0
    topic = Topics("sukumo/v1", MUNI, "-").bundle("denylist")
    sent = city(config, "bundle", "publish", str(tmp_path / "v2.cbor"))
    assert sent.returncode == 0, sent.stderr + sent.stdout
    assert decode_sign1(retained(broker, topic) or b"").payload_map()["version"] == 2

    # v1 was signed, never published, and is now below what terminals hold: refused here,
    # and the broker still holds v2.
    stale = city(config, "bundle", "publish", str(tmp_path / "v1.cbor"))
    assert stale.returncode == 2 and "not above 2" in stale.stderr, stale.stderr
    assert decode_sign1(retained(broker, topic) or b"").payload_map()["version"] == 2
    # Signing a version the registry has passed is refused too, before any signature.
    old = city(config, "bundle", "sign", "denylist", str(tmp_path / "deny.json"),
               "--muni", MUNI, "--version", "2", "--out", str(tmp_path / "again.cbor"))
    assert old.returncode == 2 and "not above 2" in old.stderr
    assert not (tmp_path / "again.cbor").exists()
    # The same file twice is not a new version either.
    assert city(config, "bundle", "publish", str(tmp_path / "v2.cbor")).returncode == 2


def test_the_registry_is_append_only(tmp_path: Path, token: dict[str, str],
                                     pg: PgDatabase) -> None:  # noqa: F811
    config = city_toml(tmp_path, pg.dsn)
    assert city(config, "migrate").returncode == 0
    trust_with_token_key(tmp_path, config, DevIssuer.generate(MUNI))
    (tmp_path / "deny.json").write_text("{}")
    assert city(config, "bundle", "sign", "denylist", str(tmp_path / "deny.json"),
                "--muni", MUNI, "--out", str(tmp_path / "d.cbor")).returncode == 0
    for sql in ("UPDATE city.bundle_log SET version = 99", "DELETE FROM city.bundle_log",
                "TRUNCATE city.bundle_log"):
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            pg.query(sql)


def test_a_bundle_of_another_key_is_refused_by_the_terminal(
        tmp_path: Path, token: dict[str, str], pg: PgDatabase) -> None:  # noqa: F811
    """The control: a denylist signed by a key the trust bundle does not name fails the
    terminal's check, so the test above proves the token's key, not any key."""
    config = city_toml(tmp_path, pg.dsn)
    assert city(config, "migrate").returncode == 0
    issuer = DevIssuer.generate(MUNI)
    terminal = trust_with_token_key(tmp_path, config, issuer)
    assert city(config, "bundle", "keygen", "--label", "not-in-trust").returncode == 0
    (tmp_path / "deny.json").write_text("{}")
    assert city(config, "bundle", "sign", "denylist", str(tmp_path / "deny.json"), "--muni",
                MUNI, "--label", "not-in-trust", "--out", str(tmp_path / "d.cbor")
                ).returncode == 0
    with pytest.raises(BundleError):
        terminal.apply("denylist", (tmp_path / "d.cbor").read_bytes())


