"""The city service's HTTP side: the fleet page behind a login, and /metrics.

Standard library only (`http.server`, one thread per connection): a handful of staff and
one Prometheus scraper, served by each `sukumo-city run` instance; all state (accounts,
sessions) is in PostgreSQL, so any instance answers any request.

Defences, each for a named attack:
- Host header checked against `[web] hosts` (DNS rebinding: a page elsewhere naming
  127.0.0.1 under its own host name cannot read the fleet through the staff's browser);
- every POST carries a CSRF token compared in constant time, and a foreign Origin is
  refused; the login form too (login CSRF), by a double-submit cookie;
- cookies HttpOnly and SameSite=Strict (`Secure` when `[web] secure_cookies`, behind TLS);
- a Content-Security-Policy with no script at all, framing forbidden (clickjacking);
- the fleet is read under the account's town role: row-level security, not this code,
  decides which terminals a town sees (city/web/store.py).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
from dataclasses import dataclass
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import psycopg
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from psycopg_pool import ConnectionPool, PoolTimeout

from city.i18n import Words, pick_language
from city.metrics import FleetCollector
from city.settings import CitySettings
from city.web import auth
from city.web.auth import MUNI
from city.web.page import FleetView, fleet_page, login_page, message_page
from city.web.store import NoTownRole, RoleNotGranted, Session, WebStore
from reader.system.logs import fields

log = logging.getLogger(__name__)
SESSION_COOKIE = "sukumo_city_session"
LOGIN_COOKIE = "sukumo_city_login"
MAX_FORM = 4096
CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


@dataclass(frozen=True)
class WebOptions:
    """What the server needs of `[web]` (city/settings.py), read once."""

    host: str
    port: int
    hosts: tuple[str, ...] = ()  # Host header values allowed besides the listen address
    language: str = "ja"
    session_hours: float = 12.0
    cert_warn_days: int = 30
    silent_minutes: int = 10
    chart_days: int = 14
    timezone: str = "Asia/Tokyo"
    secure_cookies: bool = False


class FleetServer:
    def __init__(self, options: WebOptions, store: WebStore | None,
                 registry: CollectorRegistry | None = None) -> None:
        self.options = options
        self.store = store
        self.registry = registry
        self.http = ThreadingHTTPServer((options.host, options.port), _handler(self))
        self.http.daemon_threads = True
        host = str(options.host)
        self.port = int(self.http.server_address[1])
        local = {f"{host}:{self.port}", f"localhost:{self.port}", f"127.0.0.1:{self.port}",
                 f"[::1]:{self.port}"}
        self.allowed_hosts = {h.lower() for h in (*options.hosts, *local)}
        self._thread: threading.Thread | None = None
        self.throttle = auth.LoginThrottle()

    @property
    def url(self) -> str:
        return f"http://{self.options.host}:{self.port}/"

    def start(self) -> FleetServer:
        """Serve in a thread of its own (`run` goes on with the intake)."""
        self._thread = threading.Thread(target=self.http.serve_forever, kwargs={
            "poll_interval": 0.2}, name="city-web", daemon=True)
        self._thread.start()
        log.info("web serving", **fields(url=self.url, fleet=self.store is not None))
        return self

    def stop(self) -> None:
        self.http.shutdown()
        self.http.server_close()


def _handler(server: FleetServer) -> type[BaseHTTPRequestHandler]:
    opts = server.options

    class Handler(BaseHTTPRequestHandler):
        server_version = "sukumo-city"
        sys_version = ""
        timeout = 30  # a client that sends nothing gives its thread back (slowloris)

        # -- dispatch -------------------------------------------------------------------
        def do_GET(self) -> None:  # http.server's name for it
            if not self._host_ok():
                return
            path = urlsplit(self.path).path
            if path == "/metrics" and server.registry is not None:
                self._send(HTTPStatus.OK, CONTENT_TYPE_LATEST, generate_latest(server.registry))
            elif server.store is None or path not in ("/", "/login"):
                self._send(HTTPStatus.NOT_FOUND, "text/plain; charset=utf-8", b"not found\n")
            elif path == "/login":
                self._login_form()
            else:
                self._database(self._fleet)

        def do_POST(self) -> None:
            if not self._host_ok():
                return
            path = urlsplit(self.path).path
            if server.store is None or path not in ("/login", "/logout"):
                self._send(HTTPStatus.NOT_FOUND, "text/plain; charset=utf-8", b"not found\n")
            elif not self._same_origin():
                self._refuse(HTTPStatus.FORBIDDEN, self._("This form came from another site."))
            elif path == "/login":
                self._database(self._login)
            else:
                self._database(self._logout)

        # -- pages ----------------------------------------------------------------------
        def _login_form(self, error: str | None = None, name: str = "",
                        status: HTTPStatus = HTTPStatus.OK) -> None:
            csrf = auth.new_token()
            self._send(status, "text/html; charset=utf-8",
                       login_page(self.words, csrf=csrf, error=error, name=name),
                       cookies=[self._cookie(LOGIN_COOKIE, csrf, 3600, path="/login")])

        def _login(self) -> None:
            form = self._form()
            if form is None:
                return
            if not auth.same_token(form.get("csrf"), self._cookies().get(LOGIN_COOKIE)):
                self._login_form(self._("The form expired; please log in again."),
                                 status=HTTPStatus.FORBIDDEN)
                return
            name = form.get("name", "").strip().lower()
            if server.throttle.blocked(name):
                log.warning("fleet login refused: too many wrong passwords", **fields(
                    account=name, peer=self.client_address[0]))
                self._login_form(self._("Too many wrong passwords for this account; try "
                                        "again in 10 minutes."), name=name,
                                 status=HTTPStatus.TOO_MANY_REQUESTS)
                return
            found = server.store.account(name) if server.store else None
            # The same scrypt work whether or not the account exists: no account names
            # learnt from response times.
            ok = auth.verify_password(form.get("password", ""),
                                      found[1] if found else auth.dummy_hash())
            if not (found and ok):
                server.throttle.failed(name)
                log.warning("fleet login refused", **fields(account=name,
                                                            peer=self.client_address[0]))
                self._login_form(self._("Wrong account name or password."), name=name,
                                 status=HTTPStatus.UNAUTHORIZED)
                return
            account = found[0]
            server.throttle.succeeded(name)
            token, csrf = auth.new_token(), auth.new_token()
            ttl = int(opts.session_hours * 3600)
            assert server.store is not None
            server.store.open_session(account, auth.token_digest(token), csrf, ttl)
            log.info("fleet login", **fields(account=account.name, muni=account.muni))
            self._redirect("/", cookies=[self._cookie(SESSION_COOKIE, token, ttl),
                                         self._cookie(LOGIN_COOKIE, "", 0, path="/login")])

        def _logout(self) -> None:
            form = self._form()
            session = self._session()
            if form is None:
                return
            if session is not None and not auth.same_token(form.get("csrf"), session.csrf):
                # Not our form: the session and its cookie stay as they are.
                self._refuse(HTTPStatus.FORBIDDEN, self._("This form came from another site."))
                return
            if session is not None:
                token = self._cookies().get(SESSION_COOKIE, "")
                assert server.store is not None
                server.store.end_session(auth.token_digest(token))
            self._redirect("/login", cookies=[self._cookie(SESSION_COOKIE, "", 0)])

        def _fleet(self) -> None:
            session = self._session()
            if session is None:
                self._redirect("/login")
                return
            assert server.store is not None
            zone = ZoneInfo(opts.timezone)
            now = dt.datetime.now(dt.UTC)
            today = now.astimezone(zone).date()
            days = [today - dt.timedelta(days=n) for n in range(opts.chart_days - 1, -1, -1)]
            since = dt.datetime.combine(days[0], dt.time(), zone)
            town = None
            if session.account.prefecture:  # ?muni=392081: one town of the prefecture
                asked = parse_qs(urlsplit(self.path).query).get("muni", [""])[0]
                town = asked if MUNI.fullmatch(asked) else None
            try:
                terminals, counts = server.store.fleet(session.account, since, opts.timezone,
                                                       town)
            except (NoTownRole, RoleNotGranted) as exc:
                fix = (f"GRANT {exc.role} TO {exc.user}; -- as a superuser or the role's "
                       "creator: the service reads a town's rows under the town's role"
                       if isinstance(exc, RoleNotGranted) else
                       f"sukumo-city add-town {session.account.muni}")
                log.error("fleet page: the account's town role cannot be used", **fields(
                    account=session.account.name, muni=session.account.muni, fix=fix))
                self._refuse(HTTPStatus.FORBIDDEN, self._(
                    "This account's town is not set up in the database yet; ask the "
                    "service's administrator."))
                return
            view = FleetView(session.account, terminals, counts, days, now, zone,
                             opts.cert_warn_days, session.csrf, town,
                             dt.timedelta(minutes=opts.silent_minutes))
            self._send(HTTPStatus.OK, "text/html; charset=utf-8",
                       fleet_page(view, self.words))

        # -- request parts --------------------------------------------------------------
        @property
        def words(self) -> Words:
            return Words(pick_language(self.headers.get("Accept-Language"), opts.language))

        def _(self, message: str) -> str:
            return self.words(message)

        def _host_ok(self) -> bool:
            host = (self.headers.get("Host") or "").strip().lower()
            if host in server.allowed_hosts:
                return True
            log.warning("web request for another host refused", **fields(
                host=host, fix="add the name the staff use to [web] hosts"))
            self._refuse(HTTPStatus.MISDIRECTED_REQUEST,
                         self._("This address is not the fleet page's."))
            return False

        def _same_origin(self) -> bool:
            """A browser names the page a POST comes from; it must be ours."""
            origin = self.headers.get("Origin") or self.headers.get("Referer")
            if not origin or origin == "null":
                return origin is None  # no header: not a browser; the CSRF token decides
            return urlsplit(origin).netloc.lower() == (self.headers.get("Host") or "").lower()

        def _form(self) -> dict[str, str] | None:
            try:
                length = int(self.headers.get("Content-Length") or "0")
            except ValueError:
                length = -1
            if not 0 <= length <= MAX_FORM:
                self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "text/plain", b"too large\n")
                return None
            body = self.rfile.read(length).decode("utf-8", "replace")
            return {k: v[0] for k, v in parse_qs(body, max_num_fields=8).items()}

        def _cookies(self) -> dict[str, str]:
            jar: SimpleCookie = SimpleCookie()
            with contextlib.suppress(CookieError):
                jar.load(self.headers.get("Cookie") or "")
            return {k: m.value for k, m in jar.items()}

        def _session(self) -> Session | None:
            token = self._cookies().get(SESSION_COOKIE)
            if not token or server.store is None:
                return None
            return server.store.session(auth.token_digest(token))

        def _cookie(self, name: str, value: str, max_age: int, path: str = "/") -> str:
            secure = "; Secure" if opts.secure_cookies else ""
            return (f"{name}={value}; Max-Age={max_age}; Path={path}; HttpOnly; "
                    f"SameSite=Strict{secure}")

        def _database(self, action: Any) -> None:
            """Run a page that needs PostgreSQL; a lost database is a 503 page, not a
            traceback (the intake's log line and metric say what to fix)."""
            try:
                action()
            except (psycopg.OperationalError, PoolTimeout) as exc:
                log.error("fleet page: database unavailable", **fields(
                    error=str(exc).strip()[:200],
                    fix="check that PostgreSQL runs and [database] dsn reaches it"))
                self._refuse(HTTPStatus.SERVICE_UNAVAILABLE, self._(
                    "The database does not answer; try again in a minute."))
            except Exception:  # a bug: logged whole, the reader gets a page, not a trace
                log.exception("fleet page failed", **fields(path=self.path))
                self._refuse(HTTPStatus.INTERNAL_SERVER_ERROR, self._(
                    "Something went wrong on the server; it has been logged."))

        # -- responses ------------------------------------------------------------------
        def _refuse(self, status: HTTPStatus, text: str) -> None:
            self._send(status, "text/html; charset=utf-8",
                       message_page(self.words, f"{status.value}", text))

        def _redirect(self, where: str, cookies: list[str] | None = None) -> None:
            self._send(HTTPStatus.SEE_OTHER, "text/plain; charset=utf-8", b"", cookies,
                       location=where)

        def _send(self, status: HTTPStatus, kind: str, body: bytes,
                  cookies: list[str] | None = None, location: str | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Security-Policy", CSP)
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Referrer-Policy", "same-origin")
            self.send_header("Vary", "Accept-Language, Cookie")
            if location:
                self.send_header("Location", location)
            for cookie in cookies or []:
                self.send_header("Set-Cookie", cookie)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("web request", **fields(request=format % args))

    return Handler


def web_options(settings: CitySettings) -> WebOptions:
    """[web] of city.toml as the server takes it (listen already validated: host:port)."""
    w = settings.web
    host, _, port = w.listen.rpartition(":")
    return WebOptions(host=host, port=int(port), hosts=tuple(w.hosts), language=w.language,
                      session_hours=w.session_hours, cert_warn_days=w.cert_warn_days,
                      silent_minutes=w.silent_minutes,
                      chart_days=w.chart_days, timezone=w.timezone,
                      secure_cookies=w.secure_cookies)


def serve_web(settings: CitySettings, pool: ConnectionPool[Any],
              registry: CollectorRegistry) -> FleetServer | None:
    """What `sukumo-city run` serves on `[web] listen`: the fleet page and /metrics (with
    the fleet gauges read from the database). None when `listen` is empty, or when the
    address is taken: the intake goes on without them (a page is never worth a lost tap),
    after an error line naming the fix."""
    if not settings.web.listen:
        return None
    registry.register(FleetCollector(pool, settings.web.cert_warn_days,
                                     settings.web.silent_minutes))
    try:
        return FleetServer(web_options(settings), WebStore(pool), registry).start()
    except OSError as exc:
        log.error("web: cannot listen; no fleet page and no /metrics from this instance",
                  **fields(listen=settings.web.listen, error=str(exc),
                           fix="give each instance a free address in [web] listen"))
        return None
