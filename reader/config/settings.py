"""Settings: one TOML file, environment variables over it, validated once at start-up.

Precedence (highest first): keyword arguments (tests), environment variables
`SUKUMO_READER_<SECTION>__<KEY>`, the TOML file (default /etc/sukumo-reader/reader.toml,
`--config PATH` overrides), the defaults below. Every key is documented in
docs/configuration.md; a key not defined here is an error, so a typo never goes unnoticed.
"""

from __future__ import annotations

from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from reader.card.profiles import MEMBER_AID, is_national
from reader.config.explain import (
    ENV_DELIMITER,
    ENV_PREFIX,
    check_env_names,
    check_toml,
    describe_env_error,
    describe_validation_error,
)
from reader.config.feedback import FeedbackSettings
from reader.config.mode_settings import (
    ModesSettings,
)
from reader.config.section import Section, not_below
from reader.errors import ConfigError
from reader.system.i18n import _
from reader.wire.event import Mode

DEFAULT_CONFIG_PATH = Path("/etc/sukumo-reader/reader.toml")


_config_path: ContextVar[Path | None] = ContextVar("sukumo_config_path", default=None)


class TerminalSettings(Section):
    id: str = Field("t-dev-0001", pattern=r"^[a-z0-9][a-z0-9-]{2,63}$")
    muni: str = Field("392081", pattern=r"^[0-9]{6}$")
    facility: str = Field("dev-facility", min_length=1, max_length=64)
    mode: Mode = Mode.CHECKIN
    timezone: str = "Asia/Tokyo"

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


class ReaderSettings(Section):
    # The real reader by default: `virtual` reads no card (development, tests, the demo)
    # and is chosen only on purpose, with a feed (doctor says ✗ otherwise).
    transport: Literal["virtual", "pcsc", "nfcpy"] = "pcsc"
    # PC/SC: a substring of the reader name; empty picks the first contactless reader.
    pcsc_reader: str = ""
    # nfcpy device path: usb, usb:054c:06c1, udp:127.0.0.1:54321, tty:…
    nfc_path: str = "usb"
    # virtual: a directory watched for *.card files, each one a tap (tests, demos).
    virtual_feed: Path | None = None
    # Floors on every interval: a value near 0 would spin a core (issue 22).
    poll_timeout_s: float = Field(0.25, ge=0.05, le=5)
    # One tap, first APDU to verdict, takes at most this long; a card (or a reader driver)
    # that is slower gets card_error. At most 20 s: the unit's WatchdogSec=30 must never
    # run out during one tap.
    tap_deadline_s: float = Field(3.0, ge=0.5, le=20)


AID_PATTERN = r"^([0-9A-Fa-f]{2}){5,16}$"


MAX_MORE_AIDS = 8  # each costs one SELECT (a few ms) on a card of none of these towns


class ApProfile(Section):
    aid: str = Field(MEMBER_AID, pattern=AID_PATTERN)
    authenticate: bool = True
    # The record's `ap` (card-ap-v1 §3 check 5); None: the mode's (nursery or member).
    ap: Literal["member", "nursery"] | None = None
    # Neighbouring towns' AIDs of the same AP, tried in order after `aid` (the home
    # town's, tried first) answers 6A82. Which towns' cards are accepted is
    # [verify] accept_munis, set by the city's config bundle.
    more_aids: list[Annotated[str, Field(pattern=AID_PATTERN)]] = Field(
        default_factory=list, max_length=MAX_MORE_AIDS)

    @field_validator("aid")
    @classmethod
    def _not_national(cls, value: str | None) -> str | None:
        if value is not None and is_national(bytes.fromhex(value)):
            raise ValueError(_("a national (J-LIS, D392…) application may never be "
                               "selected"))
        return value

    @field_validator("more_aids")
    @classmethod
    def _none_national(cls, value: list[str]) -> list[str]:
        for aid in value:
            cls._not_national(aid)
        return value


