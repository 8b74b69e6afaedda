"""Exponential back-off with jitter, so a worker facing a dead database waits
longer and longer between attempts instead of spinning or crash-looping."""

from __future__ import annotations

import random
import time


class Backoff:
    def __init__(self, first_s: float = 1.0, cap_s: float = 30.0) -> None:
        self.first_s = first_s
        self.cap_s = cap_s
        self.failures = 0
        self.until = 0.0

    def ready(self) -> bool:
        """Whether the next attempt is due."""
        return time.monotonic() >= self.until

    def failed(self) -> float:
        """Record a failure; returns the seconds until the next attempt."""
        self.failures += 1
        delay = min(self.cap_s, self.first_s * 2 ** (self.failures - 1))
        # Jitter spreads the retries of many workers after a shared outage.
        delay *= random.uniform(0.5, 1.0)
        self.until = time.monotonic() + delay
        return delay

    def succeeded(self) -> None:
        self.failures = 0
        self.until = 0.0
