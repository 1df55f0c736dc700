"""The fleet page and the login page as HTML, from plain data: no I/O, no template engine.

Everything from the database or the request is escaped here (`html.escape`) and nowhere
else; the words come from the request's `Words` (Japanese first). The page holds no script
at all (the Content-Security-Policy says so) and refreshes itself once a minute.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from html import escape
from typing import Any
from zoneinfo import ZoneInfo

from city.i18n import Words
from city.web.auth import Account
from city.web.chart import DayCount, taps_svg

REFRESH_S = 60


@dataclass(frozen=True)
class TerminalRow:
    """One row of city.terminals_v1, as the page shows it."""

    muni: str
    tid: str
    online: bool
    last_seen: dt.datetime | None
    pending: int | None
    oldest_unacked: dt.datetime | None
    app_version: str | None
    bundle_versions: dict[str, Any] = field(default_factory=dict)
    alarms: tuple[str, ...] = ()
    cert_not_after: dt.datetime | None = None


@dataclass(frozen=True)
class FleetView:
    account: Account
    terminals: list[TerminalRow]
    counts: list[DayCount]
    days: list[dt.date]
    now: dt.datetime
    zone: ZoneInfo
    cert_warn_days: int
    csrf: str
    town: str | None = None  # the town a prefecture account chose (?muni=), None: all
    silent_after: dt.timedelta = dt.timedelta(minutes=10)


def silent(row: TerminalRow, view: FleetView) -> bool:
    """Online by its last word, but no word since long after its next status was due
    (its Will can be lost, e.g. with a broker that restarted without persistence)."""
    return row.online and row.last_seen is not None and \
        view.now - row.last_seen > view.silent_after


def answering(row: TerminalRow, view: FleetView) -> bool:
    return row.online and not silent(row, view)


STYLE = """
body{font-family:"Noto Sans CJK JP","Noto Sans JP",sans-serif;margin:0;color:#222;
 background:#f6f7f9}
header{display:flex;flex-wrap:wrap;gap:.5rem 1.5rem;align-items:center;padding:.6rem 1rem;
 background:#1d3557;color:#fff}
header h1{font-size:1.2rem;margin:0;flex:1 1 auto}
header form{margin:0}
main{padding:1rem;max-width:1200px;margin:auto}
.tiles{display:flex;flex-wrap:wrap;gap:.6rem;margin-bottom:1rem}
.tile{background:#fff;border-radius:6px;padding:.5rem .9rem;min-width:7.5rem;
 box-shadow:0 1px 2px #0002}
.tile b{display:block;font-size:1.6rem}
.tile.bad b{color:#b00020}
section{background:#fff;border-radius:6px;padding:.8rem;margin-bottom:1rem;
 box-shadow:0 1px 2px #0002;overflow-x:auto}
h2{font-size:1.05rem;margin:.2rem 0 .6rem}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid #e3e3e3;
 vertical-align:top}
td.num,th.num{text-align:right}
tr.offline td,tr.alarm td{background:#fff1f1}
.badge{display:inline-block;border-radius:4px;padding:0 .4rem;font-size:.85rem;color:#fff;
 white-space:nowrap}
.nw{white-space:nowrap}
.badge.on{background:#2a7d4f}.badge.off{background:#b00020}
.warn{color:#b00020;font-weight:bold}
ul.alarms{margin:0;padding-left:1.1rem;color:#b00020}
.chart{width:100%;height:auto;max-width:900px}
ul.legend{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:.3rem 1rem}
.swatch{display:inline-block;width:.9rem;height:.9rem;margin-right:.3rem;
 vertical-align:-.1rem}
@media (max-width:900px){main{padding:.5rem}table{font-size:.8rem}
 th,td{padding:.3rem .25rem}section{padding:.5rem}}
footer{color:#666;font-size:.8rem;padding:0 1rem 1rem;text-align:center}
button{font:inherit;padding:.3rem .8rem}
.login{max-width:22rem;margin:4rem auto;background:#fff;padding:1.5rem;border-radius:6px;
 box-shadow:0 1px 3px #0003}
.login label{display:block;margin:.6rem 0 .2rem}
.login input{width:100%;box-sizing:border-box;font:inherit;padding:.3rem}
.login .error{color:#b00020}
"""


def _doc(lang: str, title: str, body: str, *, refresh: bool) -> bytes:
    meta = f'<meta http-equiv="refresh" content="{REFRESH_S}">' if refresh else ""
    return (f'<!doctype html>\n<html lang="{lang}"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">{meta}'
            f"<title>{escape(title)}</title><style>{STYLE}</style></head>"
            f"<body>{body}</body></html>\n").encode()


def login_page(words: Words, *, csrf: str, error: str | None = None,
               name: str = "") -> bytes:
    # (Babel does not look inside f-strings: every `_()` stands outside them.)
    _ = words
    problem = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    title, account, password, log_in = (escape(_("Sukumo ID terminals")), escape(_("Account")),
                                         escape(_("Password")), escape(_("Log in")))
    body = (f'<form class="login" method="post" action="/login">'
            f"<h1>{title}</h1>{problem}"
            f'<input type="hidden" name="csrf" value="{escape(csrf)}">'
            f'<label for="name">{account}</label>'
            f'<input id="name" name="name" autocomplete="username" required '
            f'value="{escape(name)}">'
            f'<label for="password">{password}</label>'
            f'<input id="password" name="password" type="password" '
            f'autocomplete="current-password" required>'
            f'<p><button type="submit">{log_in}</button></p></form>')
    return _doc(words.language, _("Log in"), body, refresh=False)


def _when(value: dt.datetime | None, view: FleetView) -> str:
    """Local time, the year only when it is not this one (a narrow column stays narrow)."""
    if value is None:
        return "—"
    local = value.astimezone(view.zone)
    same_year = local.year == view.now.astimezone(view.zone).year
    return f'<span class="nw">{local:%m/%d %H:%M}</span>' if same_year else \
        f'<span class="nw">{local:%Y-%m-%d %H:%M}</span>'


def _ago(value: dt.datetime | None, view: FleetView, words: Words) -> str:
    """How long ago, in the largest whole unit (a person compares hours, not seconds)."""
    _ = words
    if value is None:
        return ""
    s = max(int((view.now - value).total_seconds()), 0)
    if s < 60:
        return _("just now")
    if s < 3600:
        return _("{n} min ago").format(n=s // 60)
    if s < 2 * 86400:
        return _("{n} h ago").format(n=s // 3600)
    return _("{n} days ago").format(n=s // 86400)


def cert_days_left(row: TerminalRow, now: dt.datetime) -> int | None:
    if row.cert_not_after is None:
        return None
    return (row.cert_not_after - now) // dt.timedelta(days=1)


def _cert(row: TerminalRow, view: FleetView, words: Words) -> str:
    _ = words
    left = cert_days_left(row, view.now)
    if left is None:
        return "—"
    day = f"{row.cert_not_after.astimezone(view.zone):%Y-%m-%d}"  # type: ignore[union-attr]
    text = f'<span class="nw">{day}</span>'
    if left < 0:
        warning = _("expired")
    elif left <= view.cert_warn_days:
        warning = _("{n} days left").format(n=left)
    else:
        return text
    return f'{text} <span class="warn">{escape(warning)}</span>'


def _versions(row: TerminalRow) -> str:
    """The app's version, and each bundle's (wrapping between bundles, never inside)."""
    bundles = " ".join(f'<span class="nw">{escape(f"{k} {v}")}</span>'
                       for k, v in sorted(row.bundle_versions.items()) if k != "app")
    return f"{escape(row.app_version or '—')}<br><small>{bundles}</small>"


def _row(row: TerminalRow, view: FleetView, words: Words) -> str:
    _ = words
    on, off, quiet = escape(_("online")), escape(_("offline")), escape(_("no word"))
    state = (f'<span class="badge on">{on}</span>' if answering(row, view) else
             f'<span class="badge off">{quiet}</span>' if row.online else
             f'<span class="badge off">{off}</span>')
    alarms = ("<ul class=\"alarms\">" + "".join(f"<li>{escape(a)}</li>" for a in row.alarms)
              + "</ul>") if row.alarms else "—"
    oldest = (f"{_when(row.oldest_unacked, view)}<br><small>"
              f"{escape(_ago(row.oldest_unacked, view, words))}</small>"
              if row.oldest_unacked else "—")
    cls = "offline" if not answering(row, view) else ("alarm" if row.alarms else "")
    town = f"<td>{escape(row.muni)}</td>" if view.account.prefecture else ""
    return (f'<tr class="{cls}" data-tid="{escape(row.tid)}">{town}'
            f'<td class="nw">{escape(row.tid)}</td><td>{state}</td>'
            f"<td>{_when(row.last_seen, view)}<br><small>"
            f"{escape(_ago(row.last_seen, view, words))}</small></td>"
            f'<td class="num">{row.pending if row.pending is not None else "—"}</td>'
            f"<td>{oldest}</td><td>{_versions(row)}</td><td>{alarms}</td>"
            f"<td>{_cert(row, view, words)}</td></tr>")


def sort_key(row: TerminalRow, view: FleetView) -> tuple[bool, bool, str, str]:
    """What needs someone first: offline or silent, then alarms, then by town and id."""
    return (answering(row, view), not row.alarms, row.muni, row.tid)


def needs_someone(row: TerminalRow, view: FleetView) -> bool:
    left = cert_days_left(row, view.now)
    return not answering(row, view) or bool(row.alarms) or (
        left is not None and left <= view.cert_warn_days)


def _towns(view: FleetView, words: Words) -> str:
    """The prefecture's first table: each town in one line, its name a link to its page."""
    _ = words
    per: dict[str, list[TerminalRow]] = {}
    for row in view.terminals:
        per.setdefault(row.muni, []).append(row)
    heads = f'<th scope="col">{escape(_("town"))}</th>' + "".join(
        f'<th scope="col" class="num">{escape(h)}</th>' for h in (
            _("online"), _("offline"), _("with alarms"), _("certificates expiring"),
            _("waiting to send")))
    lines = []
    for muni, rows in sorted(per.items()):
        expiring = sum(1 for r in rows if (left := cert_days_left(r, view.now)) is not None
                       and left <= view.cert_warn_days)
        cells = [sum(answering(r, view) for r in rows),
                 sum(not answering(r, view) for r in rows),
                 sum(bool(r.alarms) for r in rows), expiring, sum(r.pending or 0 for r in rows)]
        lines.append(f'<tr data-muni="{escape(muni)}"><td><a href="/?muni={escape(muni)}">'
                     f"{escape(muni)}</a></td>"
                     + "".join(f'<td class="num">{n}</td>' for n in cells) + "</tr>")
    title = escape(_("Towns"))
    return (f'<section id="towns"><h2>{title}</h2><table><thead><tr>{heads}</tr></thead>'
            f"<tbody>{''.join(lines)}</tbody></table></section>")


def fleet_page(view: FleetView, words: Words) -> bytes:
    _ = words
    overview = view.account.prefecture and view.town is None
    if view.town is not None:
        view = replace(view, terminals=[r for r in view.terminals if r.muni == view.town])
    rows = sorted(view.terminals, key=lambda r: sort_key(r, view))
    online = sum(answering(r, view) for r in rows)
    alarmed = sum(bool(r.alarms) for r in rows)
    expiring = sum(1 for r in rows if (left := cert_days_left(r, view.now)) is not None
                   and left <= view.cert_warn_days)
    pending = sum(r.pending or 0 for r in rows)
    who = (_("{name} (prefecture: every town)") if view.account.prefecture
           else _("{name} (town {muni})")).format(name=view.account.name,
                                                  muni=view.account.muni)

    def tile(label: str, value: int, bad: bool = False) -> str:
        return (f'<div class="tile{" bad" if bad and value else ""}" '
                f'data-tile="{escape(label)}">{escape(label)}<b>{value}</b></div>')

    tiles = "".join([tile(_("online"), online), tile(_("offline"), len(rows) - online, True),
                     tile(_("with alarms"), alarmed, True),
                     tile(_("certificates expiring"), expiring, True),
                     tile(_("taps not yet received"), pending)])
    heads = [_("town")] if view.account.prefecture else []
    heads += [_("terminal"), _("state"), _("last seen"), _("waiting to send"),
              _("oldest unacked tap"), _("versions"), _("alarms"), _("certificate until")]
    head = "".join(f'<th scope="col">{escape(h)}</th>' for h in heads)
    listed = [r for r in rows if needs_someone(r, view)] if overview else rows
    body = "".join(_row(r, view, words) for r in listed)
    none_yet = escape(_("No terminal has reported yet."))
    empty = f"<p>{none_yet}</p>" if not rows else ""
    if overview:  # 3,000 rows help no one: the towns, then what needs someone
        empty += "<p>" + escape(_("Only the terminals that need someone are listed; choose "
                                  "a town to see all of its terminals.")) + "</p>"
    elif view.account.prefecture:
        back = escape(_("Town {muni}; back to every town").format(muni=view.town))
        empty += f'<p><a href="/">{back}</a></p>'
    title = _("Taps per facility per day (last {n} days)").format(n=len(view.days))
    chart = taps_svg(view.counts, view.days, title=title, others=_("others"),
                     taps_word=_("{n} taps"))
    numbers = "".join(
        f"<tr><td>{c.day:%Y-%m-%d}</td><td>{escape(c.facility)}</td>"
        f'<td class="num">{c.taps}</td></tr>' for c in view.counts)
    updated = _("Updated {when}; the page refreshes every minute.").format(
        when=f"{view.now.astimezone(view.zone):%Y-%m-%d %H:%M}")
    t = {k: escape(v) for k, v in {
        "title": _("Sukumo ID terminals"), "log_out": _("Log out"),
        "terminals": _("Terminals"), "numbers": _("The numbers"), "day": _("day"),
        "facility": _("facility"), "taps": _("taps")}.items()}
    html = (
        f"<header><h1>{t['title']}</h1>"
        f'<span id="who">{escape(who)}</span>'
        f'<form method="post" action="/logout"><input type="hidden" name="csrf" '
        f'value="{escape(view.csrf)}"><button type="submit">{t["log_out"]}'
        f"</button></form></header><main>"
        f'<div class="tiles">{tiles}</div>{_towns(view, words) if overview else ""}'
        f'<section id="terminals"><h2>{t["terminals"]}</h2>{empty}'
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></section>"
        f'<section id="taps"><h2>{escape(title)}</h2>{chart}'
        f"<details><summary>{t['numbers']}</summary><table><thead><tr>"
        f'<th scope="col">{t["day"]}</th><th scope="col">{t["facility"]}'
        f'</th><th scope="col">{t["taps"]}</th></tr></thead>'
        f"<tbody>{numbers}</tbody></table></details></section></main>"
        f"<footer>{escape(updated)}</footer>")
    return _doc(words.language, _("Sukumo ID terminals"), html, refresh=True)


def message_page(words: Words, title: str, text: str) -> bytes:
    """A short page for a refusal (forbidden host, expired form), in the reader's language."""
    _ = words
    back = escape(_("Back to the fleet page"))
    body = (f'<div class="login"><h1>{escape(title)}</h1><p>{escape(text)}</p>'
            f'<p><a href="/">{back}</a></p></div>')
    return _doc(words.language, title, body, refresh=False)
