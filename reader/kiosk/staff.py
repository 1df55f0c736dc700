"""The staff's line of the kiosk screen, from the daemon's status.json: the reader, the
city link, the queue, and plain advice when something needs a technician.

It shows nothing about any person: status.json's `last_tap` is not read. The words are
the kiosk's, in its language (the daemon's status.json holds values, not sentences).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from reader.system.i18n import N_, _, ngettext

STALE_S = 15.0  # the daemon rewrites status.json every 2 s
FEED_LOST = "feed_lost"  # the kiosk's own socket is gone (beside reader/feedback/screen.Beat)
NOT_RUNNING = N_("The terminal's program is not running. Call a technician.")
# Why the screen does not take taps, by the kiosk's service state (reader/kiosk/server.py).
CLOSED_BECAUSE = {
    "starting": N_("The terminal's program is starting. Wait a moment."),
    "stopped": NOT_RUNNING,
    "stalled": N_("The terminal's program is not responding. Call a technician."),
    "no_reader": N_("Plug the reader's USB cable in again. If that does not help, call "
                    "a technician."),
    FEED_LOST: N_("The screen lost its link to the terminal's program; it restarts by "
                  "itself. If this stays, call a technician."),
}


def staff_view(status: dict[str, Any] | None, now: dt.datetime | None = None,
               service: str = "ready") -> dict[str, Any]:
    """{"reader", "link", "queue", "advice": [...], "ok": bool} in the kiosk's language.

    `service` is what the daemon's heartbeat says (or "stopped" when it is silent): when
    the daemon is not running, status.json is a memory, and its reader and link are shown
    as unknown rather than as they were."""
    now = now or dt.datetime.now(dt.UTC)
    if service not in ("ready", "no_reader"):
        queue = "—" if status is None else _queue(status, online=False)
        why = CLOSED_BECAUSE.get(service, NOT_RUNNING)
        return {"reader": _("Reader: unknown"), "link": _("City link: unknown"),
                "queue": queue, "ok": False, "advice": [_(why)]}
    written = status is not None
    status = status or {}  # running, but its first status.json is not written yet
    advice: list[str] = []
    reader_ok = service == "ready"  # the heartbeat is fresher than status.json
    reader = _("Reader: OK") if reader_ok else _("Reader: not found")
    if not reader_ok:
        advice.append(_(CLOSED_BECAUSE["no_reader"]))
    sync = status.get("sync") or {}
    online = sync.get("state") == "online"
    link = (_("City link: unknown") if not sync else
            _("City link: connected") if online else _("City link: not connected"))
    queue = _queue(status, online)
    if status.get("unrecorded"):
        advice.append(_("Some taps could not be recorded (storage). Call a technician."))
    for alarm in status.get("alarms") or []:
        advice.append(_("Alarm: {alarm} — call a technician.").format(alarm=alarm))
    updated = _parse(status.get("updated_at"))
    if written and (not status.get("running", False) or updated is None or (
            now - updated).total_seconds() > STALE_S):
        advice.append(_("The terminal's program has stopped. Call a technician."))
    return {"reader": reader, "link": link, "queue": queue, "advice": advice,
            "ok": not advice}


def _queue(status: dict[str, Any], online: bool) -> str:
    pending = int((status.get("queue") or {}).get("pending", 0))
    if online or not pending:
        text = ngettext("Not sent yet: {n} tap", "Not sent yet: {n} taps", pending)
    else:
        text = ngettext("Not sent yet: {n} tap (kept on the terminal)",
                        "Not sent yet: {n} taps (kept on the terminal)", pending)
    return text.format(n=pending)


def _parse(text: object) -> dt.datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
