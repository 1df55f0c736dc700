"""The queue database's schema, versioned by `PRAGMA user_version`.

MIGRATIONS[n] takes a database from version n to n + 1. All pending migrations run in
ONE write transaction together with the new user_version, so a crash or a full disk
mid-upgrade leaves the database exactly as it was (SQLite DDL is transactional).
A database from a newer release than this code is refused, never downgraded: the
events in it are still owed to the city.

Version 1:
- `seq_counter`: one row holding the last seq ever allocated. seq is +1 inside the
  insert's transaction, so a rolled-back insert gives its number back and a committed
  one is never reused - not even after its event was acked and deleted, which is why
  this cannot be MAX(seq) + 1 over `events`.
- `events`: one row per recorded tap that the city has not acknowledged. `body` is the
  mqtt-v1 §2 event as JSON (with seq); `wire_bytes` is an upper bound of its JSON size
  in any encoding, used to fill batches without re-encoding. boot_id / mono_ns /
  clock_synced say when, locally, the tap happened (see reader/system/bootinfo.py).
  state: pending -> in_flight (batch, sent_at) -> deleted on ack, or rejected (error).
- `alarms`: what the technician must see in `queue summary` (e.g. a corrupt database
  moved aside); kept in the database so every later reader of the queue sees it.

Version 4: `event_counts` (state -> n), kept by triggers (see below).
The last seq ever used also lives outside the file, in the seq mark (seqmark.py).

Version 6: one page less written per tap (issue 22). A tap no longer writes
`seq_counter`: its seq is one above the larger of `last_seq` and MAX(seq) over `events`
(LAST_SEQ, one probe of the rowid tree), and a trigger keeps `last_seq` at or above
every seq deleted (an acked event), so a seq is still never reused. `reserved`: the
highest seq the mark beside the file allows (seqmark.py: reserved in blocks, one fsync
per tap instead of two); never above the mark.

Version 7: `mode_clock`, the modes' own timeline (reader/modes/clock.py).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlite_utils import Database

from reader.errors import QueueError
from reader.queue.pseudonym import Pseudonyms
from reader.system.i18n import _

MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE seq_counter (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            last_seq INTEGER NOT NULL CHECK (last_seq >= 0)
        )""",
        "INSERT INTO seq_counter (id, last_seq) VALUES (1, 0)",
        """CREATE TABLE events (
            seq INTEGER PRIMARY KEY CHECK (seq >= 1),
            id TEXT NOT NULL UNIQUE,
            at TEXT NOT NULL,
            body TEXT NOT NULL,
            wire_bytes INTEGER NOT NULL,
            boot_id TEXT NOT NULL,
            mono_ns INTEGER NOT NULL,
            clock_synced INTEGER NOT NULL CHECK (clock_synced IN (0, 1)),
            state TEXT NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'in_flight', 'rejected')),
            batch TEXT,
            sent_at REAL,
            error TEXT
        )""",
        # Due events are found per state in seq order without scanning rejected ones.
        "CREATE INDEX events_by_state ON events (state, seq)",
        """CREATE TABLE alarms (
            n INTEGER PRIMARY KEY,
            raised_at TEXT NOT NULL,
            message TEXT NOT NULL
        )""",
    ],
    # Version 2: mode state (reader/modes, docs/modes.md). Written only through
    # append(extra_sql=...) for accepted taps, in the event's own transaction.
    [
        "CREATE TABLE mode_checkin_last (mid TEXT PRIMARY KEY, at_ms INTEGER NOT NULL)",
        """CREATE TABLE mode_event_attendance (
            event_code TEXT NOT NULL, mid TEXT NOT NULL, at_ms INTEGER NOT NULL,
            PRIMARY KEY (event_code, mid))""",
        """CREATE TABLE mode_nursery_last (
            mid TEXT PRIMARY KEY, day TEXT NOT NULL, at_ms INTEGER NOT NULL,
            direction TEXT NOT NULL CHECK (direction IN ('arrival', 'departure')))""",
        """CREATE TABLE mode_coupon_uses (
            mid TEXT NOT NULL, coupon TEXT NOT NULL, period TEXT NOT NULL,
            used INTEGER NOT NULL CHECK (used >= 1), last_at_ms INTEGER NOT NULL,
            PRIMARY KEY (mid, coupon, period))""",
    ],
    # Version 3: urgent events (youth-watch taps, Decision.send_now) go out ahead of a
    # backlog, in a batch of their own; the partial index finds them without a scan.
    [
        "ALTER TABLE events ADD COLUMN urgent INTEGER NOT NULL DEFAULT 0"
        " CHECK (urgent IN (0, 1))",
        "CREATE INDEX events_urgent ON events (seq) WHERE urgent = 1 AND state = 'pending'",
    ],
    # Version 4: the count of events per state, kept by triggers in the same transaction
    # as the change that moves it, so the status (every 2 s, in the tap thread) reads a
    # few rows instead of counting the backlog. Triggers, not code in EventQueue: any SQL
    # that inserts, deletes or changes the state of events keeps the counts right.
    # (INSERT OR REPLACE would not: its implicit delete fires no trigger; it is not used.)
    [
        "CREATE TABLE event_counts (state TEXT PRIMARY KEY, n INTEGER NOT NULL)",
        "INSERT INTO event_counts (state, n) SELECT state, COUNT(*) FROM events GROUP BY state",
        """CREATE TRIGGER event_counts_insert AFTER INSERT ON events BEGIN
            INSERT INTO event_counts (state, n) VALUES (NEW.state, 1)
                ON CONFLICT (state) DO UPDATE SET n = n + 1;
        END""",
        """CREATE TRIGGER event_counts_delete AFTER DELETE ON events BEGIN
            UPDATE event_counts SET n = n - 1 WHERE state = OLD.state;
        END""",
        """CREATE TRIGGER event_counts_update AFTER UPDATE OF state ON events
            WHEN OLD.state IS NOT NEW.state BEGIN
            UPDATE event_counts SET n = n - 1 WHERE state = OLD.state;
            INSERT INTO event_counts (state, n) VALUES (NEW.state, 1)
                ON CONFLICT (state) DO UPDATE SET n = n + 1;
        END""",
    ],
    # Version 5: member ids in mode state become their pseudonym (reader/queue/pseudonym.py):
    # `pseudonym()` is the terminal's keyed hash, registered on the connection by
    # migrate(). The clear ids are overwritten (secure_delete) in the same transaction.
    [
        "UPDATE mode_checkin_last SET mid = pseudonym(mid) WHERE mid NOT LIKE 'p-%'",
        "UPDATE mode_event_attendance SET mid = pseudonym(mid) WHERE mid NOT LIKE 'p-%'",
        "UPDATE mode_nursery_last SET mid = pseudonym(mid) WHERE mid NOT LIKE 'p-%'",
        "UPDATE mode_coupon_uses SET mid = pseudonym(mid) WHERE mid NOT LIKE 'p-%'",
    ],
    # Version 6: seq reserved in blocks (seqmark.py; 0: the next tap reserves), and
    # `last_seq` kept by the one thing that can lower MAX(seq): deleting events.
    [
        "ALTER TABLE seq_counter ADD COLUMN reserved INTEGER NOT NULL DEFAULT 0",
        """CREATE TRIGGER events_seq_kept AFTER DELETE ON events
            WHEN OLD.seq > (SELECT last_seq FROM seq_counter WHERE id = 1) BEGIN
            UPDATE seq_counter SET last_seq = OLD.seq WHERE id = 1;
        END""",
    ],
    # Version 7: the modes' clock (reader/modes/clock.py): the last reading the modes'
    # timeline was set from, written with the tap or prune that read it.
    [
        """CREATE TABLE mode_clock (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            boot_id TEXT NOT NULL, mono_ns INTEGER NOT NULL, mode_ms INTEGER NOT NULL,
            synced INTEGER NOT NULL CHECK (synced IN (0, 1)), off_ms INTEGER NOT NULL)""",
    ],
]

