-- 横展開: a resident of a neighbouring town taps at this town's terminals (card-ap-v1 §1,
-- §6; docs/city.md, "Neighbouring towns"). Each town sees its share:
--   * the card's own town sees its resident's taps wherever they happened;
--   * the town where the terminal stands sees that a resident of another town came
--     (that town's code, the time, the facility, the verdict) but not who: no member id,
--     serial, card key or tap receipt of another town's resident.
-- Enforced here, not in the application: staff read events only through events_v1,
-- which filters and masks by the reader's own role.

-- The card's town, as the intake stores it (NULL: no card could be named). Not filled
-- for rows stored before this migration: the view falls back to the body (no rewrite
-- of a year of events).
ALTER TABLE city.events ADD COLUMN card_muni text;

DROP POLICY town_rows ON city.events;
CREATE POLICY town_rows ON city.events FOR SELECT USING (
    (SELECT city.visible_munis(current_user)) IS NULL
    OR muni = ANY (coalesce((SELECT city.visible_munis(current_user)), '{}'))
    OR coalesce(card_muni, body -> 'card' ->> 'muni')
       = ANY (coalesce((SELECT city.visible_munis(current_user)), '{}')));

-- Not security_invoker any more: the view runs as its owner and does the filtering and
-- the masking itself, for the role reading it (current_user is the reader in a view).
-- security_barrier: no function of the reader's query sees a row before the filter.
CREATE OR REPLACE VIEW city.events_v1 WITH (security_invoker = false, security_barrier = true) AS
    SELECT e.id, e.muni, e.tid, e.seq, e.at, e.mode, e.facility, e.result, e.reason,
           CASE WHEN own.card THEN e.member_id END AS member_id,
           CASE WHEN own.card THEN e.body
                ELSE (e.body - 'card' - 'proof')
                     || jsonb_build_object('card', CASE WHEN e.body -> 'card' = 'null'::jsonb
                                                        THEN 'null'::jsonb
                                                        ELSE jsonb_build_object('muni', c.muni) END,
                                           'proof', 'null'::jsonb) END AS body,
           e.received_at,
           c.muni AS card_muni
    FROM city.events e
    CROSS JOIN LATERAL (SELECT city.visible_munis(current_user) AS munis) v
    CROSS JOIN LATERAL (SELECT coalesce(e.card_muni, e.body -> 'card' ->> 'muni') AS muni) c
    CROSS JOIN LATERAL (SELECT v.munis IS NULL OR c.muni IS NULL
                               OR c.muni = ANY (v.munis) AS card) own
    WHERE v.munis IS NULL OR e.muni = ANY (v.munis) OR c.muni = ANY (v.munis);

-- The base table would show every column of a row its policy lets through.
REVOKE SELECT ON city.events FROM city_staff;
