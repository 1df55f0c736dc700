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
               after commit, maintenance keeps the monthly partitions. `IntakeStats` and
               `BrokerLink.up`/`acks_sent` are what a health or metrics endpoint reads.
- bundles.py   `publish-bundle`: sign and publish a bundle, retained.
- cli.py       `sukumo-city`: one thin function per command.
"""
