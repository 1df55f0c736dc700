"""The fleet page's database operations, by name; their SQL is city/sql/web.sql.

Accounts and sessions are read with the service's own role. The fleet itself is read
inside a transaction that first takes the account's town role (`SET LOCAL ROLE town_…`,
from city.town_roles; the prefecture's `city_prefecture`), so what one town's staff see
is decided by PostgreSQL's row-level security (city/sql/0001), whatever this code does.
An account whose town has no role sees nothing: it is refused, never shown everything.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from dataclasses import dataclass
from functools import cache
from typing import Any

from psycopg import Connection, errors, sql
from psycopg_pool import ConnectionPool

from city.db import load_queries
from city.web.auth import Account
from city.web.chart import DayCount
from city.web.page import TerminalRow

PREFECTURE_ROLE = "city_prefecture"


class NoTownRole(LookupError):
    """The account's town has no PostgreSQL role (`sukumo-city add-town` not run)."""


class RoleNotGranted(PermissionError):
    """The service's own database user may not take the town's role (`SET ROLE` needs
    membership: `GRANT town_<muni> TO <service user>`)."""

    def __init__(self, role: str, user: str) -> None:
        super().__init__(role, user)
        self.role, self.user = role, user


@cache
def queries() -> dict[str, str]:
    """city/sql/web.sql as {name: statement}, read as city/db.py reads queries.sql."""
    return load_queries("web.sql")


def run(conn: Connection[Any], query: str, **params: Any) -> list[tuple[Any, ...]]:
    """The named query of web.sql, run on `conn`; its rows ([] for a statement)."""
    cur = conn.execute(queries()[query], params)
    return cur.fetchall() if cur.description else []


@dataclass(frozen=True)
class Session:
    account: Account
    csrf: str


# How long a role's plot counts are reused. The prefecture's are a count over every
# town's taps of the window (seconds at a prefecture's 300,000 taps a day); per day and
# facility, five minutes old is as good as new. Terminals are read fresh every time.
COUNTS_TTL_S = 300.0


class WebStore:
    def __init__(self, pool: ConnectionPool[Any], counts_ttl_s: float = COUNTS_TTL_S) -> None:
        self.pool = pool
        self.counts_ttl_s = counts_ttl_s
        self._counts: dict[tuple[str, dt.datetime, str], tuple[float, list[DayCount]]] = {}
        self._lock = threading.Lock()

    # -- accounts -------------------------------------------------------------------------
    def account(self, name: str) -> tuple[Account, str] | None:
        """The account and its password hash."""
        with self.pool.connection() as conn:
            rows = run(conn, "account", name=name)
        return (Account(rows[0][0], rows[0][1]), rows[0][2]) if rows else None

    def add_account(self, name: str, muni: str | None, password_hash: str) -> bool:
        with self.pool.connection() as conn:
            return bool(run(conn, "account_add", name=name, muni=muni,
                            password=password_hash))

    def list_accounts(self) -> list[tuple[Any, ...]]:
        with self.pool.connection() as conn:
            return run(conn, "account_list")

    def set_password(self, name: str, password_hash: str) -> bool:
        """New password; every session of the account ends (one transaction)."""
        with self.pool.connection() as conn, conn.transaction():
            changed = bool(run(conn, "account_passwd", name=name, password=password_hash))
            run(conn, "sessions_end_all", name=name)
            return changed

    def remove_account(self, name: str) -> bool:
        with self.pool.connection() as conn:
            return bool(run(conn, "account_remove", name=name))

    def town_has_role(self, muni: str) -> bool:
        with self.pool.connection() as conn:
            return bool(run(conn, "town_role", muni=muni))

    # -- sessions -------------------------------------------------------------------------
    def open_session(self, account: Account, token: bytes, csrf: str, ttl_s: int) -> None:
        with self.pool.connection() as conn:
            run(conn, "sessions_prune")
            run(conn, "session_add", token=token, account=account.name, csrf=csrf,
                ttl_s=ttl_s)

    def session(self, token: bytes) -> Session | None:
        with self.pool.connection() as conn:
            rows = run(conn, "session", token=token)
        return Session(Account(rows[0][0], rows[0][1]), rows[0][2]) if rows else None

    def end_session(self, token: bytes) -> None:
        with self.pool.connection() as conn:
            run(conn, "session_end", token=token)

    # -- the fleet, under the town's role ---------------------------------------------------
    def fleet(self, account: Account, since: dt.datetime, zone: str,
              town: str | None = None) -> tuple[list[TerminalRow], list[DayCount]]:
        """The terminals and the plot's counts the account's role may read; `town` narrows
        a prefecture account's plot to one town (a view, not a permission)."""
        plot_town = account.muni if not account.prefecture else town
        with self.pool.connection() as conn, conn.transaction():
            if account.prefecture:
                role = PREFECTURE_ROLE
            else:
                found = run(conn, "town_role", muni=account.muni)
                if not found:
                    raise NoTownRole(account.muni)
                role = found[0][0]
            # SET LOCAL: the role ends with this transaction, so a pooled connection never
            # goes back to the pool as a town.
            try:
                conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
            except errors.InsufficientPrivilege:
                raise RoleNotGranted(role, conn.info.user) from None
            terminals = [_terminal(r) for r in run(conn, "fleet_terminals")]
            key = (f"{role}/{plot_town}", since, zone)  # the role: whose rows they are
            with self._lock:
                expires, counts = self._counts.get(key, (0.0, []))
            if time.monotonic() >= expires:
                taps = (run(conn, "fleet_taps_per_day", since=since, zone=zone)
                        if plot_town is None else
                        run(conn, "fleet_taps_per_day_town", since=since, zone=zone,
                            muni=plot_town))
                counts = [DayCount(day, facility, int(n)) for day, facility, n in taps]
                with self._lock:
                    self._counts = {k: v for k, v in self._counts.items()
                                    if v[0] > time.monotonic()}  # yesterday's keys go
                    self._counts[key] = (time.monotonic() + self.counts_ttl_s, counts)
        return terminals, counts


def _terminal(row: tuple[Any, ...]) -> TerminalRow:
    (muni, tid, online, last_seen, pending, oldest, app, bundles, alarms, cert) = row
    return TerminalRow(
        muni=muni, tid=tid, online=bool(online), last_seen=last_seen, pending=pending,
        oldest_unacked=oldest, app_version=app,
        bundle_versions=dict(bundles) if isinstance(bundles, dict) else {},
        alarms=tuple(str(a) for a in alarms) if isinstance(alarms, list) else (),
        cert_not_after=cert)