SCHEMA_VERSION = len(MIGRATIONS)

# The last seq ever allocated in this file (schema version 6).
LAST_SEQ = ("SELECT MAX(last_seq, COALESCE((SELECT MAX(seq) FROM events), 0)) "
            "FROM seq_counter WHERE id = 1")


def user_version(db: Database) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def migrate(db: Database, path: object,
            pseudonyms: Callable[[], Pseudonyms] | None = None) -> None:
    """Bring the database to SCHEMA_VERSION in one transaction; refuse a newer one.

    `pseudonyms` gives the terminal's keyed hash to the migrations that need it (it is
    asked for only when a row has to be converted)."""
    if user_version(db) == SCHEMA_VERSION:
        return  # the common case: no write lock taken at start-up
    cached: list[Pseudonyms] = []

    def pseudonym(mid: str) -> str:
        if pseudonyms is None:
            raise QueueError(_("this migration needs the terminal's pseudonym secret"))
        if not cached:
            cached.append(pseudonyms())
        return cached[0].of(mid)

    db.conn.create_function("pseudonym", 1, pseudonym, deterministic=True)
    # IMMEDIATE: two processes starting together must not both migrate.
    db.execute("BEGIN IMMEDIATE")
    try:
        current = user_version(db)
        if current > SCHEMA_VERSION:
            raise QueueError(_(
                "queue database {path} has schema version {current}, newer than this "
                "sukumo-reader knows ({known}); it was written by a newer release. Install "
                "that release again; the file is left untouched.").format(
                    path=path, current=current, known=SCHEMA_VERSION))
        for statements in MIGRATIONS[current:]:
            for sql in statements:
                db.execute(sql)
        # PRAGMA takes no bound parameters; SCHEMA_VERSION is our own int.
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        if db.conn.in_transaction:
            db.execute("ROLLBACK")
        raise
