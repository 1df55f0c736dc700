"""The city's certificate authority for terminals (mqtt-v1 §6, §7): authority.py issues,
revokes and publishes the CRL, log.py records all of it append-only, renewal.py answers
a terminal's request over MQTT, cli.py is `sukumo-city ca`."""
