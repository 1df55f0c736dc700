"""The status light: four GPIO LEDs through gpiozero (Raspberry Pi OS ships it).

    ready       on while the terminal waits for taps and its reader answers
    accepted    on for `hold_s` after an accepted tap (a duplicate too: it was counted)
    refused     on for `hold_s` after a refused card; three quick flashes for "tap again"
    technician  on while the terminal needs a technician (reader missing, a tap that could
                not be stored, an alarm)

gpiozero's `blink(background=True)` runs the timing in its own thread, so `show` returns
at once: the light never delays a tap, and a broken pin only logs.
"""

from __future__ import annotations

import logging
from typing import Any

from reader.config import FeedbackSettings
from reader.feedback.verdict import Look, Verdict
from reader.system.logs import fields

log = logging.getLogger(__name__)


class StatusLight:
    def __init__(self, settings: FeedbackSettings, pin_factory: Any = None) -> None:
        from gpiozero import LED  # only a terminal with a light pays for the import

        kw = {"pin_factory": pin_factory} if pin_factory is not None else {}
        self.hold_s = settings.light_hold_s
        self.ready = LED(settings.pin_ready, **kw)
        self.accepted = LED(settings.pin_accepted, **kw)
        self.refused = LED(settings.pin_refused, **kw)
        self.technician = LED(settings.pin_technician, **kw)
        self._leds = (self.ready, self.accepted, self.refused, self.technician)

    def show(self, verdict: Verdict) -> None:
        try:
            self.accepted.off()
            self.refused.off()
            if verdict.look is Look.ACCEPTED:
                self.accepted.blink(on_time=self.hold_s, off_time=0, n=1, background=True)
            elif verdict.look is Look.RETRY:
                self.refused.blink(on_time=0.15, off_time=0.15, n=3, background=True)
            elif verdict.look is Look.REFUSED:
                self.refused.blink(on_time=self.hold_s, off_time=0, n=1, background=True)
            else:
                self.technician.on()
        except Exception as exc:  # a pin fault must never reach the tap loop
            log.warning("status light failed", **fields(why=repr(exc)))

    def state(self, *, ready: bool, needs_technician: bool) -> None:
        try:
            self.ready.value = ready
            self.technician.value = needs_technician
        except Exception as exc:
            log.warning("status light failed", **fields(why=repr(exc)))

    def close(self) -> None:
        for led in self._leds:
            led.close()
