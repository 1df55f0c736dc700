"""What people see: the citizen's verdict (verdict.py), the status light (light.py, GPIO
LEDs through gpiozero) and the feed of the kiosk screen (screen.py). The verdict carries
its meaning only; the kiosk process puts it into words in its own language (words.py,
which the daemon never imports).

`Feedback` is what the daemon holds: one `show(verdict)` after each commit, one
`state(...)` with each status write (the screen's heartbeat carries it, docs/feedback.md).
Both return at once and never raise: like the sound, nothing here can delay or lose a tap.
"""

from __future__ import annotations

import logging
from typing import Any

from reader.config import FeedbackSettings
from reader.feedback.light import StatusLight
from reader.feedback.screen import ScreenFeed
from reader.feedback.verdict import Look, Verdict, unrecorded, verdict_of
from reader.system.logs import fields

log = logging.getLogger(__name__)

__all__ = ["Feedback", "Look", "Verdict", "unrecorded", "verdict_of"]


class Feedback:
    def __init__(self, light: StatusLight | None = None, screen: ScreenFeed | None = None
                 ) -> None:
        self.light, self.screen = light, screen
        self.last: Verdict | None = None

    @classmethod
    def from_settings(cls, settings: FeedbackSettings, pin_factory: Any = None) -> Feedback:
        light = None
        if settings.light:
            try:
                light = StatusLight(settings, pin_factory)
            except Exception as exc:  # no GPIO here (a laptop), a pin in use: no light
                log.error("status light unavailable", **fields(why=repr(exc)))
        screen = ScreenFeed(settings.screen_feed) if settings.screen else None
        return cls(light, screen)

    def show(self, verdict: Verdict) -> None:
        self.last = verdict
        for part in (self.light, self.screen):
            if part is not None:
                part.show(verdict)

    def state(self, *, ready: bool, needs_technician: bool, running: bool = True) -> None:
        """`ready`: running with its reader; `running` False once the daemon stops."""
        if self.light is not None:
            self.light.state(ready=ready, needs_technician=needs_technician)
        if self.screen is not None:
            self.screen.state(running=running, reader_ok=ready)

    def close(self) -> None:
        for part in (self.light, self.screen):
            if part is not None:
                part.close()
