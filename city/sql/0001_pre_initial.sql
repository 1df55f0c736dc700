-- sukumo-city schema 1: the inbox of mqtt-v1 events, the terminals, the towns.
--
-- Why two tables per event. An event's id must be unique (mqtt-v1 §3: a re-send is
-- counted, never stored twice), and events are partitioned by month of `at` so retention
-- drops a partition instead of DELETE-ing a year of rows. PostgreSQL allows a unique
-- index on a partitioned table only when it includes the partition key, so UNIQUE (id)
-- cannot live on `events`. `event_ids` holds it instead, partitioned by RANGE of the id
-- itself: an id is a UUIDv7 (mqtt-v1 §2) whose first 48 bits are the tap's Unix
-- milliseconds, taken from the same clock as `at`, so the month of an id is the month of
-- its event and both tables' monthly partitions are dropped together. Ids that fall
-- outside every month (a UUID of another version, a terminal clock years off) go to the
-- DEFAULT partitions, which retention keeps.

-- (schema city and city.migrations are made by the migration runner, city/db.py)

-- A group for every person who reads the city's data, and the prefecture's role that
-- reads every town (roles are cluster-wide: another database may have made them).
DO $$
BEGIN
    CREATE ROLE city_staff NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;
DO $$
BEGIN
    CREATE ROLE city_prefecture NOLOGIN IN ROLE city_staff;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;

-- town role (town_<muni>) -> its municipality; written by `sukumo-city add-town`.
CREATE TABLE city.town_roles (
    role name PRIMARY KEY,
    muni text NOT NULL UNIQUE CHECK (muni ~ '^[0-9]{6}$')
);

-- The lowest UUIDv7 of an instant: the bound of an id partition.
CREATE FUNCTION city.uuid7_floor(t timestamptz) RETURNS uuid
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT (lpad(to_hex(floor(extract(epoch FROM t) * 1000)::bigint), 12, '0')
            || '00000000000000000000')::uuid
$$;

CREATE TABLE city.event_ids (
    id uuid NOT NULL,
    muni text NOT NULL,
    tid text NOT NULL,
    copies integer NOT NULL DEFAULT 1,   -- how many times it arrived (re-sends, instances)
    PRIMARY KEY (id)
) PARTITION BY RANGE (id);
CREATE TABLE city.event_ids_default PARTITION OF city.event_ids DEFAULT;

CREATE TABLE city.events (
    id uuid NOT NULL,
    muni text NOT NULL,
    tid text NOT NULL,
    seq bigint NOT NULL,
    at timestamptz NOT NULL,
    mode text NOT NULL,
    facility text NOT NULL,
    result text NOT NULL,
    reason text,
    member_id text,                      -- card.mid: the member, as the card carries it
    body jsonb NOT NULL,                 -- the §2 event as received
    received_at timestamptz NOT NULL DEFAULT now(),
    receiver text NOT NULL               -- the instance that stored it
) PARTITION BY RANGE (at);
CREATE TABLE city.events_default PARTITION OF city.events DEFAULT;
CREATE INDEX events_terminal_seq ON city.events (muni, tid, seq);

-- Each terminal's seq numbers stored so far, as contiguous ranges [lo, hi]: kept up to
-- date in the transaction that stores a batch, so the gaps are a read of a few rows
-- per terminal, never a scan of the events.
CREATE TABLE city.seq_ranges (
    muni text NOT NULL,
    tid text NOT NULL,
    lo bigint NOT NULL,
    hi bigint NOT NULL CHECK (hi >= lo),
    PRIMARY KEY (muni, tid, lo)
);

CREATE TABLE city.terminals (
    muni text NOT NULL,
    tid text NOT NULL,
    first_seen timestamptz NOT NULL DEFAULT now(),
    last_seen timestamptz NOT NULL DEFAULT now(),   -- last batch or status received
    online boolean NOT NULL DEFAULT true,
    status jsonb,                                   -- the last §4 status (or the Will)
    status_received_at timestamptz,
    pending integer,
    oldest_unacked timestamptz,
    app_version text,
    bundle_versions jsonb,
    alarms jsonb NOT NULL DEFAULT '[]',
    cert_not_after timestamptz,                     -- status.cert.not_after (§7)
    PRIMARY KEY (muni, tid)
);

-- The municipalities `who` may read: NULL for all (the prefecture).
CREATE FUNCTION city.visible_munis(who name) RETURNS text[]
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN pg_has_role(who, 'city_prefecture', 'MEMBER') THEN NULL
           ELSE (SELECT coalesce(array_agg(t.muni), '{}')
                 FROM city.town_roles t JOIN pg_roles r ON r.rolname = t.role
                 WHERE pg_has_role(who, t.role, 'MEMBER')) END
$$;

