-- The registry of signed bundles (mqtt-v1 §5; city/bundles.py): every signature and every
-- publication, append-only. Versions only go up per (muni, kind, tid): a terminal
-- refuses a version not above its own, so the city refuses it first.
CREATE TABLE city.bundle_log (
    n bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    action text NOT NULL CHECK (action IN ('signed', 'published')),
    muni text NOT NULL CHECK (muni ~ '^[0-9]{6}$'),
    kind text NOT NULL CHECK (kind IN ('trust', 'denylist', 'config')),
    tid text NOT NULL DEFAULT '',  -- the terminal of a config bundle, else ''
    version bigint NOT NULL CHECK (version >= 1),
    sha256 text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    size integer NOT NULL,
    by_whom text NOT NULL,  -- the operating system user who ran the command
    key text NOT NULL       -- file:PATH or pkcs11:token=…;object=…
);
-- Two people signing at once cannot both take the same version.
CREATE UNIQUE INDEX bundle_log_one_version ON city.bundle_log (muni, kind, tid, version, action);

CREATE FUNCTION city.bundle_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'city.bundle_log is append-only';
END $$;
CREATE TRIGGER bundle_log_no_update BEFORE UPDATE OR DELETE ON city.bundle_log
    FOR EACH ROW EXECUTE FUNCTION city.bundle_log_append_only();
CREATE TRIGGER bundle_log_no_truncate BEFORE TRUNCATE ON city.bundle_log
    FOR EACH STATEMENT EXECUTE FUNCTION city.bundle_log_append_only();
