"""The fleet page over real HTTP and a real PostgreSQL: login required, each account sees
its own town only (row-level security, not the application, decides), the defences of
a page on a staff network (Host, Origin, CSRF, cookies), sessions that end, Japanese
first with English on request, and `sukumo-city account`."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import psycopg
import pytest
from fleet_env import (
    PASSWORD,
    TOWN_A,
    TOWN_B,
    City,
    WebClient,
    city,  # noqa: F401
    csrf_of,
    terminal_ids,
)
from pg_env import PgDatabase, pg, pg_cluster  # noqa: F401

from city import db as city_db
from city.web.auth import Account, hash_password
from city.web.server import FleetServer, WebOptions
from city.web.store import NoTownRole, WebStore

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def fleet(city: City) -> City:  # noqa: F811
    """Two towns' terminals, saved as the intake saves them: A has one online and one
    offline terminal (with an alarm), B one of its own."""
    now = dt.datetime.now(dt.UTC)
    city.status(TOWN_A, "t-a-0001")
    city.status(TOWN_A, "t-a-0002", online=False, pending=12,
                oldest_unacked=now - dt.timedelta(hours=3), alarms=("queue over 50 MB",),
                cert_days=10)
    city.status(TOWN_B, "t-b-0001")
    # Online by its last word, but that was an hour ago (its Will lost): silent.
    city.status(TOWN_B, "t-b-0002", seen=now - dt.timedelta(hours=1))
    city.taps(TOWN_A, "t-a-0001", "sukumo-library", 5)
    city.taps(TOWN_B, "t-b-0001", "shimizu-gym", 7)
    return city


def test_without_a_session_the_page_sends_to_the_login(fleet: City) -> None:
    client = WebClient(fleet.server.port)
    resp = client.get("/")
    assert resp.status == 303 and resp.headers["location"] == "/login"
    assert "t-a-0001" not in resp.text
    # A made-up session cookie is no session.
    client.jar["sukumo_city_session"] = "not-a-session"
    assert client.get("/").status == 303


def test_a_town_account_sees_its_town_only_and_the_prefecture_every_town(fleet: City) -> None:
    alice = WebClient(fleet.server.port)
    resp = alice.login("alice")
    assert resp.status == 303 and resp.headers["location"] == "/"
    page = alice.get("/")
    assert page.status == 200
    assert terminal_ids(page.text) == {"t-a-0001", "t-a-0002"}
    assert "t-b-0001" not in page.text and "shimizu-gym" not in page.text
    assert "sukumo-library" in page.text  # the plot of town A's taps
    bob = WebClient(fleet.server.port)
    bob.login("bob")
    assert terminal_ids(bob.get("/").text) == {"t-b-0001", "t-b-0002"}
    # The prefecture: every town in one line each, and the terminals that need someone
    # (t-a-0002 is offline); a town's link shows all of that town's.
    kochi = WebClient(fleet.server.port)
    kochi.login("kochi")
    overview = kochi.get("/").text
    assert set(re.findall(r'data-muni="(\d+)"', overview)) == {TOWN_A, TOWN_B}
    assert terminal_ids(overview) == {"t-a-0002", "t-b-0002"}
    town_b = kochi.get(f"/?muni={TOWN_B}").text
    assert terminal_ids(town_b) == {"t-b-0001", "t-b-0002"} and "shimizu-gym" in town_b
    assert "sukumo-library" not in town_b
    # A town's account cannot use ?muni= to look elsewhere.
    assert terminal_ids(alice.get(f"/?muni={TOWN_B}").text) == {"t-a-0001", "t-a-0002"}


def test_the_separation_is_the_databases_not_the_applications(fleet: City) -> None:
    """The terminals query has no town filter at all: the rows a town gets are the ones
    its PostgreSQL role may read (the plot's query names the town only to use an index).
    A town without a role is refused, not shown everything."""
    since = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    terminals, counts = fleet.web.fleet(Account("x", TOWN_A), since, "Asia/Tokyo")
    assert {t.muni for t in terminals} == {TOWN_A}
    assert {c.facility for c in counts} == {"sukumo-library"}
    with pytest.raises(NoTownRole):
        fleet.web.fleet(Account("x", "999999"), since, "Asia/Tokyo")
    # The same query as the town's role, straight in PostgreSQL: B's rows are not there.
    with psycopg.connect(fleet.pg.dsn) as conn, conn.transaction():
        conn.execute("SET LOCAL ROLE town_392081")
        rows = conn.execute("SELECT tid FROM city.terminals_v1").fetchall()
    assert {r[0] for r in rows} == {"t-a-0001", "t-a-0002"}


def test_the_page_shows_offline_alarms_backlog_and_expiring_certificates(fleet: City) -> None:
    alice = WebClient(fleet.server.port)
    alice.login("alice")
    page = alice.get("/").text
    row = page.split('data-tid="t-a-0002"', 1)[1].split("</tr>", 1)[0]
    assert "オフライン" in row and "queue over 50 MB" in row
    assert ">12<" in row  # waiting to send
    assert "あと 10 日" in row or "あと 9 日" in row  # the certificate, close to expiry
    assert '<html lang="ja">' in page and "<svg" in page and "<script" not in page


def test_a_terminal_silent_for_long_is_not_shown_online(fleet: City) -> None:
    bob = WebClient(fleet.server.port)
    bob.login("bob")
    page = bob.get("/").text
    row = page.split('data-tid="t-b-0002"', 1)[1].split("</tr>", 1)[0]
    assert "応答なし" in row and "オンライン" not in row and "1 時間前" in row
    assert page.index('data-tid="t-b-0002"') < page.index('data-tid="t-b-0001"')  # first
    text = urllib.request.urlopen(f"http://127.0.0.1:{fleet.server.port}/metrics").read()
    assert f'sukumo_city_terminals{{muni="{TOWN_B}",state="silent"}} 1.0'.encode() in text
    assert f'sukumo_city_terminals{{muni="{TOWN_B}",state="online"}} 1.0'.encode() in text


def test_english_when_the_browser_asks_for_it(fleet: City) -> None:
    alice = WebClient(fleet.server.port)
    alice.login("alice")
    page = alice.get("/", **{"Accept-Language": "en-GB,en;q=0.9,ja;q=0.5"}).text
    assert '<html lang="en">' in page and "offline" in page and "オフライン" not in page
    ja = alice.get("/", **{"Accept-Language": "ja,en;q=0.5"}).text
    assert '<html lang="ja">' in ja


def test_a_wrong_password_or_unknown_account_gets_the_same_answer(fleet: City) -> None:
    a = WebClient(fleet.server.port)
    wrong = a.login("alice", "not-the-password")
    b = WebClient(fleet.server.port)
    unknown = b.login("nobody", PASSWORD)
    assert wrong.status == unknown.status == 401
    assert "アカウント名かパスワードが違います" in wrong.text
    assert "sukumo_city_session" not in a.jar and a.get("/").status == 303


def test_guessing_an_accounts_password_is_stopped_after_ten_tries(city: City) -> None:  # noqa: F811
    guesser = WebClient(city.server.port)
    for n in range(10):
        assert guesser.login("bob", f"guess-number-{n}").status == 401
    # Now even the right password is refused for this name, from anywhere, for a while.
    blocked = WebClient(city.server.port).login("bob")
    assert blocked.status == 429 and "10 分" in blocked.text
    assert WebClient(city.server.port).login("alice").status == 303  # others unaffected


def test_login_needs_the_forms_token_and_our_origin(fleet: City) -> None:
    client = WebClient(fleet.server.port)
    client.get("/login")
    no_token = client.request("POST", "/login", {"name": "alice", "password": PASSWORD})
    assert no_token.status == 403 and "sukumo_city_session" not in client.jar
    # A page elsewhere posting the form (login CSRF): refused by its Origin.
    foreign = client.login("alice", origin="http://evil.example")
    assert foreign.status == 403 and "sukumo_city_session" not in client.jar


def test_another_host_name_is_refused(fleet: City) -> None:
    """DNS rebinding: a site whose name resolves to 127.0.0.1 sends its own Host."""
    client = WebClient(fleet.server.port, host="evil.example")
    resp = client.get("/login")
    assert resp.status == 421 and "csrf" not in resp.text


def test_cookies_and_headers_of_a_page_on_a_staff_network(fleet: City) -> None:
    client = WebClient(fleet.server.port)
    login = client.login("alice")
    session = next(c for c in login.cookies if c.startswith("sukumo_city_session="))
    assert "HttpOnly" in session and "SameSite=Strict" in session
    page = client.get("/")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert page.headers["cache-control"] == "no-store"


def test_logout_and_a_new_password_end_sessions(fleet: City) -> None:
    client = WebClient(fleet.server.port)
    client.login("alice")
    page = client.get("/")
    # Logout without the session's token does nothing (a foreign form cannot log us out).
    client.request("POST", "/logout", {"csrf": "wrong"})
    assert client.get("/").status == 200
    client.request("POST", "/logout", {"csrf": csrf_of(page.text)})
    assert client.get("/").status == 303
    client.login("alice")
    assert client.get("/").status == 200
    done = _account("passwd", "alice", "--password-stdin", dsn=fleet.pg.dsn,
                    stdin="another-password-1\n")
    assert done.returncode == 0, done.stderr
    assert client.get("/").status == 303  # the session ended with the old password
    assert WebClient(fleet.server.port).login("alice", "another-password-1").status == 303


def _account(*args: str, dsn: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "city.cli", "account", *args], input=stdin, text=True,
        capture_output=True, cwd=REPO, timeout=60,
        env={"PATH": "/usr/bin:/bin", "LANG": "ja_JP.UTF-8",
             "SUKUMO_CITY_DATABASE__DSN": dsn, "SUKUMO_CITY_LOG__LEVEL": "WARNING"})


def test_account_command(city: City) -> None:  # noqa: F811
    dsn = city.pg.dsn
    done = _account("add", "carol", "--muni", TOWN_B, "--password-stdin", dsn=dsn,
                    stdin="carol-password-1\n")
    assert done.returncode == 0, done.stderr
    assert WebClient(city.server.port).login("carol", "carol-password-1").status == 303
    listed = _account("list", dsn=dsn)
    assert "carol\t392014" in listed.stdout and "kochi\t" in listed.stdout
    # Operator mistakes: exit 2, the reason in Japanese, nothing written.
    for args, stdin, words in [
        (("add", "carol", "--muni", TOWN_B, "--password-stdin"), "carol-password-2\n",
         "既にあります"),
        (("add", "dave", "--muni", "39208", "--password-stdin"), "dave-password-1\n",
         "6桁"),
        (("add", "dave", "--muni", "999999", "--password-stdin"), "dave-password-1\n",
         "add-town 999999"),
        (("add", "dave", "--prefecture", "--password-stdin"), "short\n", "10文字"),
        (("add", "Dave!", "--prefecture", "--password-stdin"), "dave-password-1\n",
         "アカウント名"),
        (("passwd", "nobody", "--password-stdin"), "dave-password-1\n", "nobody"),
    ]:
        bad = _account(*args, dsn=dsn, stdin=stdin)
        assert bad.returncode == 2, (args, bad.stdout, bad.stderr)
        assert words in bad.stderr and "Traceback" not in bad.stderr, bad.stderr
    assert "dave" not in _account("list", dsn=dsn).stdout


def test_a_service_user_that_is_no_superuser_reads_a_town_once_granted_its_role(
        pg: PgDatabase) -> None:  # noqa: F811
    """As a city runs it: the service's own user owns the schema (it ran `migrate`) but is
    no superuser, so taking a town's role needs `GRANT town_… TO` it. Until then the page
    refuses the town (403, and an error line with that GRANT), never shows every town."""
    service = f"svc_{uuid.uuid4().hex[:8]}"
    pg.query(f"CREATE ROLE {service} LOGIN CREATEROLE")
    pg.query(f'GRANT CREATE ON DATABASE "{pg.name}" TO {service}')
    dsn = pg.cluster.dsn(pg.name, user=service)
    city_db.migrate(dsn)
    store = city_db.Store(dsn).open(wait=True)
    server = None
    try:
        store.maintain(retention_months=3, months_ahead=1)
        store.add_town(TOWN_A)
        web = WebStore(store.pool)
        web.add_account("alice", TOWN_A, hash_password(PASSWORD))
        now = dt.datetime.now(dt.UTC)
        for muni, tid in ((TOWN_A, "t-a-0001"), (TOWN_B, "t-b-0001")):
            store.save_status(city_db.TerminalState(muni, tid, True, {"v": 1}, now))
        server = FleetServer(WebOptions("127.0.0.1", 0), web).start()
        alice = WebClient(server.port)
        alice.login("alice")
        refused = alice.get("/")
        assert refused.status == 403 and "t-a-0001" not in refused.text
        assert "t-b-0001" not in refused.text
        pg.query(f"GRANT town_{TOWN_A} TO {service}")
        assert terminal_ids(alice.get("/").text) == {"t-a-0001"}
    finally:
        if server is not None:
            server.stop()
        store.close()
