-- Every statement sukumo-city runs, by name (city/db.py loads this file; the rest of the
-- code calls named operations and never builds SQL). Parameters are psycopg's %(name)s.

-- name: lock_migrations
-- Two instances started at once migrate one after the other.
SELECT pg_advisory_xact_lock(hashtext('sukumo-city migrate'));

-- name: create_migrations_table
CREATE SCHEMA IF NOT EXISTS city;
CREATE TABLE IF NOT EXISTS city.migrations (
    name text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: applied_migrations
SELECT name FROM city.migrations ORDER BY name;

-- name: record_migration
INSERT INTO city.migrations (name) VALUES (%(name)s);

-- name: touch_terminal
-- First in a batch's transaction: the terminal's row is locked until commit, so two
-- instances storing batches of one terminal update its seq ranges one after the other.
INSERT INTO city.terminals AS t (muni, tid) VALUES (%(muni)s, %(tid)s)
ON CONFLICT (muni, tid) DO UPDATE SET last_seen = now(), online = true;

-- name: claim_ids
-- The ids seen for the first time; the others are re-sends (see count_copies).
INSERT INTO city.event_ids (id, muni, tid)
SELECT id, %(muni)s, %(tid)s FROM unnest(%(ids)s::uuid[]) AS id
ON CONFLICT (id) DO NOTHING
RETURNING id;

-- name: count_copies
UPDATE city.event_ids SET copies = copies + 1 WHERE id = ANY (%(ids)s::uuid[]);

-- name: insert_events
INSERT INTO city.events (id, muni, tid, seq, at, mode, facility, result, reason,
                         member_id, body, receiver, card_muni)
SELECT e.id, %(muni)s, %(tid)s, e.seq, e.at, e.mode, e.facility, e.result, e.reason,
       e.member_id, e.body, %(receiver)s, e.body -> 'card' ->> 'muni'
FROM jsonb_to_recordset(%(events)s::jsonb) AS e(
    id uuid, seq bigint, at timestamptz, mode text, facility text, result text,
    reason text, member_id text, body jsonb);

-- name: note_seqs
-- Merge the newly stored seqs into the terminal's ranges: each run of consecutive
-- seqs absorbs the ranges it touches or overlaps (a few rows, never the events).
WITH runs AS (
    SELECT min(s) AS lo, max(s) AS hi FROM (
        SELECT s, s - row_number() OVER (ORDER BY s) AS grp
        FROM (SELECT DISTINCT unnest(%(seqs)s::bigint[]) AS s) d) g
    GROUP BY grp
), touched AS (
    DELETE FROM city.seq_ranges r USING runs
    WHERE r.muni = %(muni)s AND r.tid = %(tid)s AND r.lo <= runs.hi + 1 AND r.hi >= runs.lo - 1
    RETURNING r.lo, r.hi
), pieces AS (
    SELECT lo, hi FROM runs UNION ALL SELECT lo, hi FROM touched
), merged AS (
    SELECT min(lo) AS lo, max(hi) AS hi FROM (
        SELECT lo, hi, sum(starts) OVER (ORDER BY lo, hi) AS grp FROM (
            SELECT lo, hi, CASE WHEN lo <= max(hi) OVER (ORDER BY lo, hi ROWS BETWEEN
                   UNBOUNDED PRECEDING AND 1 PRECEDING) + 1 THEN 0 ELSE 1 END AS starts
            FROM pieces) s) m
    GROUP BY grp
)
INSERT INTO city.seq_ranges (muni, tid, lo, hi) SELECT %(muni)s, %(tid)s, lo, hi FROM merged;

-- name: save_status
-- The last status of a terminal (§4), or its Will (offline). A status that arrives after
-- a later one (two instances, a re-delivery) does not overwrite it.
INSERT INTO city.terminals AS t (muni, tid, online, status, status_received_at, last_seen,
                                 pending, oldest_unacked, app_version, bundle_versions,
                                 alarms, cert_not_after)
VALUES (%(muni)s, %(tid)s, %(online)s, %(status)s, %(received_at)s, %(received_at)s,
        %(pending)s, %(oldest_unacked)s, %(app_version)s, %(bundle_versions)s, %(alarms)s,
        %(cert_not_after)s)
ON CONFLICT (muni, tid) DO UPDATE SET
    online = excluded.online, status = excluded.status,
    status_received_at = excluded.status_received_at,
    last_seen = greatest(t.last_seen, excluded.status_received_at),
    pending = coalesce(excluded.pending, t.pending),
    oldest_unacked = CASE WHEN excluded.online THEN excluded.oldest_unacked
                          ELSE t.oldest_unacked END,
    app_version = coalesce(excluded.app_version, t.app_version),
    bundle_versions = coalesce(excluded.bundle_versions, t.bundle_versions),
    alarms = CASE WHEN excluded.online THEN excluded.alarms ELSE t.alarms END,
    cert_not_after = coalesce(excluded.cert_not_after, t.cert_not_after)
WHERE t.status_received_at IS NULL OR t.status_received_at <= excluded.status_received_at;

-- name: lock_maintenance
SELECT pg_advisory_xact_lock(hashtext('sukumo-city maintain'));

-- name: ensure_months
SELECT m::date AS month, city.ensure_month(m::date) AS created
FROM generate_series(date_trunc('month', now() AT TIME ZONE 'UTC'),
                     date_trunc('month', now() AT TIME ZONE 'UTC')
                         + make_interval(months => %(ahead)s), interval '1 month') AS m;

-- name: drop_old_months
SELECT city.drop_months_before((date_trunc('month', now() AT TIME ZONE 'UTC')
                                - make_interval(months => %(keep)s - 1))::date) AS dropped;

-- name: rows_outside_months
-- Events no monthly partition takes (a terminal clock far off): kept, never dropped.
SELECT count(*) AS n FROM city.events_default;

-- name: add_town
-- A town's staff role (town_<muni>, no login: people's accounts are granted it).
SELECT city.add_town(%(muni)s);

