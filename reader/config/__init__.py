"""Settings: one TOML file, environment variables over it, validated once at start-up.

`load_settings` (settings.py) is the one way in; `bundle.apply_bundle_settings` lays a
config bundle's flat settings (mqtt-v1 §5) over them with the same models, and
`profiles.profile_for` gives the AP profile the terminal's mode reads cards with.
"""

from reader.card.profiles import MEMBER_AID, NURSERY_AID
from reader.config.mode_settings import (
    CheckinSettings,
    CouponKind,
    CouponSettings,
    EventSettings,
    EventWindow,
    NurserySettings,
)
from reader.config.settings import (
    DEFAULT_CONFIG_PATH,
    ENV_DELIMITER,
    ENV_PREFIX,
    ApProfile,
    FeedbackSettings,
    LogSettings,
    ModesSettings,
    MqttSettings,
    PathSettings,
    QueueSettings,
    ReaderSettings,
    Settings,
    SoundSettings,
    TerminalSettings,
    VerifySettings,
    load_settings,
)
from reader.wire.event import Mode

__all__ = [
    "DEFAULT_CONFIG_PATH", "ENV_DELIMITER", "ENV_PREFIX", "MEMBER_AID", "NURSERY_AID",
    "ApProfile", "CheckinSettings", "CouponKind", "CouponSettings", "EventSettings",
    "EventWindow", "FeedbackSettings", "LogSettings", "Mode", "ModesSettings", "MqttSettings",
    "NurserySettings",
    "PathSettings", "QueueSettings", "ReaderSettings", "Settings", "SoundSettings",
    "TerminalSettings", "VerifySettings", "load_settings",
]
