"""`scripts/bench --json --smoke`: the benchmark command runs here and its figures are sane.

The smoke run is the full benchmark on a smaller setting (30 timed taps, a 2,000-event
drain, 500 taps fed to a real daemon, 5 s of idle CPU). It runs every stack for real:
the tap loop with real ALSA on a null device, SQLite on disk, mosquitto and the city
service on PostgreSQL, real `sukumo-reader run` processes. What it checks is what a reader
of the benchmark relies on: every key is there, and every number is a measurement that
could be true (positive, finite, percentiles ordered), not whether this CI machine meets
the goals, which are for the figures in docs/benchmarks.md.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.timeout(360)

KEYS = [
    "tap_to_chime_ms_p50", "tap_to_chime_ms_p99", "software_overhead_ms_p50",
    "software_overhead_ms_p99", "verify_ms_p99", "durable_commit_ms_p50",
    "durable_commits_per_s", "pcsc_tap_ms_p50", "nfcpy_tap_ms_p50", "drain_events_per_s",
    "drain_rss_growth_mb", "drain_vs_bare_ratio", "drain_sync_vs_acker_events_per_s",
    "drain_bare_events_per_s", "drain_sync_cpu_us_per_event", "drain_bare_cpu_us_per_event",
    "rss_mb_idle", "rss_mb_after_10k_taps", "startup_s",
    "idle_cpu_percent", "feedback_off_tap_to_chime_ms_p99", "feedback_on_tap_to_chime_ms_p99",
    "kiosk_update_ms_p99", "feedback_off_rss_mb_idle", "feedback_on_rss_mb_idle",
    "kiosk_closed_after_kill_ms_max", "tap_ms_p99_backlog_0", "tap_ms_p99_backlog_1m",
    "ready_s_backlog_1m",
    "tap_p99_backlog_ratio",
    "denylist_mb_per_1m", "denylist_lookup_us", "denylist_load_s", "rss_mb_import_floor",
    "rss_mb_libraries_floor", "tap_ms_extra_aid",
    "city_intake_events_per_s_1", "city_intake_events_per_s_2", "city_intake_vs_bare_ratio",
    "city_intake_2_vs_1_ratio", "city_prefecture_day_s",
    "fsyncs_per_tap", "fsyncs_per_bare_commit", "bytes_written_per_tap",
    "bytes_written_per_bare_commit", "tap_to_chime_ms_p99_sd", "bare_commit_ms_p99_sd",
    "tap_to_chime_ms_max_sd", "bare_commit_ms_max_sd",
]
GOAL_KEYS = ["tap_to_chime_ms_p99", "software_overhead_ms_p99", "drain_events_per_s",
             "drain_vs_bare_ratio", "rss_mb_idle", "startup_s", "idle_cpu_percent",
             "kiosk_update_ms_p99", "kiosk_closed_after_kill_ms_max", "ready_s_backlog_1m",
             "tap_p99_backlog_ratio",
             "denylist_mb_per_1m", "denylist_lookup_us", "denylist_load_s",
             "rss_mb_idle_over_floor", "city_intake_vs_bare_ratio", "city_intake_2_vs_1_ratio",
             "city_prefecture_lost", "city_prefecture_stored_twice", "fsyncs_tap_vs_bare",
             "bytes_written_tap_vs_bare", "tap_over_bare_ms_p99_sd"]


@pytest.fixture(scope="module")
def figures() -> dict:
    if shutil.which("mosquitto") is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto): no drain figure")
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "bench"), "--json", "--smoke"],
                          cwd=REPO, capture_output=True, text=True, timeout=320)
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, f"stdout must hold the JSON object only: {proc.stdout[:2000]}"
    return json.loads(lines[0])


def test_every_key_is_present(figures: dict) -> None:
    missing = [key for key in KEYS if key not in figures]
    assert not missing
    assert figures["smoke"] is True
    assert figures["machine"]["cpus"] >= 1 and figures["machine"]["mem_gib"] > 0


def test_numbers_are_measurements(figures: dict) -> None:
    for key in KEYS:
        value = figures[key]
        if key in ("pcsc_tap_ms_p50", "nfcpy_tap_ms_p50", "tap_ms_extra_aid") and value is None:
            assert figures["notes"], f"{key} is null without a note saying why"
            continue
        assert isinstance(value, int | float) and math.isfinite(value), (key, value)
        if key in ("drain_rss_growth_mb", "idle_cpu_percent"):
            assert value >= 0, (key, value)  # may be 0 within the kernel's resolution
        else:
            assert value > 0, (key, value)


def test_percentiles_ordered_and_consistent(figures: dict) -> None:
    assert figures["tap_to_chime_ms_p99"] >= figures["tap_to_chime_ms_p50"]
    assert figures["software_overhead_ms_p99"] >= figures["software_overhead_ms_p50"]
    assert figures["verify_ms_p99"] >= figures["verify_ms_p50"]
    assert figures["durable_commit_ms_p99"] >= figures["durable_commit_ms_p50"]
    # The card model is inside tap -> chime: a tap cannot be faster than the card.
    modelled = figures["apdus_per_tap"] * figures["apdu_ms"] + figures["sign_ms"]
    assert figures["card_model_ms"] == pytest.approx(modelled)
    assert figures["tap_to_chime_ms_p50"] >= modelled
    assert figures["tap_to_chime_ms_p50"] == pytest.approx(
        figures["card_time_ms_p50"] + figures["software_overhead_ms_p50"], abs=5.0)
    # A durable commit rate and its latency describe the same commits.
    assert figures["durable_commits_per_s"] <= 1000 / figures["durable_commit_ms_p50"] * 3


def test_drain_ratio_is_the_two_drains_measured_side_by_side(figures: dict) -> None:
    ratio = figures["drain_sync_vs_acker_events_per_s"] / figures["drain_bare_events_per_s"]
    assert figures["drain_vs_bare_ratio"] == pytest.approx(ratio)
    # The bare publisher only moves bytes: it cannot spend more CPU per event than the sync.
    assert figures["drain_bare_cpu_us_per_event"] < figures["drain_sync_cpu_us_per_event"]


def test_daemon_figures_plausible(figures: dict) -> None:
    assert figures["daemon_taps_fed"] == 500  # the smoke setting; 10,000 in a full run
    assert figures["rss_mb_after_10k_taps"] >= figures["rss_mb_idle"] * 0.5
    assert 10 < figures["rss_mb_idle"] < 1000
    assert figures["startup_s_max"] >= figures["startup_s"]
    assert figures["idle_cpu_percent"] <= 100 * (figures["machine"]["cpus"] or 1)


def test_storage_figures_side_by_side(figures: dict) -> None:
    # Each commit waits for at least one flush, each costing the model's 10 ms.
    assert figures["fsyncs_per_tap"] >= 1 and figures["fsyncs_per_bare_commit"] >= 1
    assert figures["bare_commit_ms_p99_sd"] >= figures["storage_model_fsync_ms"]
    assert figures["tap_to_chime_ms_p99_sd"] >= figures["storage_model_fsync_ms"]
    assert figures["tap_to_chime_ms_max_sd"] >= figures["tap_to_chime_ms_p99_sd"]
    assert figures["bare_commit_ms_max_sd"] >= figures["bare_commit_ms_p99_sd"]
    assert figures["bytes_written_per_bare_commit"] >= 4096  # at least a page
    assert figures["bytes_written_tap_vs_bare"] == pytest.approx(
        figures["bytes_written_per_tap"] / figures["bytes_written_per_bare_commit"])


def test_backlog_figures_side_by_side(figures: dict) -> None:
    assert figures["backlog_events"] == 20_000  # the smoke setting; 1,000,000 in a full run
    assert figures["tap_p99_backlog_ratio"] == pytest.approx(
        figures["tap_ms_p99_backlog_1m"] / figures["tap_ms_p99_backlog_0"])
    assert figures["ready_s_backlog_1m"] > 0 and figures["ready_s_backlog_0"] > 0


def test_memory_figures_plausible(figures: dict) -> None:
    # A million 8-byte serials cannot be held in less than their bytes.
    assert figures["denylist_serials"] == 1_000_000
    assert figures["denylist_mb_per_1m"] >= 8 * 1_000_000 / 2**20
    assert 0 < figures["denylist_lookup_us"] < 1000
    # The floor is python plus the daemon's imports: under the daemon, over a bare python.
    assert 10 < figures["rss_mb_libraries_floor"] <= figures["rss_mb_import_floor"] + 1
    assert figures["rss_mb_idle_over_floor"] == pytest.approx(
        figures["rss_mb_idle"] - figures["rss_mb_import_floor"])
    assert figures["import_floor_modules"] > 100


def test_city_intake_figures_side_by_side(figures: dict) -> None:
    assert figures["city_intake_vs_bare_ratio"] == pytest.approx(
        figures["city_intake_events_per_s_1"] / figures["city_intake_bare_events_per_s"])
    assert figures["city_intake_2_vs_1_ratio"] == pytest.approx(
        figures["city_intake_events_per_s_2"] / figures["city_intake_events_per_s_1"])
    # Every tap of the (smoke-sized) day is in PostgreSQL once: the goal and a fact here.
    assert figures["city_prefecture_taps"] == 5_000
    assert figures["city_prefecture_lost"] == 0 and figures["city_prefecture_stored_twice"] == 0


def test_goals_judged(figures: dict) -> None:
    assert set(figures["goals"]) == set(GOAL_KEYS)
    for key in GOAL_KEYS:
        assert figures["goals"][key] in (True, False), key
