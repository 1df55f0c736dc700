"""The state of an instance's two links — the broker and the database — as a log line a
person can act on and a metric a city's monitoring alerts on.

The intake reports what happens (`broker_up`, `broker_failed(exc)`, `database_up`,
`database_failed(exc)`); this module names the problem, sets the state gauges
(`sukumo_city_broker_up`, `sukumo_city_broker_state{state}`, the same for the database)
and logs it at error level with the fix — once when the state changes and again every
`REMIND_S` while it lasts, never once per retry (a broker refusing us every 2 s would
bury everything else in the journal).

Logs stay English (the journal is searched, reader/system/i18n.py); the fix is a field
of its own (`fix=`) so a log pipeline can show it apart.
"""

from __future__ import annotations

import errno
import logging
import ssl
import threading
import time
from dataclasses import dataclass

import psycopg
from prometheus_client import CollectorRegistry, Gauge
from psycopg_pool import PoolTimeout

from reader.system.logs import fields

log = logging.getLogger("city.health")
REMIND_S = 300.0


@dataclass(frozen=True)
class Problem:
    state: str  # the `state` label: short, fixed, documented in docs/city.md
    message: str
    fix: str


BROKER_STATES = ("connected", "connecting", "tls_untrusted", "tls_refused", "refused",
                 "unreachable", "no_answer")
DATABASE_STATES = ("ok", "unreachable", "login_refused", "disk_full", "read_only", "slow",
                   "error")


_TLS_REFUSED_FIX = ("the broker does not accept mqtt.cert_file: check mqtt.cert_file and "
                    "mqtt.key_file are the city receiver's pair, signed by the CA the broker's "
                    "city listener trusts (its cafile), and not expired")
_LOST_FIX = ("check that the broker runs and answers at mqtt.url; the terminals keep their "
             "events meanwhile")


class PahoErrors(logging.Handler):
    """paho's error lines (its logger), the last one kept: paho swallows the exception of
    a failed read and only logs it ("failed to receive on socket: <the SSL error>")."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.last: str | None = None
        self.logger = logging.getLogger("city.paho")
        self.logger.setLevel(logging.ERROR)  # paho asks first: no cost per packet
        self.logger.propagate = False
        self.logger.addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("failed to"):  # not its "Client is not connected" after it
            self.last = message

    def take(self) -> str | None:
        last, self.last = self.last, None
        return last


def broker_problem(error: BaseException | str | None) -> Problem:
    """What a failed connection to the broker means, from paho's exception (or a CONNACK
    reason, or paho's last error line, as text), and who fixes it how."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return Problem("tls_untrusted",
                       "TLS refused: the broker's certificate does not verify against "
                       f"mqtt.ca_file ({error.verify_message})",
                       "set mqtt.ca_file to the CA that signed the broker's certificate, and "
                       "use the host name that certificate names in mqtt.url")
    if isinstance(error, ssl.SSLError | ConnectionResetError | BrokenPipeError):
        return Problem("tls_refused", f"TLS handshake with the broker failed ({error})",
                       _TLS_REFUSED_FIX)
    if isinstance(error, ConnectionRefusedError):
        return Problem("unreachable", f"broker unreachable: nothing listens there ({error})",
                       "start the broker, or correct host and port in mqtt.url")
    if isinstance(error, TimeoutError) or (
            isinstance(error, OSError) and error.errno in (errno.ETIMEDOUT,
                                                           errno.EHOSTUNREACH,
                                                           errno.ENETUNREACH)):
        return Problem("no_answer", f"broker unreachable: it does not answer ({error})",
                       "check mqtt.url, the network and firewall between this host and the "
                       "broker, and that the broker is not overloaded")
    if isinstance(error, OSError):
        return Problem("unreachable", f"broker unreachable ({error})",
                       "check mqtt.url, that the broker runs and that the network lets this "
                       "host through")
    if isinstance(error, str) and error.startswith("CONNACK"):
        return Problem("refused", f"the broker refused this instance ({error})",
                       "the broker knows our certificate but refuses its user or client id: "
                       "check its ACL has the city receiver's CN, and mqtt.client_id")
    if isinstance(error, str) and ("ssl" in error.lower() or "alert" in error.lower()):
        # TLS 1.3 finishes the client's handshake before the broker checks our
        # certificate: the refusal comes as an SSL error on the first read, seen only in
        # paho's log (`PahoErrors`), before any CONNACK.
        return Problem("tls_refused", "TLS handshake with the broker failed (it closed the "
                       f"connection: {error})", _TLS_REFUSED_FIX)
    return Problem("no_answer", f"broker connection lost ({error})", _LOST_FIX)


# SQLSTATE classes and codes (PostgreSQL manual, appendix A) → our states.
_SQLSTATE = {
    "53100": "disk_full", "28P01": "login_refused", "28000": "login_refused",
    "3D000": "login_refused", "25006": "read_only", "57014": "slow",
    "57P01": "unreachable", "57P02": "unreachable", "57P03": "unreachable",
}
_DB_FIX = {
    "unreachable": "check that PostgreSQL runs and that [database] dsn reaches it",
    "login_refused": "check the user, database and password of [database] dsn "
                     "(~/.pgpass or PGPASSWORD) and pg_hba.conf",
    "disk_full": "free space on the database server's disk (or `sukumo-city maintain` "
                 "to drop partitions past retention)",
    "read_only": "[database] dsn points at a standby: point it at the primary",
    "slow": "the database is slower than [database] statement_timeout_s: look for locks "
            "(pg_stat_activity) or load",
    "error": "see the error; `sukumo-city migrate` if the schema is behind",
}
_DB_WHAT = {"unreachable": "database lost", "login_refused": "database login refused",
            "disk_full": "database disk full", "read_only": "database read-only",
            "slow": "database too slow", "error": "database error"}


