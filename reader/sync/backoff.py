"""Reconnect delays: exponential with jitter.

paho's own `reconnect_delay_set` doubles without jitter, so after a broker restart a whole
fleet would knock at the same instants. Each delay here is drawn uniformly from the upper
half of the exponential step ("equal jitter"): never shorter than half the step, so a
broker that is down is not hammered, yet terminals spread out after the first attempt.
"""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, min_s: float, max_s: float, rng: random.Random | None = None) -> None:
        if min_s <= 0 or max_s < min_s:
            raise ValueError("need 0 < min_s <= max_s")
        self.min_s = min_s
        self.max_s = max_s
        self._rng = rng or random.Random()
        self._attempt = 0

    def next_delay(self) -> float:
        """The wait before the next attempt; grows with each call until `reset()`."""
        step = min(self.max_s, self.min_s * (2 ** min(self._attempt, 32)))
        self._attempt += 1
        return self._rng.uniform(step / 2, step)

    def reset(self) -> None:
        """After a successful connection: the next failure starts from the minimum again."""
        self._attempt = 0

    @property
    def attempts(self) -> int:
        return self._attempt