-- name: gaps
SELECT muni, tid, first_missing, last_missing FROM city.gaps_v1 ORDER BY muni, tid, first_missing;

-- name: summary
-- Per town: terminals, online, events stored and missing. Counted from the seq ranges
-- (distinct seqs stored per terminal), so it costs a few rows per terminal, not a scan.
SELECT t.muni, count(*) AS terminals, count(*) FILTER (WHERE t.online) AS online,
       coalesce(sum(r.stored), 0)::bigint AS events,
       coalesce(sum(g.missing), 0)::bigint AS missing
FROM city.terminals t
LEFT JOIN (SELECT muni, tid, sum(hi - lo + 1) AS stored FROM city.seq_ranges
           GROUP BY muni, tid) r USING (muni, tid)
LEFT JOIN (SELECT muni, tid, sum(missing) AS missing FROM city.gaps_v1
           GROUP BY muni, tid) g USING (muni, tid)
GROUP BY t.muni ORDER BY t.muni;

-- name: last_bundle_version
-- The highest version recorded for one bundle line; `published` restricts to those sent.
SELECT coalesce(max(version), 0) FROM city.bundle_log
WHERE muni = %(muni)s AND kind = %(kind)s AND tid = %(tid)s
  AND (NOT %(published)s OR action = 'published');

-- name: record_bundle
INSERT INTO city.bundle_log (action, muni, kind, tid, version, sha256, size, by_whom, key)
VALUES (%(action)s, %(muni)s, %(kind)s, %(tid)s, %(version)s, %(sha256)s, %(size)s,
        %(by_whom)s, %(key)s);

-- name: bundle_log
SELECT at, action, muni, kind, tid, version, sha256, by_whom, key
FROM city.bundle_log ORDER BY n;
