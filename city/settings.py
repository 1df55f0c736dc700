"""The city service's settings: one TOML file, environment variables over it, validated once.

Precedence (highest first): keyword arguments (tests), environment variables
`SUKUMO_CITY_<SECTION>__<KEY>`, the TOML file (`sukumo-city --config FILE`, default
/etc/sukumo-city/city.toml when it exists), the defaults below. Every key is in
docs/city.md; a key not defined here is an error, explained as the terminal's are
(reader/config/explain.py: the key, where it came from, what is allowed; exit 2).
"""

from __future__ import annotations

from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from reader.config.explain import (
    ENV_DELIMITER,
    check_env_names,
    check_toml,
    describe_env_error,
    describe_validation_error,
)
from reader.errors import ConfigError
from reader.system.i18n import _

ENV_PREFIX = "SUKUMO_CITY_"
DEFAULT_CONFIG_PATH = Path("/etc/sukumo-city/city.toml")

_config_path: ContextVar[Path | None] = ContextVar("sukumo_city_config_path", default=None)


class Section(BaseModel):
    """A [section] of city.toml; unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseSettings(Section):
    # A libpq connection string or URI: "host=db.example dbname=city user=sukumo_city" or
    # "postgresql://sukumo_city@db.example/city". Passwords belong in ~/.pgpass or
    # PGPASSWORD, not here (this file is readable by the service's operators).
    dsn: str = ""
    # Months of events kept: older monthly partitions are dropped whole (never DELETE).
    retention_months: int = Field(25, ge=1, le=1200)
    # Monthly partitions made in advance, so a tap never waits for DDL.
    months_ahead: int = Field(2, ge=1, le=24)
    pool_size: int = Field(4, ge=1, le=100)
    # A statement that takes longer is cancelled (the batch is acked later, on a re-send).
    statement_timeout_s: float = Field(30.0, gt=0)


class MqttSettings(Section):
    url: str = ""
    topic_prefix: str = "sukumo/v1"
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    # The `$share` group: every instance of one deployment uses the same group, so each
    # batch reaches exactly one of them.
    group: str = Field("city", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    # Empty: city-<host>-<pid>. Two instances must never share a client id.
    client_id: str = Field("", max_length=128)
    keepalive_s: int = Field(30, ge=5, le=3600)
    reconnect_max_s: float = Field(10.0, gt=0, le=600)


class IntakeSettings(Section):
    # Batches waiting for a database worker. When full, a batch is dropped without an
    # ack: the terminal keeps it and sends it again (mqtt-v1 §3), nothing is lost.
    queue_max: int = Field(1000, ge=1, le=1_000_000)
    workers: int = Field(2, ge=1, le=64)
    # A batch that cannot be stored (database down) is retried this long, then left to
    # the terminal's re-send (its ack timeout is 30 s by default).
    retry_s: float = Field(25.0, ge=0)
    # How often `run` does the partition maintenance of `sukumo-city maintain`.
    maintain_interval_s: float = Field(3600.0, gt=0)


class WebSettings(Section):
    # The fleet page and the Prometheus endpoint (/metrics): host:port. Empty: neither.
    listen: str = Field("127.0.0.1:9391", pattern=r"^([^:]+:[0-9]{1,5})?$")
    # Host names the staff's browsers use besides the listen address (a reverse proxy's
    # name, say); any other Host header is refused (DNS rebinding).
    hosts: list[str] = []
    # The page's language when the browser's Accept-Language names neither.
    language: Literal["ja", "en"] = "ja"
    session_hours: float = Field(12.0, gt=0, le=24 * 30)
    # Certificates that expire within this many days are shown (and counted) as expiring.
    cert_warn_days: int = Field(30, ge=1, le=3650)
    # An "online" terminal with no word for this long is shown (and counted) as silent:
    # its status comes every minute (mqtt.status_interval_s), its Will may be lost.
    silent_minutes: int = Field(10, ge=2, le=1440)
    # Days of taps in the plot, and the time zone of "a day".
    chart_days: int = Field(14, ge=1, le=92)
    timezone: str = "Asia/Tokyo"
    # Cookies only over HTTPS: on when a TLS reverse proxy is in front of the page.
    secure_cookies: bool = False

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(_("unknown time zone {zone} (use an IANA name, e.g. "
                               "Asia/Tokyo)").format(zone=repr(value))) from exc
        return value


class SigningSettings(Section):
    # Where `sukumo-city bundle sign` finds the ops key (docs/city.md, "Signing bundles"):
    # a PKCS#11 token (module, token, key_label; the PIN from SUKUMO_PKCS11_PIN or a
    # prompt, never here), or, for a development city, a key file.
    module: str = ""  # e.g. /usr/lib/softhsm/libsofthsm2.so, a YubiKey's libykcs11.so
    token: str = ""
    key_label: str = ""
    key_file: str = ""
    # The kid the trust bundle gives the ops key (hex); empty: derived from the key.
    kid: str = Field("", pattern=r"^([0-9a-fA-F]{2})*$")


class CaSettings(Section):
    # The city's CA for terminals (`sukumo-city ca init`): its directory. Set, `run`
    # also answers terminals' certificate renewals (mqtt-v1 §7) from it; empty, this
    # instance leaves them to one that has it (`sukumo-city ca` then uses
    # /var/lib/sukumo-city/ca).
    dir: Path | None = None


class LogSettings(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "text"] = "json"


class CitySettings(BaseSettings):
    """The validated settings of one `sukumo-city` instance. Build with `load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter=ENV_DELIMITER, extra="forbid",
        frozen=True)

    database: DatabaseSettings = DatabaseSettings()
    mqtt: MqttSettings = MqttSettings()
    intake: IntakeSettings = IntakeSettings()
    web: WebSettings = WebSettings()
    signing: SigningSettings = SigningSettings()
    ca: CaSettings = CaSettings()
    log: LogSettings = LogSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _config_path.get()
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)


def require_database(settings: CitySettings) -> str:
    """The DSN, or ConfigError naming the key (commands that need the database call it)."""
    if not settings.database.dsn.strip():
        raise ConfigError(_(
            "setting database.dsn is empty: give the PostgreSQL connection string in "
            "[database] dsn or {env} (e.g. \"host=db.example dbname=city "
            "user=sukumo_city\")").format(env=f"{ENV_PREFIX}DATABASE{ENV_DELIMITER}DSN"))
    return settings.database.dsn


def require_broker(settings: CitySettings) -> None:
    """ConfigError naming the key when the broker cannot be reached as configured."""
    m = settings.mqtt
    if not m.url.startswith(("mqtts://", "mqtt://")):
        raise ConfigError(_("setting mqtt.url = {url!r}: use mqtts://host:port").format(
            url=m.url))
    if m.url.startswith("mqtts://"):
        for name in ("ca_file", "cert_file", "key_file"):
            path = getattr(m, name)
            if path is None or not Path(path).is_file():
                raise ConfigError(_(
                    "setting mqtt.{name} = {path}: a readable file is required for "
                    "mqtts:// (the city's client certificate and the CA of the broker)"
                ).format(name=name, path=path))


def load_settings(path: Path | None = None, **overrides: Any) -> CitySettings:
    """Read, merge and validate once; ConfigError with a readable message (exit 2).
    `path` None: the default file when it exists; a path given must exist."""
    candidate = DEFAULT_CONFIG_PATH if path is None else Path(path)
    chosen: Path | None = candidate
    if not candidate.exists():
        if path is not None:
            raise ConfigError(_("config file {path} does not exist").format(path=candidate))
        chosen = None
    else:
        check_toml(candidate)
    check_env_names(set(CitySettings.model_fields), prefix=ENV_PREFIX)
    token = _config_path.set(chosen)
    try:
        return CitySettings(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, chosen, prefix=ENV_PREFIX)) from None
    except SettingsError as exc:
        raise ConfigError(describe_env_error(exc, prefix=ENV_PREFIX)) from None
    finally:
        _config_path.reset(token)