class VerifySettings(Section):
    clock_skew_s: int = Field(300, ge=0, le=86400)
    # A signed bundle whose version is more than this past the one held is refused
    # (issue 22): 2^32 leaves room for versions numbered by Unix time in seconds.
    max_version_step: int = Field(2**32, ge=1, le=2**53)
    # Neighbouring towns whose residents' cards this terminal accepts (6-digit codes), as
    # the city's config bundle says (`accept_munis`); the terminal's own town always.
    # Their issuer keys come in the trust bundle, their denylists on their own topics.
    accept_munis: list[Annotated[str, Field(pattern=r"^[0-9]{6}$")]] = Field(
        default_factory=list, max_length=64)
    # Pinned root public key (uncompressed P-256 point, hex), set by `provision`.
    root_public_key: str = Field("", pattern=r"^(04[0-9A-Fa-f]{128})?$")

    @field_validator("root_public_key")
    @classmethod
    def _on_the_curve(cls, value: str) -> str:
        if value:
            from reader.card.cose import public_key_from_point

            try:
                public_key_from_point(bytes.fromhex(value))
            except ValueError:
                raise ValueError(_("not a point on the P-256 curve (a typo in the hex? "
                                   "copy the root key again, or give `provision` the key "
                                   "file)")) from None
        return value


_PSEUDO_FILESYSTEMS = (Path("/proc"), Path("/sys"), Path("/dev"), Path("/run/user"))


class PathSettings(Section):
    state_dir: Path = Path("/var/lib/sukumo-reader")
    # Profiles file (firmware_config/ap-profiles.toml installed); empty uses the built-ins.
    ap_profiles: Path | None = None

    @field_validator("state_dir")
    @classmethod
    def _a_directory_on_disk(cls, value: Path) -> Path:
        # The queue and the bundles must survive a power cut: a real directory on disk.
        resolved = value.resolve()
        if any(resolved.is_relative_to(p) for p in _PSEUDO_FILESYSTEMS):
            raise ValueError(_("{path} is on a kernel pseudo-filesystem: use a directory "
                               "on the SD card, e.g. /var/lib/sukumo-reader").format(
                                   path=resolved))
        if value.exists() and not value.is_dir():
            raise ValueError(_("exists but is not a directory: give the directory where "
                               "the queue and the bundles live, e.g. /var/lib/sukumo-reader"))
        return value

    @property
    def database(self) -> Path:
        return self.state_dir / "events.sqlite3"

    @property
    def bundle_dir(self) -> Path:
        return self.state_dir / "bundles"

    @property
    def status_file(self) -> Path:
        return self.state_dir / "status.json"

    @property
    def pseudonym_key(self) -> Path:
        # Next to the database, where EventQueue looks for it (reader/queue/pseudonym.py).
        return self.state_dir / "pseudonym.key"


class QueueSettings(Section):
    # Warn (log + status) when the database grows past this many MiB.
    warn_mb: int = Field(256, ge=1)
    # Refuse new events (error sound) past this many MiB: the SD card keeps headroom.
    budget_mb: int = Field(1024, ge=1)

    @field_validator("budget_mb")
    @classmethod
    def _above_warn(cls, value: int, info: ValidationInfo) -> int:
        return not_below(value, info, "queue", "warn_mb")


class SoundSettings(Section):
    enabled: bool = True
    volume: float = Field(0.8, ge=0.0, le=1.0)
    directory: Path | None = None  # default: the sounds/ shipped with the package
    # `alsa` (libasound via ctypes) or `simpleaudio`; see reader/sound/backends.py.
    backend: Literal["alsa", "simpleaudio"] = "alsa"
    # ALSA PCM name, e.g. "default" or "plughw:CARD=Device" (simpleaudio: default only).
    device: str = Field("default", min_length=1)


