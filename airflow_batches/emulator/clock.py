"""Emulated time: a start, real time elapsed times a scale, plus manual advances."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime


class Clock:
    """Seconds since the epoch, as the emulator sees them.

    ``now = base + (monotonic() - mark) * scale``. Changing the scale re-bases first, so time
    never jumps backwards; ``advance`` only moves forward. Thread-safe: responders read it from
    worker threads.
    """

    def __init__(
        self,
        start: float | None = None,
        *,
        scale: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._base = time.time() if start is None else start
        self._mark = monotonic()
        self._scale = scale

    @property
    def scale(self) -> float:
        return self._scale

    def now(self) -> float:
        with self._lock:
            return self._base + (self._monotonic() - self._mark) * self._scale

    def now_datetime(self) -> datetime:
        return datetime.fromtimestamp(self.now(), UTC)

    def set_scale(self, scale: float) -> None:
        if scale <= 0:
            raise ValueError("time scale must be > 0")
        with self._lock:
            mark = self._monotonic()
            self._base += (mark - self._mark) * self._scale
            self._mark = mark
            self._scale = scale

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._base += seconds
        return self.now()


def to_datetime(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)
