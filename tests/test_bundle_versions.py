"""Issue 22: one signed bundle can no longer end remote configuration for good.

Real signed bundles (the dev issuer's keys) and real files in the bundle directory: a
version jump past verify.max_version_step is refused and the next normal bundle applies;
a terminal already stuck at 2^53 (as an older release left it) is freed by the root's
trust bundle `floors`, across a restart too.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from reader.bundles.store import TrustStore
from reader.config import Settings
from reader.emulator.issuer import DevIssuer
from reader.errors import BundleError

TID = "t-0001"
STUCK = 2**53


def _store(issuer: DevIssuer, bundles: Path, **kw: int) -> TrustStore:
    store = TrustStore(bytes.fromhex(issuer.root_public_hex), issuer.muni, TID, bundles, **kw)
    store.load_persisted()
    return store


@pytest.fixture
def issuer() -> DevIssuer:
    return DevIssuer.generate()


def test_a_2_to_the_53_config_bundle_is_refused_and_a_later_one_applies(
        issuer: DevIssuer, tmp_path: Path) -> None:
    store = _store(issuer, tmp_path)
    store.apply("trust", issuer.trust_bundle())
    with pytest.raises(BundleError) as refused:
        store.apply("config", issuer.config_bundle(TID, {"debounce_s": 30}, version=STUCK))
    assert refused.value.reason == "version_jump" and "max_version_step" in str(refused.value)
    assert store.versions["config"] == 0 and store.refused == 1
    assert store.apply("config", issuer.config_bundle(TID, {"debounce_s": 30}, version=2)) == 2
    # Versions numbered by Unix time in seconds still fit the default bound.
    assert store.apply("denylist", issuer.denylist_bundle(version=1_796_000_000)) == 1_796_000_000


def test_the_bound_is_a_setting(issuer: DevIssuer, tmp_path: Path) -> None:
    settings = Settings(terminal={"id": TID, "muni": issuer.muni},
                        verify={"root_public_key": issuer.root_public_hex,
                                "max_version_step": 10},
                        paths={"state_dir": tmp_path})
    store = TrustStore.from_settings(settings)
    store.apply("trust", issuer.trust_bundle())
    store.apply("denylist", issuer.denylist_bundle(version=10))
    with pytest.raises(BundleError, match="jumps more than 10"):
        store.apply("denylist", issuer.denylist_bundle(version=21))
    assert store.apply("denylist", issuer.denylist_bundle(version=20)) == 20


def test_the_roots_trust_bundle_frees_a_terminal_already_stuck(
        issuer: DevIssuer, tmp_path: Path) -> None:
    old = 1_700_000_000
    # As an older release, without the bound, left it: config 2^53 applied and stored.
    stuck = _store(issuer, tmp_path, max_step=STUCK)
    stuck.apply("trust", issuer.trust_bundle(now=old), now=old)
    stuck.apply("config", issuer.config_bundle(TID, {"debounce_s": 5}, version=STUCK,
                                               now=old), now=old)
    store = _store(issuer, tmp_path)
    assert store.versions["config"] == STUCK
    with pytest.raises(BundleError) as refused:
        store.apply("config", issuer.config_bundle(TID, {"debounce_s": 30}, version=1))
    assert refused.value.reason == "rollback"

    store.apply("trust", issuer.trust_bundle(version=2, floors={"config": 0}))
    assert store.versions["config"] == 0
    assert store.config_settings == {"debounce_s": 5}  # still in force until the next one
    # a restart before the next config: the stored trust bundle's floor still holds
    assert _store(issuer, tmp_path).versions["config"] == 0
    assert store.apply("config", issuer.config_bundle(TID, {"debounce_s": 30}, version=1)) == 1
    # the config issued after the reset keeps its own version, across a restart too
    restarted = _store(issuer, tmp_path)
    assert restarted.versions["config"] == 1
    assert restarted.config_settings == {"debounce_s": 30}


@pytest.mark.parametrize("floors", [{"trust": 0}, {"config": -1}, {"config": True},
                                    {"config": STUCK + 1}, [0]])
def test_floors_that_make_no_sense_refuse_the_trust_bundle(
        issuer: DevIssuer, tmp_path: Path, floors: object) -> None:
    store = _store(issuer, tmp_path)
    with pytest.raises(BundleError) as refused:
        store.apply("trust", issuer.trust_bundle(floors=floors))  # type: ignore[arg-type]
    assert refused.value.reason == "malformed"
