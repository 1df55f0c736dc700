"""The staff's line of the kiosk screen, from the daemon's status.json: the reader, the
city link, the queue, and plain advice when something needs a technician.

It shows nothing about any person: status.json's `last_tap` is not read. The words are
the kiosk's, in its language (the daemon's status.json holds values, not sentences).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from reader.system.i18n import _, ngettext

STALE_S = 15.0  # the daemon rewrites status.json every 2 s


def staff_view(status: dict[str, Any] | None, now: dt.datetime | None = None
               ) -> dict[str, Any]:
    """{"reader", "link", "queue", "advice": [...], "ok": bool} in the kiosk's language."""
    now = now or dt.datetime.now(dt.UTC)
    if status is None:
        return {"reader": "—", "link": "—", "queue": "—", "ok": False,
                "advice": [_("The terminal's program is not running. Call a technician.")]}
    advice: list[str] = []
    reader_ok = status.get("reader") == "ok"
    reader = _("Reader: OK") if reader_ok else _("Reader: not found")
    if not reader_ok:
        advice.append(_("Plug the reader's USB cable in again. If that does not help, call "
                        "a technician."))
    sync = status.get("sync") or {}
    online = sync.get("state") == "online"
    link = _("City link: connected") if online else _("City link: not connected")
    pending = int((status.get("queue") or {}).get("pending", 0))
    if online or not pending:
        queue = ngettext("Not sent yet: {n} tap", "Not sent yet: {n} taps", pending)
    else:
        queue = ngettext("Not sent yet: {n} tap (kept on the terminal)",
                         "Not sent yet: {n} taps (kept on the terminal)", pending)
    queue = queue.format(n=pending)
    if status.get("unrecorded"):
        advice.append(_("Some taps could not be recorded (storage). Call a technician."))
    for alarm in status.get("alarms") or []:
        advice.append(_("Alarm: {alarm} — call a technician.").format(alarm=alarm))
    updated = _parse(status.get("updated_at"))
    if not status.get("running", False) or updated is None or (
            now - updated).total_seconds() > STALE_S:
        advice.append(_("The terminal's program has stopped. Call a technician."))
    return {"reader": reader, "link": link, "queue": queue, "advice": advice,
            "ok": not advice}


def _parse(text: object) -> dt.datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
