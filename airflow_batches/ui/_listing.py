"""The live state of in-flight batches: one cached listing per connection, never a call per
batch.

The page needs each in-flight batch's request counts and status. The API lists a workspace's
batches newest first, up to 1,000 a page: :class:`ListingCache` reads as many pages as reach
back to the oldest batch asked about (at most ``max_pages``), keeps them ``ttl`` seconds per
connection, and hands the same answer to every page view meanwhile (one reader at a time per
connection; the others wait for its answer). A batch older than what was read is reported as
not listed; a connection that cannot be read (no key, the API down) is reported by its error,
and the page still shows what the operators recorded.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from airflow_batches.api import MessageBatch

__all__ = ["LIST_PAGE_SIZE", "Listed", "Lister", "Listing", "ListingCache", "hook_lister"]

LIST_PAGE_SIZE = 1000
"""The API's largest list page."""


@dataclass(frozen=True)
class Listed:
    """A connection's batches, newest first (a client's ``list``), and where a person can look
    at one (``{batch_id}`` in ``batch_page``: the Console, or the emulator's admin view)."""

    batches: Iterator[MessageBatch]
    batch_page: str | None = None


class Lister(Protocol):
    def __call__(self, conn_id: str) -> AbstractContextManager[Listed]: ...


@dataclass(frozen=True)
class Listing:
    """What one read of a connection's batches found."""

    batches: Mapping[str, MessageBatch] = field(default_factory=dict)
    read_at: float = 0.0
    reaches_back_to: datetime | None = None
    """The creation time of the oldest batch read; older ones were not listed."""
    complete: bool = False
    """Every batch of the workspace was read (the list ended)."""
    error: str | None = None
    batch_page: str | None = None

    def page_of(self, batch_id: str) -> str | None:
        """The address of one batch's page, if the connection says where they are."""
        return self.batch_page.replace("{batch_id}", batch_id) if self.batch_page else None


class ListingCache:
    """Per connection, the latest listing, read again once older than ``ttl`` seconds."""

    def __init__(
        self,
        lister: Lister,
        *,
        ttl: float = 30.0,
        max_pages: int = 5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lister = lister
        self.ttl = ttl
        self.max_pages = max_pages
        self.clock = clock
        self._found: dict[str, Listing] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self.reads = 0
        """Listings read so far (every page view after the first within ``ttl`` reads none)."""

    def get(self, conn_id: str, oldest: datetime | None = None) -> Listing:
        """The connection's batches, reaching back to ``oldest`` when the pages allow."""
        with self._guard:
            lock = self._locks.setdefault(conn_id, threading.Lock())
        with lock:
            found = self._found.get(conn_id)
            if found is not None and self._fits(found, oldest):
                return found
            found = self._read(conn_id, oldest)
            self._found[conn_id] = found
            return found

    def _fits(self, found: Listing, oldest: datetime | None) -> bool:
        if self.clock() - found.read_at > self.ttl:
            return False
        if found.error or found.complete or oldest is None or found.reaches_back_to is None:
            return True
        # A job older than what was read: read again only if more pages were allowed.
        return found.reaches_back_to <= oldest or len(found.batches) >= self._most

    @property
    def _most(self) -> int:
        return self.max_pages * LIST_PAGE_SIZE

    def _read(self, conn_id: str, oldest: datetime | None) -> Listing:
        self.reads += 1
        batches: dict[str, MessageBatch] = {}
        complete = True
        page = None
        try:
            with self.lister(conn_id) as listed:
                page = listed.batch_page
                for batch in listed.batches:
                    batches[batch.id] = batch
                    if len(batches) >= self._most or (
                        oldest is not None and batch.created_at < oldest
                    ):
                        complete = False
                        break
        except Exception as exc:  # whatever the connection does, the page still renders
            return Listing(read_at=self.clock(), error=_describe(conn_id, exc), batch_page=page)
        reach = min((b.created_at for b in batches.values()), default=None)
        return Listing(batches, self.clock(), reach, complete, batch_page=page)


def _describe(conn_id: str, exc: BaseException) -> str:
    """An error as the page shows it: its kind and message (the client never puts the key
    in either)."""
    return f"cannot list the batches of connection {conn_id!r}: {type(exc).__name__}: {exc}"


def hook_lister(timeout: float = 10.0) -> Lister:
    """List through the connection's hook, with no retry: the page must answer quickly."""
    from airflow_batches.hooks.batches import MessageBatchesHook
    from airflow_batches.operators._common import conf_get
    from airflow_batches.operators._links import batch_url

    @contextmanager
    def listed(conn_id: str) -> Iterator[Listed]:
        hook = MessageBatchesHook(conn_id=conn_id)
        config = hook.config
        page = batch_url(
            config.base_url,
            "{batch_id}",
            workspace_id=config.workspace_id,
            template=conf_get("console_batch_url"),
        )
        with hook.get_client(max_retries=0, timeout=timeout) as client:
            yield Listed(client.list(limit=LIST_PAGE_SIZE), page)

    return listed
