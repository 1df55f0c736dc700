-- The fleet page's named queries (city/web/store.py runs them; nothing else builds SQL).
-- Each block starts with "-- name: <name>"; parameters are psycopg's %(name)s.

-- name: account
SELECT name, muni, password FROM city.web_accounts WHERE name = %(name)s;

-- name: account_add
INSERT INTO city.web_accounts (name, muni, password)
VALUES (%(name)s, %(muni)s, %(password)s)
ON CONFLICT (name) DO NOTHING
RETURNING name;

-- name: account_list
SELECT name, muni, created_at, password_changed_at,
       (SELECT count(*) FROM city.web_sessions s
        WHERE s.account = a.name AND s.expires_at > now()) AS sessions
FROM city.web_accounts a ORDER BY muni NULLS FIRST, name;

-- name: account_passwd
UPDATE city.web_accounts SET password = %(password)s, password_changed_at = now()
WHERE name = %(name)s RETURNING name;

-- name: account_remove
DELETE FROM city.web_accounts WHERE name = %(name)s RETURNING name;

-- name: sessions_end_all
DELETE FROM city.web_sessions WHERE account = %(name)s;

-- name: session_add
INSERT INTO city.web_sessions (token, account, csrf, expires_at)
VALUES (%(token)s, %(account)s, %(csrf)s, now() + make_interval(secs => %(ttl_s)s));

-- name: session
SELECT a.name, a.muni, s.csrf
FROM city.web_sessions s JOIN city.web_accounts a ON a.name = s.account
WHERE s.token = %(token)s AND s.expires_at > now();

-- name: session_end
DELETE FROM city.web_sessions WHERE token = %(token)s;

-- name: sessions_prune
DELETE FROM city.web_sessions WHERE expires_at < now();

-- name: town_role
SELECT role FROM city.town_roles WHERE muni = %(muni)s;

-- What the page shows, read under the account's town role (RLS decides the rows).

-- name: fleet_terminals
SELECT muni, tid, online, last_seen, pending, oldest_unacked, app_version,
       bundle_versions, alarms, cert_not_after
FROM city.terminals_v1 ORDER BY muni, tid;

-- name: fleet_taps_per_day
-- The prefecture's plot: every town its role may read.
SELECT (at AT TIME ZONE %(zone)s)::date AS day, facility, count(*) AS taps
FROM city.events_v1
WHERE at >= %(since)s
GROUP BY 1, 2 ORDER BY 1, 2;

-- name: fleet_taps_per_day_town
-- A town's plot. Row-level security alone would give the same rows, but its policy (an
-- OR over the role's towns) cannot use an index: the town named here lets the
-- events_town_day index read only this town's rows of the window.
SELECT (at AT TIME ZONE %(zone)s)::date AS day, facility, count(*) AS taps
FROM city.events_v1
WHERE muni = %(muni)s AND at >= %(since)s
GROUP BY 1, 2 ORDER BY 1, 2;

-- The fleet gauges of /metrics (city/metrics.py), per town; read by the service's role.

-- name: fleet_gauges
SELECT t.muni,
       count(*) FILTER (WHERE t.online AND t.last_seen >= now() - %(silent)s) AS online,
       count(*) FILTER (WHERE t.online AND t.last_seen < now() - %(silent)s) AS silent,
       count(*) FILTER (WHERE NOT t.online) AS offline,
       count(*) FILTER (WHERE jsonb_array_length(t.alarms) > 0) AS with_alarms,
       coalesce(sum(jsonb_array_length(t.alarms)), 0) AS alarms,
       coalesce(sum(t.pending), 0) AS pending,
       coalesce(extract(epoch FROM now() - min(t.oldest_unacked)), 0) AS oldest_unacked_s,
       count(*) FILTER (WHERE t.cert_not_after < now() + %(warn)s) AS certs_expiring,
       coalesce((SELECT sum(g.missing) FROM city.gaps_v1 g WHERE g.muni = t.muni), 0)
           AS missing
FROM city.terminals_v1 t
GROUP BY t.muni ORDER BY t.muni;
