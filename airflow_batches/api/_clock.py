"""The server's clock, as its answers tell it (the ``Date`` header, to the second).

Batches carry the server's times (``created_at``); a client that must say "created after I
sent this, before I saw that fail" needs those moments on the same clock. Every answer's
``Date`` updates the estimate of the offset between the server's clock and ours.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

RESOLUTION = 1.0
"""``Date`` is given to the second: the server's true time lies in ``[date, date + 1)``."""


class ServerClock:
    """An estimate of the server's time; None until an answer carried a ``Date``."""

    __slots__ = ("_local", "_offset")

    def __init__(self, local: Callable[[], float] = time.time) -> None:
        self._local = local
        self._offset: float | None = None

    def observe(self, date_header: str | None) -> None:
        if not date_header:
            return
        try:
            when = parsedate_to_datetime(date_header)
        except (TypeError, ValueError):
            return
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        self._offset = when.timestamp() + RESOLUTION / 2 - self._local()

    @property
    def known(self) -> bool:
        return self._offset is not None

    @property
    def offset(self) -> float:
        """Seconds to add to our clock to read the server's (0 until known)."""
        return self._offset or 0.0

    def now(self) -> datetime:
        """The server's time now (our own clock until an answer said otherwise)."""
        return datetime.fromtimestamp(self._local() + (self._offset or 0.0), UTC)
