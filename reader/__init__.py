"""sukumo-reader: the card-reader terminal daemon of the Sukumo City ID service.

How the code is laid out. Each folder is one layer and imports only from the layers
below it (tests/test_layers.py holds the code to this list), bottom first:

- card/        the card protocol and what "verified" means: bytes and keys in, a verdict
               out. Standard library, cbor2 and cryptography only; no I/O.
- errors.py    the one exception tree.  system/  sd_notify, boot and clock, logs, UUIDv7,
               the message catalogs (i18n), file ownership under the state directory.
- wire/        the typed model of what crosses to the city: Event, batch, ack, status.
- modes/       check 9 as pure policy: a mode reads a narrow ModeState and returns a
               Decision with its state updates; the modes' own clock.
- config/      the settings, validated once; config bundles; AP profiles.
- bundles/     the signed trust/denylist/config bundles a terminal holds (TrustStore).
  emulator/    emulated cards and readers (development and tests).
  sound/       the player.  feedback/  the verdict shown: status light, kiosk feed.
- queue/       the durable SQLite queue; it turns the modes' updates into SQL.
  transports/  virtual, pcsc, nfcpy in one table, and the shared tap behaviour.
- sync/        the MQTT link to the city.
- terminal/    the daemon: wiring, the tap loop, live reconfiguration, status.json,
               the lock that keeps it one per terminal.
- technician/  provision, doctor, the broker probe.  kiosk/  the screen's server.
- devtools/    the demo and the development broker.
- cli/         `sukumo-reader`: one thin module per command.
"""

__version__ = "0.1.0"