def database_problem(error: BaseException) -> Problem:
    code = getattr(error, "sqlstate", None) or ""
    state = _SQLSTATE.get(code)
    if state is None:
        is_link = isinstance(error, psycopg.OperationalError | PoolTimeout)
        state = "unreachable" if is_link else "error"
    text = str(error).strip().splitlines()[0][:300] if str(error).strip() else repr(error)
    return Problem(state, f"{_DB_WHAT[state]} ({text}): batches wait unacknowledged, the "
                   "terminals keep them", _DB_FIX[state])


class Health:
    """The two links' states; thread-safe (paho's thread, the database workers)."""

    def __init__(self, registry: CollectorRegistry, remind_s: float = REMIND_S) -> None:
        self.remind_s = remind_s
        self._lock = threading.Lock()
        self._last: dict[str, tuple[str, float]] = {}
        self.broker_gauge = Gauge("sukumo_city_broker_up",
                                  "1 while this instance is connected to the broker",
                                  registry=registry)
        self.broker_states = Gauge("sukumo_city_broker_state",
                                   "This instance's link to the broker: 1 for its state",
                                   ["state"], registry=registry)
        self.database_gauge = Gauge("sukumo_city_database_up",
                                    "1 while this instance's last database operation "
                                    "succeeded", registry=registry)
        self.database_states = Gauge("sukumo_city_database_state",
                                     "This instance's link to PostgreSQL: 1 for its state",
                                     ["state"], registry=registry)
        # Until the first connection and the first query say otherwise: down, no state.
        self._set(self.broker_states, BROKER_STATES, "connecting")
        self._set(self.database_states, DATABASE_STATES, "")
        self.broker_gauge.set(0)
        self.database_gauge.set(0)

    @property
    def broker_state(self) -> str:
        with self._lock:
            return self._last.get("broker", ("connecting", 0.0))[0]

    @staticmethod
    def _set(gauge: Gauge, states: tuple[str, ...], state: str) -> None:
        for s in states:
            gauge.labels(s).set(1 if s == state else 0)

    def _report(self, link: str, problem: Problem | None, ok_state: str,
                **context: object) -> None:
        """Log on a change of state, and as a reminder while a problem lasts."""
        state = problem.state if problem else ok_state
        now = time.monotonic()
        with self._lock:
            before = self._last.get(link)
            due = before is None or before[0] != state or (
                problem is not None and now - before[1] >= self.remind_s)
            if due:
                self._last[link] = (state, now)
        if not due:
            return
        if problem is not None:
            # The fix in the line itself (a person reads it) and as a field (a pipeline).
            log.error(f"{problem.message}; {problem.fix}", **fields(
                link=link, state=state, fix=problem.fix, **context))
        elif before is None or before[0] != ok_state:
            log.info(f"{link} connected", **fields(link=link, state=state,
                                                   was=before[0] if before else None,
                                                   **context))

    # -- the broker -----------------------------------------------------------------------
    def broker_up(self, **context: object) -> None:
        self.broker_gauge.set(1)
        self._set(self.broker_states, BROKER_STATES, "connected")
        self._report("broker", None, "connected", **context)

    def broker_failed(self, error: BaseException | str | None, **context: object) -> Problem:
        """A connection attempt failed (an exception), or the broker's CONNACK refused us
        (its reason as text)."""
        return self._broker_down(broker_problem(error), **context)

    def broker_lost(self, why: str, **context: object) -> Problem:
        """A connection that worked went away (keepalive unanswered, broker stopped)."""
        return self._broker_down(Problem(
            "no_answer", f"broker connection lost ({why}); reconnecting", _LOST_FIX),
            **context)

    def _broker_down(self, problem: Problem, **context: object) -> Problem:
        self.broker_gauge.set(0)
        self._set(self.broker_states, BROKER_STATES, problem.state)
        self._report("broker", problem, "connected", **context)
        return problem

    # -- the database ---------------------------------------------------------------------
    def database_up(self, *, wrote: bool = True) -> None:
        """An operation succeeded. A full disk or a read-only standby is over only when
        new rows were written (`wrote`): a status updated in place, or a ping, fits in
        pages that are already there and proves nothing (it would make the state, and
        its error line, flap with every batch)."""
        with self._lock:
            state = self._last.get("database", ("", 0.0))[0]
        if not wrote and state in ("disk_full", "read_only"):
            return
        self.database_gauge.set(1)
        self._set(self.database_states, DATABASE_STATES, "ok")
        self._report("database", None, "ok")

    def database_reachable(self) -> None:
        """The watcher's ping went through: back from `unreachable`, not more."""
        with self._lock:
            state = self._last.get("database", ("", 0.0))[0]
        if state in ("", "ok", "unreachable", "login_refused"):
            self.database_up()

    def database_failed(self, error: BaseException) -> Problem:
        problem = database_problem(error)
        self.database_gauge.set(0)
        self._set(self.database_states, DATABASE_STATES, problem.state)
        self._report("database", problem, "ok")
        return problem
