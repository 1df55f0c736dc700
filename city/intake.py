"""`sukumo-city run`: the intake (MQTT in, PostgreSQL, acks out). Being written."""

from __future__ import annotations

from pathlib import Path

from city.settings import CitySettings
from reader.errors import ConfigError


def run(settings: CitySettings, *, ready_file: Path | None = None, drop_first: int = 0) -> int:
    raise ConfigError("sukumo-city run: not yet")
