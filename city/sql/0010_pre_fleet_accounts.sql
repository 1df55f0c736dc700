-- sukumo-city schema 2: the fleet page's accounts and sessions (city/web/).
--
-- An account belongs to one town (muni) or, with muni NULL, to the prefecture. The page
-- reads the fleet under that town's PostgreSQL role (city.town_roles; SET LOCAL ROLE),
-- so row-level security keeps the towns apart, not only the application. Passwords are
-- scrypt hashes (city/web/auth.py); sessions are kept as the SHA-256 of their cookie, so
-- every instance knows every session and a logout or a new password ends them at once.
-- Only the service's own role reads these two tables: no grant to city_staff.

CREATE TABLE city.web_accounts (
    name text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9._-]{1,63}$'),
    muni text CHECK (muni ~ '^[0-9]{6}$'),          -- NULL: the prefecture (every town)
    password text NOT NULL,                         -- scrypt$N$r$p$salt$hash
    created_at timestamptz NOT NULL DEFAULT now(),
    password_changed_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE city.web_sessions (
    token bytea PRIMARY KEY,                        -- sha256 of the cookie's token
    account text NOT NULL REFERENCES city.web_accounts (name) ON DELETE CASCADE,
    csrf text NOT NULL,                             -- the token every POST must carry
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX web_sessions_expiry ON city.web_sessions (expires_at);
CREATE INDEX web_sessions_account ON city.web_sessions (account);

-- The fleet page's plot counts one town's taps per facility over the last days: an
-- index-only scan of this town's rows in the window, not a scan of every town's.
-- Made with the schema, before any event is stored (a plain CREATE INDEX on a table
-- already holding a year would hold up the intake while it builds).
CREATE INDEX events_town_day ON city.events (muni, at) INCLUDE (facility);
