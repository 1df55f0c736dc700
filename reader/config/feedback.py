"""[feedback]: how a verdict is also seen (docs/feedback.md), apart from settings.py so
that each reads in one sitting."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from reader.config.section import Section
from reader.system.i18n import _

SOCKET_PATH_MAX = 107  # bytes: sockaddr_un's sun_path, less its NUL


class FeedbackSettings(Section):
    """[feedback]: the status light and the kiosk screen (docs/feedback.md)."""

    # The status light: four LEDs on these GPIO pins (BCM numbers; wiring in docs/feedback.md).
    light: bool = False
    pin_ready: int = Field(17, ge=0, le=27)
    pin_accepted: int = Field(27, ge=0, le=27)
    pin_refused: int = Field(22, ge=0, le=27)
    pin_technician: int = Field(23, ge=0, le=27)
    light_hold_s: float = Field(2.0, ge=0.1, le=30)  # how long a verdict stays lit
    # The kiosk screen (`sukumo-reader kiosk`): verdicts and heartbeats go to it as
    # datagrams on this Unix socket, which the kiosk binds for its own user alone.
    screen: bool = False
    screen_feed: Path = Path("/run/sukumo-reader-kiosk/feed.sock")
    screen_http_port: int = Field(8765, ge=1024, le=65535)  # the page, on 127.0.0.1 only
    screen_hold_s: float = Field(5.0, ge=0.5, le=60)  # a verdict shown this long, then idle
    # The users whose browser may open the page (the display's login user); none: anyone.
    screen_viewers: tuple[str, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _old_udp_port(cls, data: Any) -> Any:
        # Earlier releases sent the feed as UDP to `screen_feed_port`, which any local
        # user could write to; a file that still sets it keeps loading (unused now).
        if isinstance(data, dict):
            data = {k: v for k, v in data.items() if k != "screen_feed_port"}
        return data

    @field_validator("screen_feed")
    @classmethod
    def _a_socket_path(cls, value: Path) -> Path:
        if not value.is_absolute():
            raise ValueError(_("give an absolute path, e.g. "
                               "/run/sukumo-reader-kiosk/feed.sock"))
        if len(os.fsencode(value)) > SOCKET_PATH_MAX:
            raise ValueError(_("a socket path is at most {n} bytes long: choose a shorter "
                               "directory").format(n=SOCKET_PATH_MAX))
        return value