-- Row-level security: a town's staff see only their town's rows, in the base tables and
-- so in the security_invoker views over them. The table owner (the intake) is exempt.
ALTER TABLE city.events ENABLE ROW LEVEL SECURITY;
ALTER TABLE city.event_ids ENABLE ROW LEVEL SECURITY;
ALTER TABLE city.terminals ENABLE ROW LEVEL SECURITY;
ALTER TABLE city.seq_ranges ENABLE ROW LEVEL SECURITY;
CREATE POLICY town_rows ON city.events FOR SELECT USING (
    (SELECT city.visible_munis(current_user)) IS NULL
    OR muni = ANY (coalesce((SELECT city.visible_munis(current_user)), '{}')));
CREATE POLICY town_rows ON city.event_ids FOR SELECT USING (
    (SELECT city.visible_munis(current_user)) IS NULL
    OR muni = ANY (coalesce((SELECT city.visible_munis(current_user)), '{}')));
CREATE POLICY town_rows ON city.terminals FOR SELECT USING (
    (SELECT city.visible_munis(current_user)) IS NULL
    OR muni = ANY (coalesce((SELECT city.visible_munis(current_user)), '{}')));
CREATE POLICY town_rows ON city.seq_ranges FOR SELECT USING (
    (SELECT city.visible_munis(current_user)) IS NULL
    OR muni = ANY (coalesce((SELECT city.visible_munis(current_user)), '{}')));

-- What the city reads (docs/city.md). Versioned names: a later schema adds _v2 beside.
CREATE VIEW city.events_v1 WITH (security_invoker = true) AS
    SELECT id, muni, tid, seq, at, mode, facility, result, reason, member_id, body,
           received_at
    FROM city.events;

CREATE VIEW city.terminals_v1 WITH (security_invoker = true) AS
    SELECT muni, tid, online, last_seen, pending, oldest_unacked, app_version,
           bundle_versions, alarms, cert_not_after, first_seen
    FROM city.terminals;

-- Holes in each terminal's seq (events it recorded that have not arrived), including
-- before the first one stored (seq starts at 1).
CREATE VIEW city.gaps_v1 WITH (security_invoker = true) AS
    SELECT muni, tid, prev_hi + 1 AS first_missing, lo - 1 AS last_missing,
           lo - 1 - prev_hi AS missing
    FROM (SELECT muni, tid, lo,
                 coalesce(lag(hi) OVER (PARTITION BY muni, tid ORDER BY lo), 0) AS prev_hi
          FROM city.seq_ranges) r
    WHERE lo > prev_hi + 1;

GRANT USAGE ON SCHEMA city TO city_staff;
GRANT SELECT ON city.events, city.event_ids, city.terminals, city.seq_ranges,
    city.town_roles, city.events_v1, city.terminals_v1, city.gaps_v1 TO city_staff;
GRANT EXECUTE ON FUNCTION city.visible_munis(name) TO city_staff;

-- Retention and partitions ahead (`sukumo-city maintain`; `run` calls it periodically).
-- Partition bounds are UTC months.
CREATE FUNCTION city.ensure_month(m date) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    suffix text := to_char(m, '"y"YYYY"m"MM');
    lo timestamptz := date_trunc('month', m)::timestamp AT TIME ZONE 'UTC';
    hi timestamptz := (date_trunc('month', m) + interval '1 month')::timestamp AT TIME ZONE 'UTC';
BEGIN
    IF to_regclass('city.events_' || suffix) IS NOT NULL THEN
        RETURN false;
    END IF;
    EXECUTE format('CREATE TABLE city.%I PARTITION OF city.events FOR VALUES FROM (%L) TO (%L)',
                   'events_' || suffix, lo, hi);
    EXECUTE format('CREATE TABLE city.%I PARTITION OF city.event_ids FOR VALUES FROM (%L) TO (%L)',
                   'event_ids_' || suffix, city.uuid7_floor(lo), city.uuid7_floor(hi));
    RETURN true;
END $$;

-- Drops whole monthly partitions (both tables) of months before `m`; their names.
CREATE FUNCTION city.drop_months_before(m date) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    part record;
BEGIN
    FOR part IN
        SELECT c.relname FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'city.events'::regclass AND c.relname ~ '^events_y[0-9]{4}m[0-9]{2}$'
          AND to_date(substr(c.relname, 8), '"y"YYYY"m"MM') < date_trunc('month', m)
        ORDER BY c.relname
    LOOP
        EXECUTE format('DROP TABLE city.%I', part.relname);
        EXECUTE format('DROP TABLE IF EXISTS city.%I', 'event_ids_' || substr(part.relname, 8));
        RETURN NEXT part.relname;
    END LOOP;
END $$;

-- A town's staff role, town_<muni> (no login: each person's account is granted it).
CREATE FUNCTION city.add_town(p_muni text) RETURNS name
LANGUAGE plpgsql AS $$
DECLARE
    r name := 'town_' || p_muni;
BEGIN
    IF p_muni !~ '^[0-9]{6}$' THEN
        RAISE EXCEPTION 'not a 6-digit municipality code: %', p_muni
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    BEGIN
        EXECUTE format('CREATE ROLE %I NOLOGIN', r);
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END;
    EXECUTE format('GRANT city_staff TO %I', r);
    INSERT INTO city.town_roles (role, muni) VALUES (r, p_muni) ON CONFLICT DO NOTHING;
    RETURN r;
END $$;
