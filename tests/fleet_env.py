"""The fleet page's test bed: a migrated city database in the real PostgreSQL of
tests/pg_env.py with two towns and their accounts, the real FleetServer on a free
loopback port, terminals written by the intake's own store operations, and a small HTTP
client that keeps cookies and logs in through the form as a browser does.
"""

from __future__ import annotations

import datetime as dt
import http.client
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import pytest
from pg_env import PgDatabase

from city import db
from city.metrics import FleetCollector, make_registry
from city.web.auth import hash_password
from city.web.server import FleetServer, WebOptions
from city.web.store import WebStore
from reader.system.uuid7 import uuid7_str

TOWN_A, TOWN_B = "392081", "392014"  # 宿毛市, 土佐清水市
PASSWORD = "sukumo-fleet-2026"
ACCOUNTS = {"alice": TOWN_A, "bob": TOWN_B, "kochi": None}  # kochi: the prefecture


@dataclass
class City:
    pg: PgDatabase
    store: db.Store
    web: WebStore
    server: FleetServer

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    def status(self, muni: str, tid: str, *, online: bool = True, pending: int = 0,
               oldest_unacked: dt.datetime | None = None, alarms: tuple[str, ...] = (),
               cert_days: float | None = 365, app: str = "1.0.0",
               seen: dt.datetime | None = None) -> None:
        """A terminal's §4 status, saved as the intake saves it."""
        now = seen or dt.datetime.now(dt.UTC)
        cert = None if cert_days is None else now + dt.timedelta(days=cert_days)
        body: dict[str, Any] = {"v": 1, "tid": tid, "state": "online" if online else "offline"}
        self.store.save_status(db.TerminalState(
            muni=muni, tid=tid, online=online, status=body, received_at=now,
            pending=pending, oldest_unacked=oldest_unacked, app_version=app,
            bundle_versions={"trust": 3, "denylist": 41, "config": 7}, alarms=alarms,
            cert_not_after=cert))

    def taps(self, muni: str, tid: str, facility: str, count: int,
             at: dt.datetime | None = None, first_seq: int = 1) -> None:
        """`count` events of one terminal, stored in one batch as the intake stores it."""
        at = at or dt.datetime.now(dt.UTC)
        events = [db.StoredEvent(uuid7_str(), first_seq + n, at, "checkin", facility,
                                 "accepted", None, f"M{n:08d}", {"seq": first_seq + n})
                  for n in range(count)]
        self.store.store_batch(muni, tid, events, receiver="test")


def city_database(pg: PgDatabase) -> db.Store:
    db.migrate(pg.dsn)
    store = db.Store(pg.dsn, pool_size=4).open(wait=True)
    store.maintain(retention_months=3, months_ahead=1)
    web = WebStore(store.pool)
    for name, muni in ACCOUNTS.items():
        if muni is not None:
            store.add_town(muni)
        web.add_account(name, muni, hash_password(PASSWORD))
    return store


@pytest.fixture
def city(pg: PgDatabase) -> Iterator[City]:
    store = city_database(pg)
    web = WebStore(store.pool)
    registry = make_registry()
    registry.register(FleetCollector(store.pool))
    server = FleetServer(WebOptions("127.0.0.1", 0), web, registry).start()
    yield City(pg, store, web, server)
    server.stop()
    store.close()


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    cookies: list[str]
    text: str


@dataclass
class WebClient:
    """A browser's part of HTTP: cookies kept, redirects not followed (tests look at them)."""

    port: int
    host: str | None = None  # the Host header; default the address itself
    jar: dict[str, str] = field(default_factory=dict)

    def request(self, method: str, path: str, body: dict[str, str] | None = None,
                headers: dict[str, str] | None = None) -> Response:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        hdrs = {"Host": self.host or f"127.0.0.1:{self.port}", "Accept-Language": "ja",
                **(headers or {})}
        if self.jar:
            hdrs["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.jar.items())
        data = None
        if body is not None:
            data = urlencode(body).encode()
            hdrs["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            text = resp.read().decode("utf-8", "replace")
            cookies = resp.headers.get_all("Set-Cookie") or []
        finally:
            conn.close()
        for cookie in cookies:
            name, _, rest = cookie.partition("=")
            value = rest.split(";", 1)[0]
            if "Max-Age=0" in cookie:
                self.jar.pop(name, None)
            else:
                self.jar[name] = value
        return Response(resp.status, {k.lower(): v for k, v in resp.headers.items()},
                        cookies, text)

    def get(self, path: str, **headers: str) -> Response:
        return self.request("GET", path, headers=headers)

    def login(self, name: str, password: str = PASSWORD,
              origin: str | None = "same") -> Response:
        form = self.get("/login")
        csrf = csrf_of(form.text)
        headers = {}
        if origin == "same":
            headers["Origin"] = f"http://{self.host or f'127.0.0.1:{self.port}'}"
        elif origin is not None:
            headers["Origin"] = origin
        return self.request("POST", "/login", {"csrf": csrf, "name": name,
                                               "password": password}, headers)


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "a form without its CSRF token"
    return found.group(1)


def terminal_ids(page: str) -> set[str]:
    """The terminals the fleet page lists (each row carries its id)."""
    return set(re.findall(r'data-tid="([^"]+)"', page))
