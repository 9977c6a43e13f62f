"""Which faults to inject, and the rate limit: the seeded state the emulator holds.

``FaultInjector`` draws at most one fault per call from an endpoint's rates (seeded, so a run
with the same calls injects the same faults); ``RateLimiter`` counts calls per API key. The
``Emulator`` (service) owns one of each; ``fault_middleware`` acts on their answers.
"""

from __future__ import annotations

import random
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Literal

from airflow_batches.emulator.config import Endpoint, FaultRates

Fault = Literal["429", "500", "529", "drop", "drop_after", "slow", "cut"]


class FaultInjector:
    """Seeded draws, so a run with the same calls injects the same faults."""

    def __init__(self, seed: int) -> None:
        self.reset(seed)

    def reset(self, seed: int) -> None:
        self._rng = random.Random(seed)
        self._injected: dict[str, Counter[str]] = {}

    def injected(self, endpoint: str) -> dict[str, int]:
        return dict(self._injected.get(endpoint, Counter()))

    def decide(self, endpoint: Endpoint, rates: FaultRates | None) -> Fault | None:
        if rates is None:
            return None
        counts = self._injected.setdefault(endpoint, Counter())
        if rates.max_count is not None and sum(counts.values()) >= rates.max_count:
            return None
        draw = self._rng.random()
        table: list[tuple[Fault, float]] = [
            ("429", rates.rate_429),
            ("500", rates.rate_500),
            ("529", rates.rate_529),
            ("drop", rates.rate_drop),
            ("drop_after", rates.rate_drop_after),
            ("slow", rates.rate_slow),
            ("cut", rates.rate_cut),
        ]
        edge = 0.0
        for fault, rate in table:
            edge += rate
            if rate and draw < edge:
                counts[fault] += 1
                return fault
        return None


class RateLimiter:
    """Requests per minute per API key, over a sliding window of real time."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._seen: dict[str, deque[float]] = {}

    def take(self, key: str, per_minute: int) -> float | None:
        """None if the call may go ahead; else the seconds until it could."""
        now = self._clock()
        window = self._seen.setdefault(key, deque())
        while window and window[0] <= now - 60.0:
            window.popleft()
        if len(window) >= per_minute:
            return max(1.0, 60.0 - (now - window[0]))
        window.append(now)
        return None

    def reset(self) -> None:
        self._seen.clear()