class MqttSettings(Section):
    # Empty: no broker, the terminal runs offline and queues.
    url: str = ""
    topic_prefix: str = "sukumo/v1"
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    # mqtt:// (no TLS) is accepted only for loopback or when this is true (development).
    allow_insecure: bool = False
    # Floors (issue 22): 0.001 s timeouts and 1e-9 s status intervals flooded the link.
    # The first resend waits ack_timeout_s; later ones adapt to the measured ack time.
    ack_timeout_s: float = Field(30.0, ge=1, le=3600)
    status_interval_s: float = Field(60.0, ge=1, le=86400)
    keepalive_s: int = Field(60, ge=5, le=3600)
    batch_max_events: int = Field(500, ge=1, le=500)
    batch_max_bytes: int = Field(256 * 1024, ge=1024, le=256 * 1024)
    # Packets both ways (issue 22, reader/sync/limits.py). The broker's Maximum Packet
    # Size when it does not announce one (MQTT 3.1.1; e.g. 131072 for AWS IoT Core); an
    # MQTT 5 broker's CONNACK announcement is used when smaller.
    broker_max_packet_bytes: int = Field(268_435_455, ge=2048, le=268_435_455)
    # Announced in the MQTT 5 CONNECT: the broker drops a message larger than this (a
    # retained bundle, an ack) instead of sending it into the daemon's memory. 16 MiB
    # holds a denylist of 1.5 million serials.
    max_incoming_packet_bytes: int = Field(16 * 1024 * 1024, ge=65536, le=268_435_455)
    reconnect_min_s: float = Field(1.0, ge=0.1, le=3600)
    reconnect_max_s: float = Field(120.0, ge=0.1, le=86400)

    @field_validator("reconnect_max_s")
    @classmethod
    def _above_min(cls, value: float, info: ValidationInfo) -> float:
        return not_below(value, info, "mqtt", "reconnect_min_s")


class LogSettings(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "text"] = "json"


class Settings(BaseSettings):
    """The validated settings of one terminal. Build with `load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_DELIMITER,
        extra="forbid",
        frozen=True,
    )

    terminal: TerminalSettings = TerminalSettings()
    reader: ReaderSettings = ReaderSettings()
    ap: ApProfile | None = None  # overrides the mode's AP profile when set
    verify: VerifySettings = VerifySettings()
    paths: PathSettings = PathSettings()
    queue: QueueSettings = QueueSettings()
    sound: SoundSettings = SoundSettings()
    mqtt: MqttSettings = MqttSettings()
    log: LogSettings = LogSettings()
    feedback: FeedbackSettings = FeedbackSettings()
    modes: ModesSettings = ModesSettings()

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


def check_mode_can_run(settings: Settings) -> None:
    """ConfigError when the terminal's mode cannot work with these settings. Separate from
    validation: `config show` and doctor still read such a file; `run` and a config bundle
    refuse it."""
    if settings.terminal.mode == Mode.COUPON and not settings.modes.coupon.kinds:
        raise ConfigError(_("setting modes.coupon.kinds is empty: a coupon terminal needs "
                            "at least one [[modes.coupon.kinds]] (code, rule, limit, "
                            "period)"))


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Read, merge and validate the settings once; raise ConfigError with a readable message.

    `path` None means the default file when it exists (a laptop without one runs on the
    defaults); a path given explicitly must exist.
    """
    candidate = DEFAULT_CONFIG_PATH if path is None else Path(path)
    chosen: Path | None = candidate
    if not candidate.exists():
        if path is not None:
            raise ConfigError(_("config file {path} does not exist").format(path=candidate))
        chosen = None
    else:
        check_toml(candidate)
    check_env_names(set(Settings.model_fields))
    token = _config_path.set(chosen)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, chosen)) from None
    except SettingsError as exc:  # e.g. an environment value that is not the JSON it must be
        raise ConfigError(describe_env_error(exc)) from None
    finally:
        _config_path.reset(token)

