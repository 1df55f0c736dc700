"""Config bundles at run time (runtime_config) and AP profiles per mode (profile_for)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from modes_helpers import ModeTerminal, card, jst

from reader.bundles.store import TrustStore
from reader.card.profiles import Profile
from reader.config import MEMBER_AID, NURSERY_AID, load_settings
from reader.config.bundle import BUNDLE_KEYS, apply_bundle_settings
from reader.config.profiles import profile_for
from reader.errors import ConfigError
from reader.terminal.policy import build_mode

REPO = Path(__file__).resolve().parents[1]


def test_the_vectors_config_bundle_becomes_settings(trust: TrustStore, vectors: dict[str, Any],
                                                   tmp_path: Path):
    trust.apply("config", bytes.fromhex(vectors["bundles"]["config_bundle_hex"]),
                now=vectors["now"])
    assert trust.config_settings == {"mode": "checkin", "facility": "sukumo-sports-center",
                                     "debounce_s": 60}
    base = load_settings(None, terminal={"id": "t-0001", "mode": "nursery"},
                         modes={"checkin": {"debounce_s": 5}}, paths={"state_dir": tmp_path})
    new = apply_bundle_settings(base, trust.config_settings)
    assert (new.terminal.mode, new.terminal.facility) == ("checkin", "sukumo-sports-center")
    assert new.modes.checkin.debounce_s == 60
    # Who the terminal is and where it keeps things did not move.
    assert (new.terminal.id, new.paths, new.mqtt) == (base.terminal.id, base.paths, base.mqtt)
    assert build_mode(new).name == "checkin"
    assert profile_for(new) == Profile(bytes.fromhex(MEMBER_AID), "member", True)


def test_a_bundle_switches_the_mode_and_the_new_mode_decides(tmp_path: Path):
    term = ModeTerminal(tmp_path, terminal={"mode": "checkin"})
    try:
        alice = card("SK-ALICE", senior=True)
        assert term.tap(alice, jst("2026-12-01 10:00:00")).verdict == (None, "accepted", {})
        term.settings = apply_bundle_settings(term.settings, {
            "mode": "coupon",
            "coupons": [{"code": "taxi", "rule": "senior", "limit": 1, "period": "month"}]})
        term.mode = build_mode(term.settings)
        assert term.tap(alice, jst("2026-12-01 10:05:00")).verdict == (
            None, "coupon", {"coupon": "taxi", "remaining": 0})
    finally:
        term.close()


def test_every_bundle_key_lands_on_a_real_setting():
    base = load_settings(None)
    for key, path in BUNDLE_KEYS.items():
        value: Any = base
        for part in path:
            value = getattr(value, part)  # AttributeError: the table points nowhere
        assert apply_bundle_settings(base, {key: _dumped(value)}) == base, key


def _dumped(value: Any) -> Any:
    return [v.model_dump() for v in value] if isinstance(value, tuple) else value


def test_the_bundle_overrides_the_environment(monkeypatch):
    monkeypatch.setenv("SUKUMO_READER_TERMINAL__MODE", "watch")
    base = load_settings(None)
    assert base.terminal.mode == "watch"
    assert apply_bundle_settings(base, {"mode": "checkin"}).terminal.mode == "checkin"


@pytest.mark.parametrize(("bundle", "words"), [
    ({"mode": "parking"}, ["'mode' (terminal.mode)", "'parking'"]),
    ({"debounce_s": -1}, ["'debounce_s' (modes.checkin.debounce_s)"]),
    ({"volume": 3}, ["'volume' (sound.volume)"]),
    ({"debounce": 60}, ["'debounce' is not one a bundle may set"]),
    ({"mqtt_url": "mqtt://evil"}, ["'mqtt_url' is not one a bundle may set"]),
    ({"coupons": [{"code": "taxi", "rule": "seniro", "limit": 1}]},
     ["'coupons' (modes.coupon.kinds.0.rule)", "unknown attribute 'seniro'"]),
    ({"coupons": [{"code": "taxi", "rule": "senior or", "limit": 1}]},
     ["'coupons' (modes.coupon.kinds.0.rule)", "rule ends"]),
    ({"schedule": [
        {"code": "A", "start": "2026-12-01T10:00:00+09:00", "end": "2026-12-01T12:00:00+09:00"},
        {"code": "B", "start": "2026-12-01T11:00:00+09:00", "end": "2026-12-01T13:00:00+09:00"},
    ]}, ["'schedule' (modes.event.schedule)", "overlap"]),
    ({"mode": "coupon"}, ["config bundle refused", "modes.coupon.kinds is empty"]),
], ids=["mode", "debounce", "volume", "unknown-key", "identity", "attribute", "rule",
        "overlap", "coupon-without-kinds"])
def test_a_bad_bundle_is_refused_naming_its_key(bundle, words):
    base = load_settings(None)
    with pytest.raises(ConfigError) as err:
        apply_bundle_settings(base, bundle)
    for word in words:
        assert word in str(err.value)


# -- AP profiles ------------------------------------------------------------------------

@pytest.mark.parametrize(("mode", "aid", "ap"), [
    ("checkin", MEMBER_AID, "member"), ("event", MEMBER_AID, "member"),
    ("coupon", MEMBER_AID, "member"), ("watch", MEMBER_AID, "member"),
    ("nursery", NURSERY_AID, "nursery"),
])
@pytest.mark.parametrize("profiles_file", [None, REPO / "firmware_config" / "ap-profiles.toml"],
                         ids=["built-in", "shipped-file"])
def test_each_mode_reads_its_application(mode, aid, ap, profiles_file):
    settings = load_settings(None, terminal={"mode": mode},
                             paths={"ap_profiles": profiles_file})
    assert profile_for(settings) == Profile(bytes.fromhex(aid), ap, True)


def test_a_profile_file_can_drop_card_authentication_per_mode(tmp_path):
    path = tmp_path / "ap-profiles.toml"
    path.write_text('[profiles.checkin]\naid = "A0000001234501"\nauthenticate = false\n'
                    '[profiles.nursery]\nauthenticate = false\n')
    settings = load_settings(None, paths={"ap_profiles": path})
    assert profile_for(settings) == Profile(bytes.fromhex("A0000001234501"), "member", False)
    nursery = load_settings(None, terminal={"mode": "nursery"}, paths={"ap_profiles": path})
    assert profile_for(nursery) == Profile(bytes.fromhex(NURSERY_AID), "nursery", False)
    watch = load_settings(None, terminal={"mode": "watch"}, paths={"ap_profiles": path})
    assert profile_for(watch) == Profile(bytes.fromhex(MEMBER_AID), "member", True)


def test_the_ap_section_overrides_every_mode(tmp_path):
    settings = load_settings(None, terminal={"mode": "nursery"},
                             ap={"aid": "A0000001234502", "authenticate": False})
    assert profile_for(settings) == Profile(bytes.fromhex("A0000001234502"), "nursery", False)


@pytest.mark.parametrize(("body", "words"), [
    ('[profiles.checkin]\naid = "XYZ"\n', "profiles.checkin.aid = 'XYZ'"),
    ('[profiles.checkin]\nauthenticate = "no"\n', "profiles.checkin.authenticate"),
    ('[profiles.checkin]\nap = "visitor"\n', "profiles.checkin.ap = 'visitor'"),
    ('[profiles.checkin]\naid_ = "F053554B554D4F494401"\n', "unknown key(s) ['aid_']"),
    ('[profiles.parking]\naid = "F053554B554D4F494401"\n', "unknown mode(s) ['parking']"),
    ('[profiles.checkin\n', "not valid TOML"),
])
def test_a_bad_profiles_file_names_the_key(tmp_path, body, words):
    path = tmp_path / "ap-profiles.toml"
    path.write_text(body)
    with pytest.raises(ConfigError) as err:
        profile_for(load_settings(None, paths={"ap_profiles": path}))
    assert words in str(err.value)


def test_a_missing_profiles_file_is_a_start_up_error(tmp_path):
    settings = load_settings(None, paths={"ap_profiles": tmp_path / "nope.toml"})
    with pytest.raises(ConfigError, match=r"cannot read AP profiles file .*paths\.ap_profiles"):
        profile_for(settings)


def test_neighbouring_towns_aids_follow_the_home_one_and_are_guarded(tmp_path):
    path = tmp_path / "ap-profiles.toml"
    path.write_text('[profiles.checkin]\nmore_aids = ["F053554B554D4F494411", '
                    '"F053554B554D4F494421"]\n')
    settings = load_settings(None, paths={"ap_profiles": path})
    assert profile_for(settings).aids == (bytes.fromhex(MEMBER_AID),
                                          bytes.fromhex("F053554B554D4F494411"),
                                          bytes.fromhex("F053554B554D4F494421"))
    path.write_text('[profiles.checkin]\nmore_aids = ["D392F000260100000001"]\n')
    with pytest.raises(ConfigError, match="national"):
        profile_for(load_settings(None, paths={"ap_profiles": path}))
    with pytest.raises(ConfigError, match="more_aids"):
        load_settings(None, ap={"aid": MEMBER_AID, "more_aids": ["D3921000310001010408"]})


def test_a_config_bundle_names_the_towns_accepted_and_a_nurserys_children():
    base = load_settings(None, terminal={"id": "t-0001", "muni": "392081"})
    assert base.verify.accept_munis == []  # its own town only, by default
    new = apply_bundle_settings(base, {"accept_munis": ["392014", "392090"],
                                       "nursery_children": ["392014:M-77"]})
    assert new.verify.accept_munis == ["392014", "392090"]
    assert new.modes.nursery.neighbour_children == ["392014:M-77"]
    for bad in (["39201"], "392014", [392014]):
        with pytest.raises(ConfigError, match="accept_munis"):
            apply_bundle_settings(base, {"accept_munis": bad})
