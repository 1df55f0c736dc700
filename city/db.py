"""The city's PostgreSQL: migrations and the named operations of everything else.

All SQL is in city/sql/: numbered migrations (`NNNN_pre_*.sql` are safe while instances
of the previous version still run; `NNNN_post_*.sql` once every instance runs this one,
as procrastinate does), and queries.sql, whose statements this module runs by name. No
other module builds SQL.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any, Literal

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

if TYPE_CHECKING:
    from city.bundles import Facts

_MIGRATION_NAME = re.compile(r"^(\d{4})_(pre|post)_[a-z0-9_]+\.sql$")

Phase = Literal["pre", "post", "all"]


def _sql_text(name: str) -> str:
    return (resources.files("city") / "sql" / name).read_text(encoding="utf-8")


def load_queries(file_name: str = "queries.sql") -> dict[str, str]:
    """{name: statement} of one file of named queries (city/web/store.py reads web.sql)."""
    queries: dict[str, str] = {}
    name = None
    for line in _sql_text(file_name).splitlines():
        if line.startswith("-- name: "):
            name = line.removeprefix("-- name: ").strip()
            queries[name] = ""
        elif name is not None and not line.startswith("--"):
            queries[name] += line + "\n"
    return {k: v.strip() for k, v in queries.items()}


Q = load_queries()


def migrations() -> list[tuple[str, str]]:
    """(file name, phase) of every migration, in order."""
    files = sorted(p.name for p in (resources.files("city") / "sql").iterdir()
                   if _MIGRATION_NAME.match(p.name))
    return [(name, _MIGRATION_NAME.match(name).group(2)) for name in files]  # type: ignore[union-attr]


def migrate(conninfo: str, phase: Phase = "all") -> list[str]:
    """Apply the migrations not yet applied (of `phase`), all in one transaction: if one
    fails, the database is as it was. The names applied; [] when up to date."""
    with psycopg.connect(conninfo) as conn, conn.transaction():
        conn.execute(Q["lock_migrations"])
        conn.execute(Q["create_migrations_table"])
        done = {row[0] for row in conn.execute(Q["applied_migrations"])}
        applied = []
        for name, kind in migrations():
            if name in done or (phase != "all" and kind != phase):
                continue
            conn.execute(_sql_text(name))  # a file of ours, no parameters
            conn.execute(Q["record_migration"], {"name": name})
            applied.append(name)
        return applied


def pending_migrations(conninfo: str) -> list[str]:
    with psycopg.connect(conninfo) as conn:
        conn.execute(Q["create_migrations_table"])
        done = {row[0] for row in conn.execute(Q["applied_migrations"])}
    return [name for name, _ in migrations() if name not in done]


@dataclass(frozen=True)
class StoredEvent:
    """One §2 event as the intake checked it: the columns, and the body as received."""

    id: str
    seq: int
    at: dt.datetime
    mode: str
    facility: str
    result: str
    reason: str | None
    member_id: str | None
    body: dict[str, Any]

    def row(self) -> dict[str, Any]:
        return {"id": self.id, "seq": self.seq, "at": self.at.isoformat(), "mode": self.mode,
                "facility": self.facility, "result": self.result, "reason": self.reason,
                "member_id": self.member_id, "body": self.body}


@dataclass(frozen=True)
class Stored:
    new: int  # events stored now
    copies: int  # events that were already stored (re-sends): counted, not stored


@dataclass(frozen=True)
class TerminalState:
    """What a §4 status (or the Will) says, as the terminals table keeps it."""

    muni: str
    tid: str
    online: bool
    status: dict[str, Any]
    received_at: dt.datetime
    pending: int | None = None
    oldest_unacked: dt.datetime | None = None
    app_version: str | None = None
    bundle_versions: dict[str, Any] | None = None
    alarms: tuple[str, ...] = ()
    cert_not_after: dt.datetime | None = None


@dataclass(frozen=True)
class Maintained:
    created: list[str]  # months whose partitions were made
    dropped: list[str]  # partitions dropped by retention
    outside: int  # events in no monthly partition (kept)


class Store:
    """The named operations of the intake and the commands, over a connection pool."""

    def __init__(self, conninfo: str, *, pool_size: int = 4,
                 statement_timeout_s: float = 30.0, name: str = "sukumo-city") -> None:
        options = f"-c statement_timeout={int(statement_timeout_s * 1000)}"
        self.pool = ConnectionPool(
            conninfo, min_size=1, max_size=pool_size, open=False, name=name,
            kwargs={"options": options, "application_name": name},
            # A connection broken by a database restart is replaced before use; a worker
            # waits at most `timeout` for one, then the batch waits for a re-send.
            check=ConnectionPool.check_connection, timeout=5.0)

    def open(self, wait: bool = False, timeout: float = 10.0) -> Store:
        self.pool.open(wait=wait, timeout=timeout)
        return self

    def close(self) -> None:
        self.pool.close()

    def ping(self) -> None:
        with self.pool.connection(timeout=5) as conn:
            conn.execute("SELECT 1")

    def store_batch(self, muni: str, tid: str, events: Sequence[StoredEvent],
                    receiver: str) -> Stored:
        """One batch of one terminal in ONE transaction: every id claimed once, re-sent
        ones counted as copies, the new rows written, the seq ranges kept current. When
        this returns, the events are committed and may be acked."""
        unique: dict[str, StoredEvent] = {}
        extra: list[str] = []  # an id twice in one batch: a copy too
        for event in events:
            if event.id in unique:
                extra.append(event.id)
            else:
                unique[event.id] = event
        key = {"muni": muni, "tid": tid}
        with self.pool.connection() as conn, conn.transaction():
            conn.execute(Q["touch_terminal"], key)
            new = {str(row[0]) for row in conn.execute(
                Q["claim_ids"], {**key, "ids": list(unique)})}
            again = [i for i in unique if i not in new] + extra
            if again:
                conn.execute(Q["count_copies"], {"ids": again})
            fresh = [e for i, e in unique.items() if i in new]
            if fresh:
                conn.execute(Q["insert_events"], {
                    **key, "receiver": receiver,
                    "events": json.dumps([e.row() for e in fresh], ensure_ascii=False)})
                conn.execute(Q["note_seqs"], {**key, "seqs": [e.seq for e in fresh]})
        return Stored(len(fresh), len(again))

    def save_status(self, state: TerminalState) -> None:
        with self.pool.connection() as conn:
            conn.execute(Q["save_status"], {
                "muni": state.muni, "tid": state.tid, "online": state.online,
                "status": json.dumps(state.status, ensure_ascii=False),
                "received_at": state.received_at, "pending": state.pending,
                "oldest_unacked": state.oldest_unacked, "app_version": state.app_version,
                "bundle_versions": None if state.bundle_versions is None
                else json.dumps(state.bundle_versions),
                "alarms": json.dumps(list(state.alarms), ensure_ascii=False),
                "cert_not_after": state.cert_not_after})

    def maintain(self, *, retention_months: int, months_ahead: int) -> Maintained:
        """Partitions for this month and `months_ahead` more; months older than
        `retention_months` (this one included) dropped whole. Safe from any instance."""
        with self.pool.connection() as conn, conn.transaction():
            conn.execute(Q["lock_maintenance"])
            created = [str(m) for m, made in conn.execute(Q["ensure_months"],
                                                          {"ahead": months_ahead}) if made]
            dropped = [row[0] for row in conn.execute(Q["drop_old_months"],
                                                      {"keep": retention_months})]
            outside = conn.execute(Q["rows_outside_months"]).fetchone()
        return Maintained(created, dropped, int(outside[0]) if outside else 0)

    def add_town(self, muni: str) -> str:
        with self.pool.connection() as conn:
            row = conn.execute(Q["add_town"], {"muni": muni}).fetchone()
        assert row is not None
        return str(row[0])

    def summary(self) -> list[dict[str, Any]]:
        with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            return list(cur.execute(Q["summary"]))

    def gaps(self) -> list[dict[str, Any]]:
        with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            return list(cur.execute(Q["gaps"]))

    # -- the bundle registry (city/bundles.py's Registry) ---------------------------------

    def last_bundle_version(self, muni: str, kind: str, tid: str, *,
                            published: bool) -> int:
        with self.pool.connection() as conn:
            row = conn.execute(Q["last_bundle_version"], {
                "muni": muni, "kind": kind, "tid": tid, "published": published}).fetchone()
        return int(row[0]) if row else 0

    def record_bundle(self, facts: Facts, *, action: str, by: str, key: str) -> None:
        with self.pool.connection() as conn:
            conn.execute(Q["record_bundle"], {
                "action": action, "muni": facts.muni, "kind": facts.kind, "tid": facts.tid,
                "version": facts.version, "sha256": facts.sha256, "size": facts.size,
                "by_whom": by, "key": key})

    def bundle_log(self) -> list[dict[str, Any]]:
        with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            return list(cur.execute(Q["bundle_log"]))
