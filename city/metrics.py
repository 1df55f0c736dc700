"""What the city's monitoring scrapes (Prometheus, `GET /metrics` on `[web] listen`).

Two kinds, from two places, so that N instances add up:
- this instance's own work — counters and the lag histogram (`IntakeMetrics`) and the
  state of its links (`city/health.py`): each instance exports its own, Prometheus sums
  them (`sum by (muni) (rate(sukumo_city_events_stored_total[5m]))`);
- the fleet — gauges read from PostgreSQL at scrape time (`FleetCollector`): every
  instance answers the same, so alert on `max` of them, never `sum`.

Names follow Prometheus's rules: a `sukumo_city_` prefix, `_total` counters, base units
(`_seconds`), and labels of low cardinality only — the town (`muni`, 34 in a prefecture),
a state — never a terminal id or a member: 3,000 terminals would be 3,000 series each.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from typing import Any

import psycopg
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from psycopg_pool import ConnectionPool, PoolTimeout

from city.web.store import run

log = logging.getLogger(__name__)

# From a few ms (idle) to the terminals' ack timeout (30 s) and beyond: a lag past 30 s
# means terminals are re-sending.
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class IntakeMetrics:
    """This instance's counters; the intake calls these after each committed batch."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.stored = Counter(
            "sukumo_city_events_stored_total",
            "Events stored for the first time by this instance", ["muni"], registry=registry)
        self.duplicates = Counter(
            "sukumo_city_events_duplicate_total",
            "Events received again (re-sends) and counted, not stored twice", ["muni"],
            registry=registry)
        self.rejected = Counter(
            "sukumo_city_events_rejected_total",
            "Events refused for good (mqtt-v1 §3 rejected: schema)", ["muni"],
            registry=registry)
        self.acks = Counter(
            "sukumo_city_acks_sent_total", "Acks published, one per stored batch",
            ["muni"], registry=registry)
        self.deferred = Counter(
            "sukumo_city_batches_deferred_total",
            "Batches not acked (queue full, database unavailable): the terminal re-sends",
            ["reason"], registry=registry)
        self.lag = Histogram(
            "sukumo_city_intake_lag_seconds",
            "From a batch's arrival at this instance to its ack published",
            buckets=LAG_BUCKETS, registry=registry)
        self.queued = Gauge(
            "sukumo_city_intake_queue_batches",
            "Batches received and waiting for a database worker", registry=registry)

    def batch_stored(self, muni: str, new: int, copies: int, rejected: int,
                     lag_s: float) -> None:
        self.stored.labels(muni).inc(new)
        self.duplicates.labels(muni).inc(copies)
        if rejected:
            self.rejected.labels(muni).inc(rejected)
        self.acks.labels(muni).inc()
        self.lag.observe(lag_s)


FLEET_GAUGES: list[tuple[str, str]] = [
    ("sukumo_city_terminals_with_alarms", "Terminals whose last status carries an alarm"),
    ("sukumo_city_terminal_alarms", "Alarms in the terminals' last statuses"),
    ("sukumo_city_terminal_events_pending",
     "Events the terminals hold and the city has not acked (their last statuses)"),
    ("sukumo_city_terminal_oldest_unacked_seconds",
     "Age of the oldest tap a terminal of the town still holds, unacked"),
    ("sukumo_city_certificates_expiring",
     "Terminals whose client certificate expires within [web] cert_warn_days"),
    ("sukumo_city_events_missing",
     "Events recorded by terminals (their seq) that have not arrived (city.gaps_v1)"),
]


class FleetCollector(Collector):
    """Fleet gauges per town, from PostgreSQL at each scrape (a few aggregate rows: the
    terminals table and the seq ranges, never the events). A database that does not
    answer within `timeout_s` gives `sukumo_city_fleet_up 0` and no fleet series, rather
    than a scrape that hangs or numbers that are stale."""

    def __init__(self, pool: ConnectionPool[Any], cert_warn_days: int = 30,
                 silent_minutes: int = 10, timeout_s: float = 3.0) -> None:
        self.pool = pool
        self.cert_warn_days = cert_warn_days
        self.silent_minutes = silent_minutes
        self.timeout_s = timeout_s

    def describe(self) -> list[Any]:
        return []  # collected at scrape time only: registering must not touch the database

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("sukumo_city_fleet_up",
                               "1 when the fleet gauges could be read from the database")
        try:
            with self.pool.connection(timeout=self.timeout_s) as conn, conn.transaction():
                conn.execute(f"SET LOCAL statement_timeout = {int(self.timeout_s * 1000)}")
                rows = run(conn, "fleet_gauges", warn=dt.timedelta(days=self.cert_warn_days),
                           silent=dt.timedelta(minutes=self.silent_minutes))
        except (psycopg.Error, PoolTimeout) as exc:
            log.debug("fleet gauges unavailable", extra={"fields": {"error": str(exc)[:200]}})
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        terminals = GaugeMetricFamily(
            "sukumo_city_terminals", "Terminals by state: online, silent (online by its "
            "last word but no word for [web] silent_minutes), offline", labels=["muni",
                                                                                "state"])
        families = [GaugeMetricFamily(name, text, labels=["muni"]) for name, text
                    in FLEET_GAUGES]
        for muni, online, silent, offline, *values in rows:
            terminals.add_metric([muni, "online"], online)
            terminals.add_metric([muni, "silent"], silent)
            terminals.add_metric([muni, "offline"], offline)
            for family, value in zip(families, values, strict=True):
                family.add_metric([muni], float(value or 0))
        yield terminals
        yield from families


def make_registry() -> CollectorRegistry:
    """A registry of our own (not the process-global one: tests run several in one
    process), with the Python process metrics a city's dashboards expect."""
    from prometheus_client import PROCESS_COLLECTOR, disable_created_metrics

    disable_created_metrics()  # `_created` series per label set: noise for a city's alerts
    registry = CollectorRegistry()
    registry.register(PROCESS_COLLECTOR)
    return registry
