"""Issue 15, Japanese first: a configuration mistake is explained in the technician's
language, and the daemon's journal stays English.

Through the real CLI (`python -m reader ...` with a clean environment and LANG set): under
ja_JP.UTF-8 every wrong reader.toml gets a Japanese sentence naming the key verbatim,
exit 2 and no traceback; under C.UTF-8 the same English as before. pydantic's own English
("Input should be ...", "Field required") never reaches a Japanese reader for the kinds of
mistakes a technician makes. `sukumo-reader run` logs (and refuses) in English even under
the Japanese locale that firmware_config/locale sets system-wide.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_env import REPO, DaemonProc, Deployment, language_env, wait_for

from reader.bundles.store import TrustStore
from reader.config import Settings
from reader.config.bundle import apply_bundle_settings
from reader.config.profiles import read_profiles
from reader.errors import ConfigError
from reader.system import i18n

JA, EN = "ja_JP.UTF-8", "C.UTF-8"
PYDANTIC_ENGLISH = ("Input should", "Field required", "Value error", "Extra inputs",
                    "String should", "invalid configuration")


def cli(*args: str, lang: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reader", *args], capture_output=True,
                          text=True, env=language_env(lang, **extra), cwd=REPO, timeout=60)


def refused(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and done.stdout == "", done.stderr
    return done.stderr


@pytest.mark.parametrize(("text", "key", "japanese", "english"), [
    ("[reader]\ntransprot = 'pcsc'", "reader.transprot = 'pcsc'", "使えない設定名です",
     "Extra inputs are not permitted; this key does not exist"),
    ("[reader]\npoll_timeout_s = 'fast'", "reader.poll_timeout_s = 'fast'", "数値にしてください",
     "Input should be a valid number"),
    ("[[modes.coupon.kinds]]\ncode = 'taxi'\nrule = 'senior'", "modes.coupon.kinds.0.limit",
     "必ず書く設定です", "Field required"),
    ("[mqtt]\nurl = 8883", "mqtt.url = 8883", "文字列にしてください",
     "Input should be a valid string"),
    ("[terminal]\nmode = 'parking'", "terminal.mode = 'parking'",
     "'checkin' / 'event' / 'nursery' / 'coupon' / 'watch' のどれかにしてください",
     "Input should be 'checkin', 'event', 'nursery', 'coupon' or 'watch'"),
    ("[terminal]\nid = 'T 1'", "terminal.id = 'T 1'",
     "書き方が違います（決まった形式: '^[a-z0-9][a-z0-9-]{2,63}$'）",
     "String should match pattern '^[a-z0-9][a-z0-9-]{2,63}$'"),
    ("[sound]\nvolume = 1.5", "sound.volume = 1.5", "1 以下にしてください",
     "Input should be less than or equal to 1"),
    # Our own validators: their sentence is translated where it is raised.
    ("[terminal]\ntimezone = 'Mars/Olympus'", "terminal.timezone = 'Mars/Olympus'",
     "タイムゾーン 'Mars/Olympus' がわかりません", "Value error, unknown time zone 'Mars/Olympus'"),
    ("[paths]\nstate_dir = '/proc/sukumo'", "paths.state_dir = '/proc/sukumo'",
     "カーネルの疑似ファイルシステム", "is on a kernel pseudo-filesystem"),
    ("[[modes.event.schedule]]\ncode = 'a'\nstart = 2026-12-01T10:00:00\n"
     "end = 2026-12-01T12:00:00+09:00", "modes.event.schedule.0.start = 2026-12-01T10:00:00",
     "UTC からの時差を付けてください", "Input should have timezone info"),
    ("[mqtt]\nreconnect_min_s = 100\nreconnect_max_s = 1", "mqtt.reconnect_max_s = 1",
     "mqtt.reconnect_min_s = 100 より小さい値です", "less than mqtt.reconnect_min_s = 100"),
], ids=["unknown-key", "wrong-type", "missing", "url-not-text", "bad-mode", "bad-pattern",
        "out-of-range", "own-validator", "state-dir", "naive-time", "min-above-max"])
def test_a_wrong_config_is_explained_in_the_readers_language(
        tmp_path: Path, text: str, key: str, japanese: str, english: str) -> None:
    bad = tmp_path / "reader.toml"
    bad.write_text(text + "\n")
    ja = refused(cli("config", "show", "--config", str(bad), lang=JA))
    assert ja.startswith("sukumo-reader: 設定に誤りがあります:\n")
    assert f"設定 {key}（ファイル {bad}）: " in ja and japanese in ja, ja
    assert not any(words in ja for words in PYDANTIC_ENGLISH), ja
    en = refused(cli("config", "show", "--config", str(bad), lang=EN))
    assert en.startswith("sukumo-reader: invalid configuration:\n")
    assert f"setting {key} (file {bad}): " in en and english in en, en


def test_a_file_mistake_and_the_environment_are_explained_in_japanese(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.toml"
    assert refused(cli("config", "show", "--config", str(missing), lang=JA)) == \
        f"sukumo-reader: 設定ファイル {missing} がありません\n"
    assert refused(cli("config", "show", "--config", str(missing), lang=EN)) == \
        f"sukumo-reader: config file {missing} does not exist\n"

    broken = tmp_path / "broken.toml"
    broken.write_text("[reader\n")
    assert f"設定ファイル {broken} は正しい TOML ではありません" in refused(
        cli("config", "show", "--config", str(broken), lang=JA))

    good = tmp_path / "reader.toml"
    good.write_text("")
    typo = refused(cli("config", "show", "--config", str(good), lang=JA,
                       SUKUMO_READER_LOGG__LEVEL="DEBUG"))
    assert "環境変数 SUKUMO_READER_LOGG__LEVEL: 設定の区分 'logg' はありません" in typo
    value = refused(cli("config", "show", "--config", str(good), lang=JA,
                        SUKUMO_READER_LOG__LEVEL="LOUD"))
    assert "設定 log.level = 'LOUD'（環境変数 SUKUMO_READER_LOG__LEVEL）: " in value
    assert "'DEBUG' / 'INFO' / 'WARNING' / 'ERROR' のどれかにしてください" in value
    not_json = refused(cli("config", "show", "--config", str(good), lang=JA,
                           SUKUMO_READER_MODES__COUPON__KINDS="[{"))
    assert "環境変数 SUKUMO_READER_MODES__COUPON__KINDS（設定 modes.coupon.kinds）: " \
           "正しい JSON ではありません" in not_json


def test_config_show_and_status_speak_japanese_but_their_json_stays(tmp_path: Path) -> None:
    good = tmp_path / "reader.toml"
    good.write_text(f"[paths]\nstate_dir = '{tmp_path / 'state'}'\n")
    shown = cli("config", "show", "--config", str(good), lang=JA)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == f"# 設定ファイル: {good}"
    row = next(line for line in lines if line.startswith("paths.state_dir "))
    assert row.endswith(f"   # ファイル {good}")  # the key and value as the file has them
    assert next(line for line in lines if line.startswith("sound.volume ")).endswith("# 既定値")
    rows = json.loads(cli("config", "show", "--json", "--config", str(good), lang=JA).stdout)
    assert {r["source"] for r in rows} == {"default", f"file {good}"}

    status = cli("status", "--config", str(good), lang=JA)
    assert status.returncode == 1
    assert status.stdout.startswith("デーモン      ")  # columns as wide as the widest label
    assert "状態ファイルがありません" in status.stdout
    english = cli("status", "--config", str(good), lang=EN)
    assert english.stdout.startswith("daemon    no status file at ")
    as_json = json.loads(cli("status", "--json", "--config", str(good), lang=JA).stdout)
    assert as_json["why"].endswith(": the daemon has not run here")


def test_status_says_the_daemons_states_in_words(tmp_path: Path) -> None:
    config = tmp_path / "reader.toml"
    config.write_text(f"[paths]\nstate_dir = '{tmp_path / 'state'}'\n")
    (tmp_path / "state").mkdir()
    # What a daemon that has stopped left behind: its reader gone, the city unreachable.
    (tmp_path / "state" / "status.json").write_text(json.dumps({
        "pid": 2 ** 22 + 1, "started_at": "2026-12-01T08:00:00.000Z",
        "updated_at": "2026-12-01T08:05:00.000Z", "mode": "checkin", "reader": "missing",
        "audio": "ok", "last_tap": None, "queue": {"pending": 3},
        "sync": {"state": "offline", "protocol": None, "last_ack_at": None},
        "versions": {"app": "0.1.0"}}))
    ja = cli("status", "--config", str(config), lang=JA).stdout
    # States in words; their codes (missing, ok, offline) are in --json only.
    assert "見つかりません（USB ケーブルを確認してください）" in ja, ja
    assert "動いています" in ja and "未接続（タッチはキューに保存されます）" in ja, ja
    assert "missing" not in ja and "offline" not in ja, ja
    en = cli("status", "--config", str(config), lang=EN).stdout
    assert "not found (check its USB cable)" in en, en
    assert "working" in en and "not connected (taps stay queued)" in en, en
    as_json = json.loads(cli("status", "--json", "--config", str(config), lang=JA).stdout)
    assert as_json["status"]["reader"] == "missing"  # the value itself, for scripts


@pytest.fixture
def japanese(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in [n for n in os.environ if n.startswith(("LANG", "LC_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("LANG", JA)
    i18n.install()
    yield
    monkeypatch.undo()
    i18n.install()


def test_a_refused_bundle_and_a_bad_profiles_file_say_why_in_japanese(
        japanese: None, tmp_path: Path) -> None:
    # What `bundle import` prints for a config bundle the terminal refuses.
    with pytest.raises(ConfigError) as err:
        apply_bundle_settings(Settings(), {"volume": "1", "mode": "checkin"})
    assert str(err.value).startswith("設定バンドルを受け付けませんでした:\n  設定バンドルの項目 "
                                     "'volume'（sound.volume） = '1': 数値にしてください")
    with pytest.raises(ConfigError, match=r"設定 modes\.coupon\.kinds が空です"):
        apply_bundle_settings(Settings(), {"mode": "coupon"})
    profiles = tmp_path / "ap-profiles.toml"
    profiles.write_text("[profiles.checkin]\naid = 'zz'\n[profiles.parking]\n")
    with pytest.raises(ConfigError) as err:
        read_profiles(profiles)
    assert "profiles.checkin.aid = 'zz': 書き方が違います" in str(err.value)
    assert "知らないモード ['parking'] です" in str(err.value)


# -- the daemon: English whatever the locale ----------------------------------------------

def test_run_refuses_a_wrong_config_in_english_under_a_japanese_locale(tmp_path: Path) -> None:
    bad = tmp_path / "reader.toml"
    bad.write_text("[reader]\ntransprot = 'pcsc'\n")
    said = refused(cli("--config", str(bad), "run", lang=JA))
    # What systemd files in the journal: searchable English, as the log lines are.
    assert said.startswith("sukumo-reader: invalid configuration:\n  setting "
                           "reader.transprot = 'pcsc'"), said
    assert "設定" not in said


def test_the_daemon_logs_in_english_under_a_japanese_locale(tmp_path: Path) -> None:
    dep = Deployment(tmp_path)
    # A config bundle the city sent earlier, stored; with this file (no coupon kinds) the
    # daemon must refuse it at start and log why: a sentence of reader/config.
    store = TrustStore(bytes.fromhex(dep.issuer.root_public_hex), dep.issuer.muni, dep.tid,
                       dep.state / "bundles")
    store.load_persisted()
    store.apply("config", dep.issuer.config_bundle(dep.tid, {"mode": "coupon"}))
    daemon = DaemonProc(dep, env={"LANGUAGE": "", "LC_ALL": "", "LC_MESSAGES": "", "LANG": JA})
    try:
        daemon.wait_ready()
        wait_for(lambda: daemon.logged("stored bundle unusable"), 10, "the refusal logged")
        (entry,) = daemon.logged("stored bundle unusable")
        assert entry["why"] == ("config bundle refused: setting modes.coupon.kinds is empty: a "
                                "coupon terminal needs at least one [[modes.coupon.kinds]] "
                                "(code, rule, limit, period)"), entry
        logged = json.dumps(daemon.log_entries(), ensure_ascii=False)
        assert not any(ord(c) >= 0x3000 for c in logged), logged  # no kana, no kanji
    finally:
        assert daemon.terminate() == 0
