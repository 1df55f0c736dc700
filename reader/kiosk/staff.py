"""The staff's line of the kiosk screen, from the daemon's status.json: the reader, the
city link, the queue, and plain advice when something needs a technician.

It shows nothing about any person: status.json's `last_tap` is not read.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

STALE_S = 15.0  # the daemon rewrites status.json every 2 s


def staff_view(status: dict[str, Any] | None, now: dt.datetime | None = None
               ) -> dict[str, Any]:
    """{"reader", "link", "queue", "advice": [...], "ok": bool} in Japanese."""
    now = now or dt.datetime.now(dt.UTC)
    if status is None:
        return {"reader": "—", "link": "—", "queue": "—", "ok": False,
                "advice": ["端末のプログラムが動いていません。技術者に連絡してください。"]}
    advice: list[str] = []
    reader_ok = status.get("reader") == "ok"
    reader = "読み取り機: 正常" if reader_ok else "読み取り機: 見つかりません"
    if not reader_ok:
        advice.append("読み取り機の USB ケーブルを差し直してください。直らなければ技術者へ。")
    sync = status.get("sync") or {}
    online = sync.get("state") == "online"
    link = "市との通信: 接続中" if online else "市との通信: 未接続"
    pending = int((status.get("queue") or {}).get("pending", 0))
    queue = f"未送信: {pending} 件" + ("" if online or not pending else "（端末に保存済み）")
    if status.get("unrecorded"):
        advice.append("記録できなかったタッチがあります（保存領域）。技術者に連絡してください。")
    for alarm in status.get("alarms") or []:
        advice.append(f"警報: {alarm} — 技術者に連絡してください。")
    updated = _parse(status.get("updated_at"))
    if not status.get("running", False) or updated is None or (
            now - updated).total_seconds() > STALE_S:
        advice.append("端末のプログラムが止まっています。技術者に連絡してください。")
    return {"reader": reader, "link": link, "queue": queue, "advice": advice,
            "ok": not advice}


def _parse(text: object) -> dt.datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
