"""sukumo-city: the city's side of mqtt-v1 — the inbox on PostgreSQL, the fleet view, the
city's CA and bundle signing. Never imported by the terminal (`reader/`); it shares only
`reader.wire` (one wire model for both sides) and the pure parts below it.
"""
