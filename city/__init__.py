"""sukumo-city: the city's side of mqtt-v1 — the inbox on PostgreSQL, the fleet view, the
city's CA and bundle signing. Never imported by the terminal (`reader/`); it shares only
`reader.wire` (one wire model for both sides) and the pure parts below it
(tests/test_layers.py lists them).

How the room is laid out:

- settings.py  city.toml and SUKUMO_CITY_<SECTION>__<KEY>, validated once (exit 2).
- sql/         ALL the SQL: numbered migrations (`NNNN_pre_*`, `NNNN_post_*`) and
               queries.sql, whose statements are run by name.
- db.py        migrations and the named operations (`Store`) over a psycopg pool.
- inbox.py     what arrives, checked (pure): batch → rows and rejections, status → state.
- link.py      the MQTT 5 link: connect (errors said with their fix), the shared
               subscriptions, acks published by the link's thread alone.
- intake.py    `run`: the link queues, workers store one batch per transaction and ack
               after commit, maintenance keeps the monthly partitions; it serves web/.
- health.py    the broker's and the database's state: an error line with the fix once
               per change, and the state gauges.
- metrics.py   /metrics: this instance's counters (by town), the fleet's gauges read from
               PostgreSQL at each scrape.
- i18n.py      the fleet page's words in the language each request asks for.
- web/         the fleet page behind a login (http.server): auth.py (scrypt, sessions,
               CSRF, throttle), store.py (read under the town's role; sql/web.sql),
               page.py and chart.py (HTML and the SVG plot, no I/O), server.py,
               accounts.py (`sukumo-city account`).
- bundles.py   `publish-bundle`: sign and publish a bundle, retained.
- ca/          `sukumo-city ca`: the terminals' CA (authority.py), its append-only log
               (log.py), the §7 renewal answers (renewal.py) that `run` gives on a link
               of its own (responder.py) when `[ca] dir` is set.
- cli.py       `sukumo-city`: one thin function per command.
"""
