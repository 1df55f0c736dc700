"""The technician's views of the queue: a summary text, list lines, JSON lines and CSV.

Pure functions over what EventQueue returns, so `sukumo-reader queue` only parses
arguments and prints. JSON lines are the complete record (each line is what
`iter_events` yields and reads back identically); CSV flattens it for a spreadsheet,
with the nested objects (`proof`, `detail`, `local`) kept as JSON text in their column.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

from reader.errors import QueueError
from reader.queue.summary import QueueSummary
from reader.system import codes
from reader.system.i18n import _, ljust, rjust
from reader.wire.event import rfc3339_ms

MIB = 1024 * 1024

CSV_COLUMNS = [
    "seq", "id", "at", "at_ms", "clock", "mode", "facility", "result", "reason",
    "card_muni", "card_mid", "card_sn", "card_ap", "proof", "detail",
    "state", "batch", "sent_at", "error", "local",
]


STATES = ("pending", "in_flight", "rejected")
_PAGE = 1000  # rows per read in iter_listed: no long-lived read transaction


def iter_listed(read: Callable[[str, tuple], list[tuple]], state: str | None = None,
                limit: int | None = None) -> Iterator[dict]:
    """EventQueue.iter_events: page by page through `read` (the queue's locked query),
    each row as `listed` makes it. `state`: one of STATES, "unacked" (pending +
    in_flight) or None (all)."""
    if state not in (None, "unacked", *STATES):
        raise QueueError(_("unknown queue state {state!r}; use one of {states}").format(
            state=state, states=", ".join((*STATES, "unacked"))))
    where = {None: "1", "unacked": "state != 'rejected'"}.get(state, "state = ?")
    params: tuple = (state,) if state in STATES else ()
    after, left = 0, limit
    while left is None or left > 0:
        page = min(_PAGE, left) if left is not None else _PAGE
        rows = read("SELECT seq, body, state, batch, sent_at, error, boot_id, mono_ns,"
                    f" clock_synced FROM events WHERE seq > ? AND {where} ORDER BY seq "
                    "LIMIT ?", (after, *params, page))
        for row in rows:
            yield listed(row)
        if len(rows) < page:
            return
        after = rows[-1][0]
        left = None if left is None else left - len(rows)


def summary_text(summary: QueueSummary, *, path: object, warn_mb: int, budget_mb: int) -> str:
    """For a person, in their language; the alarms stay as recorded (English, as the
    status and the city see them)."""
    s = summary
    size = _("{size:.1f} MiB (warn at {warn} MiB, budget {budget} MiB)").format(
        size=s.db_bytes / MIB, warn=warn_mb, budget=budget_mb)
    if s.over_warn:
        size += _("  OVER THE WARN THRESHOLD")
    lines = [
        _("database   {path}").format(path=path),
        _("pending    {pending}  (in flight {in_flight}: sent, waiting for the city's ack)"
          ).format(pending=s.pending, in_flight=s.in_flight),
        _("rejected   {rejected}  (refused by the city, kept aside: `queue list --state "
          "rejected`)").format(rejected=s.rejected),
        _("oldest     {at}").format(at=s.oldest_at or "-"),
        _("last seq   {seq}").format(seq=s.last_seq),
        _("size       {size}").format(size=size),
    ]
    if s.alarms:
        lines += [_("ALARMS")] + [f"  ! {alarm}" for alarm in s.alarms]
    else:
        lines.append(_("alarms     none"))
    return "\n".join(lines)


def list_line(event: dict[str, Any]) -> str:
    """One event for a person: its result, reason and state in words (the codes are in
    `--json` and the export), in columns under `list_header()`."""
    card = event.get("card") or {}
    reason = codes.said("reason", event["reason"]) if event.get("reason") else "-"
    state, result = codes.said("queue", event["state"]), codes.said("result", event["result"])
    return (f"{event['seq']:>8}  {event['at']:<24}  {ljust(state, 18)}  {ljust(result, 8)}  "
            f"{ljust(reason, 24)}  "
            f"{card.get('mid') or '-':<12}  {event['id']}"
            + (_("  error: {error}").format(error=event["error"]) if event.get("error") else ""))


def list_header() -> str:
    seq, at, state, result = _("seq"), _("time"), _("state"), _("result")
    reason, member, event_id = _("reason"), _("member"), _("event id")
    return (f"{rjust(seq, 8)}  {ljust(at, 24)}  {ljust(state, 18)}  {ljust(result, 8)}  "
            f"{ljust(reason, 24)}  {ljust(member, 12)}  {event_id}")


def write_jsonl(events: Iterable[dict[str, Any]], out: IO[str]) -> int:
    n = 0
    for event in events:
        out.write(json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n")
        n += 1
    return n


def write_csv(events: Iterable[dict[str, Any]], out: IO[str]) -> int:
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    n = 0
    for event in events:
        writer.writerow(_csv_row(event))
        n += 1
    return n


def _csv_row(event: dict[str, Any]) -> dict[str, Any]:
    row = dict(event)
    card = event.get("card") or {}
    for key in ("muni", "mid", "sn", "ap"):
        row[f"card_{key}"] = card.get(key, "")
    for key in ("proof", "detail", "local"):
        value = event.get(key)
        row[key] = "" if value is None else json.dumps(value, ensure_ascii=False,
                                                       separators=(",", ":"))
    return {k: ("" if row.get(k) is None else row[k]) for k in CSV_COLUMNS}


def listed(row: tuple) -> dict[str, Any]:
    """A queue row as `iter_events` yields it: the event, its state and local facts."""
    _seq, body, state, batch, sent_at, error, boot_id, mono_ns, clock_synced = row
    out: dict[str, Any] = {**json.loads(body), "state": state}
    if state == "in_flight":
        out["batch"] = batch
        out["sent_at"] = rfc3339_ms(int(sent_at * 1000))
    if state == "rejected":
        out["error"] = error
    out["local"] = {"boot_id": boot_id, "mono_ns": mono_ns, "clock_synced": bool(clock_synced)}
    return out
