"""One status poller per event loop and connection, shared by every trigger that waits there.

Without it each trigger retrieves each of its batches at each poll: a thousand triggers make
a thousand calls a round, each parsed on the triggerer's only event loop. The shared poller
reads the list endpoint instead (newest first, up to 1,000 batches a page) and answers every
waiting trigger from the same pages.

How a poll is answered
    A trigger's poll names its batches and how old an answer it accepts (``max_age``, half its
    poke interval for :class:`~airflow_batches.triggers.batch.BatchTrigger`). A batch read
    within ``max_age`` is answered at once, from memory; so triggers with different intervals
    share the same readings, each as fresh as it asked for. The other polls wait for the next
    *round*: list pages, newest first, until every batch asked for has been seen, then one
    retrieve for each batch the pages did not reach (older than ``max_pages`` pages cover, or
    not on the list at all). A round starts as soon as a poll waits and none is running;
    polls made during a round are answered by it if it read their batches fresh enough,
    otherwise by the next one.

What stays with each trigger
    Everything :class:`~airflow_batches.jobs.wait._core.WaitCore` holds: the deadline, the
    backoff, the count of transient errors, the 404 grace, cancelling. The poller only answers,
    batch by batch, with a MessageBatch or the error that stands for it. A failed list call is
    the answer for every batch that round did not read, so each waiting trigger counts one
    transient error, as if its own retrieve had failed. A list call refused for good (a key
    or a proxy that does not allow it) turns the poller to retrieves only.

Lifetime
    Pollers are kept per running event loop (weakly: a loop's pollers go with it, and two
    loops never share one) and per connection id. The first subscriber makes the client; the
    last one to leave, by ending or by being cancelled, closes it and drops the poller.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from msgspec import Raw

from airflow_batches.api import (
    APIStatusError,
    AsyncClient,
    BatchesError,
    MessageBatch,
    ResponseValidationError,
)
from airflow_batches.api._listing import ListedBatch
from airflow_batches.api._retry import RETRYABLE_STATUSES
from airflow_batches.jobs.wait._core import Answer, AsyncPoll
from airflow_batches.jobs.wait._heap import freeze_startup_heap
from airflow_batches.jobs.wait._room import WaitRoom

log = logging.getLogger(__name__)

PAGE_SIZE = 1000
"""Batches per list page: the API's maximum."""
MAX_PAGES = 10
"""List pages a round reads at most; older batches are retrieved one by one."""
LIST_FROM = 2
"""Pages are read when at least this many batches are subscribed, and a further page only for
at least this many still unread: for fewer, a retrieve is the cheaper read. The first page
refreshes every subscribed batch it holds, so the triggers that poll next read from memory."""
SMALL_PAGE = 20
"""The smallest page asked for (the API's default); pages grow to twice what is subscribed."""
RETRIEVE_CONCURRENCY = 8
"""Retrieves in flight at once within a round."""

ClientFactory = Callable[[], Awaitable[AsyncClient]]


class _Reading:
    """What was last read of one batch: ``at`` when the call was sent (the poller's clock), in
    which ``round`` (of two readings, the later round's stands), the ``answer``, and the JSON
    a list page gave for it (``raw``; None if a retrieve read it).

    Updated in place, and an unchanged batch keeps its object: with thousands of batches
    re-read every round, fresh objects outliving a round would fill the garbage collector's
    old generation and lengthen its full passes. A listed batch whose JSON is the same as last
    time is not parsed again (``api._listing``).
    """

    __slots__ = ("answer", "at", "raw", "round")

    def __init__(self, at: float, round: int, answer: Answer, raw: Raw | None = None) -> None:
        self.at, self.round, self.answer, self.raw = at, round, answer, raw


@dataclass
class PollerStats:
    """Calls a poller made; for the log, tests and the bench."""

    rounds: int = 0
    pages: int = 0
    retrieves: int = 0
    list_failures: int = 0


class SharedPoller:
    """The shared status reader; see the module docstring. Use it through :meth:`subscribe`.

    :param make_client: builds the client, once, when the first subscriber arrives.
    :param page_size: batches per list page at most.
    :param max_pages: list pages a round reads at most.
    :param concurrency: retrieves in flight at once.
    :param clock: monotonic seconds; freshness is measured with it.
    :param on_close: called when the last subscriber has left.
    """

    def __init__(
        self,
        make_client: ClientFactory,
        *,
        page_size: int = PAGE_SIZE,
        max_pages: int = MAX_PAGES,
        concurrency: int = RETRIEVE_CONCURRENCY,
        clock: Callable[[], float] = time.monotonic,
        on_close: Callable[[SharedPoller], None] | None = None,
    ) -> None:
        if page_size < 1 or max_pages < 0 or concurrency < 1:
            raise ValueError("page_size and concurrency must be >= 1, max_pages >= 0")
        self.make_client = make_client
        self.page_size, self.max_pages, self.concurrency = page_size, max_pages, concurrency
        self.clock = clock
        self.on_close = on_close
        self.stats = PollerStats()
        self._client: AsyncClient | None = None
        self._opening: asyncio.Future[AsyncClient] | None = None
        self._subscriptions = 0
        self._subscribers: dict[str, int] = {}
        """Batch id -> how many subscriptions name it."""
        self._known: dict[str, _Reading] = {}
        self._failure: _Reading | None = None
        """The last failed list call: the answer for every batch that round did not read."""
        self._created: dict[str, datetime] = {}
        self._unlisted: set[str] = set()
        """Batches of unknown age that pages read to the end, or to the cap, did not show."""
        self._reach: datetime | None = None
        """Creation time of the oldest batch the last capped paging reached (None: no cap)."""
        self._list_refused = False
        self._waiting = WaitRoom()
        self._task: asyncio.Task[None] | None = None

    @property
    def client(self) -> AsyncClient:
        """The shared client (for a subscriber's own calls, such as cancels)."""
        if self._client is None:
            raise RuntimeError("the poller has no client: subscribe first")
        return self._client

    @property
    def subscribed(self) -> frozenset[str]:
        return frozenset(self._subscribers)

    @contextlib.asynccontextmanager
    async def subscribe(
        self, batch_ids: Sequence[str], *, max_age: float
    ) -> AsyncIterator[AsyncPoll]:
        """Register ``batch_ids`` and give a poll answering them at most ``max_age`` s old."""
        ids = list(dict.fromkeys(batch_ids))
        self._subscriptions += 1
        for i in ids:
            self._subscribers[i] = self._subscribers.get(i, 0) + 1
        try:
            await self._open()

            async def poll(wanted: Sequence[str]) -> dict[str, Answer]:
                return await self._poll(wanted, max_age)

            yield poll
        finally:
            self._subscriptions -= 1
            for i in ids:
                self._subscribers[i] -= 1
                if not self._subscribers[i]:
                    self._forget(i)
            if not self._subscriptions:
                await self._close()

    async def _open(self) -> None:
        # One client for all; subscribers arriving together all wake when it is ready.
        if self._opening is None:
            self._opening = asyncio.ensure_future(self.make_client())
        opening = self._opening
        try:
            self._client = await asyncio.shield(opening)
        except Exception:
            if self._opening is opening:
                self._opening = None  # the next subscriber tries again
            raise

    def _forget(self, batch_id: str) -> None:
        del self._subscribers[batch_id]
        self._known.pop(batch_id, None)
        self._created.pop(batch_id, None)
        self._unlisted.discard(batch_id)

    async def _close(self) -> None:
        if self.on_close is not None:
            self.on_close(self)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        opening, self._opening, self._client = self._opening, None, None
        if opening is not None:
            opening.cancel()  # nothing if it is done
            (client,) = await asyncio.gather(opening, return_exceptions=True)
            if isinstance(client, AsyncClient):
                await client.aclose()

    # -- answering --------------------------------------------------------------------------

    def _reading(self, batch_id: str) -> _Reading | None:
        known, failure = self._known.get(batch_id), self._failure
        if failure is not None and (known is None or failure.round > known.round):
            return failure
        return known

    def _stale(self, ids: Iterable[str], since: float) -> list[str]:
        return [i for i in ids if (r := self._reading(i)) is None or r.at < since]

    async def _poll(self, ids: Sequence[str], max_age: float) -> dict[str, Answer]:
        since = self.clock() - max_age
        stale = self._stale(ids, since)
        if stale:
            waiter = self._waiting.enter(stale, since)
            if self._task is None or self._task.done():
                self._task = asyncio.get_running_loop().create_task(self._serve())
            await self._waiting.wait(waiter)
        answers: dict[str, Answer] = {}
        for i in ids:
            reading = self._reading(i)
            assert reading is not None  # every id of a settled waiter has been read
            answers[i] = reading.answer
        return answers

    # -- reading ----------------------------------------------------------------------------

    async def _serve(self) -> None:
        try:
            while self._waiting:
                await self._round()
        except Exception as exc:  # a bug or a broken client: fail the waits, never hang them
            self._waiting.fail(exc)

    async def _round(self) -> None:
        if self.stats.rounds == 1 and freeze_startup_heap("triggers"):
            # A second round: the triggers started with the first have read an answer and
            # logged it, and wait for the next; what they hold now, they hold until they end.
            log.info("Start-up heap frozen out of the garbage collector's full passes")
        self.stats.rounds += 1
        number, started = self.stats.rounds, self.clock()
        wanted = self._waiting.wanted()
        if not self._list_refused and not await self._read_pages(wanted, number, started):
            return
        unread = [i for i in wanted if (r := self._known.get(i)) is None or r.round != number]
        await self._retrieve(unread, number)

    def _note(
        self, batch_id: str, at: float, number: int, answer: Answer, raw: Raw | None = None
    ) -> None:
        if batch_id not in self._subscribers:
            return
        known = self._known.get(batch_id)
        if known is None:
            self._known[batch_id] = _Reading(at, number, answer, raw)
        else:
            known.at, known.round, known.raw = at, number, raw
            if answer != known.answer:
                known.answer = answer
        if isinstance(answer, MessageBatch):
            self._created[batch_id] = answer.created_at
            self._unlisted.discard(batch_id)
        self._waiting.heard(batch_id, at)

    def _note_listed(self, listed: ListedBatch, at: float, number: int) -> None:
        """A batch as a list page showed it: parsed only if it changed since the last page."""
        if listed.id not in self._subscribers:
            return
        known = self._known.get(listed.id)
        if known is not None and known.raw is not None and known.raw == listed.raw:
            known.at, known.round = at, number
            self._waiting.heard(listed.id, at)
            return
        answer: Answer
        try:
            answer = listed.parse()
        except ResponseValidationError as exc:
            answer = exc
        raw = listed.raw.copy() if isinstance(answer, MessageBatch) else None
        self._note(listed.id, at, number, answer, raw)

    def _listable(self, batch_id: str) -> bool:
        """Whether the pages may show it: not known to be older than they reach, nor absent."""
        created = self._created.get(batch_id)
        if created is None:
            return batch_id not in self._unlisted
        return self._reach is None or created >= self._reach

    async def _read_pages(self, wanted: Sequence[str], number: int, started: float) -> bool:
        """Read list pages for ``wanted``; False if a call failed and may work next time.

        The failure then stands for every batch this round has not read.
        """
        missing = {i for i in wanted if self._listable(i)}
        if not missing or len(self._subscribers) < LIST_FROM:
            return True  # one batch in all: a retrieve is the cheaper read
        # A page sized to what is subscribed: a few triggers do not download 1,000 batches.
        limit = min(self.page_size, max(SMALL_PAGE, 2 * len(self._subscribers)))
        cursor: str | None = None
        oldest: datetime | None = None
        for page_number in range(self.max_pages):
            if page_number and len(missing) < LIST_FROM:
                return True  # one left: retrieve it rather than read a page that may lack it
            at = self.clock()
            try:
                page = await self.client.list_page_listed(limit=limit, after_id=cursor)
            except BatchesError as exc:
                if not _refused(exc):
                    self.stats.list_failures += 1
                    self._failure = _Reading(started, number, exc)
                    self._waiting.heard_all(started)
                    return False
                if cursor is None:
                    self._list_refused = True
                    log.warning("Listing batches was refused (%s): polling by retrieve only", exc)
                return True  # a later page refused (its cursor deleted?): retrieve the rest
            self.stats.pages += 1
            for listed in page.data:
                self._note_listed(listed, at, number)
                missing.discard(listed.id)
            if not page.has_more or not page.data or page.last_id is None:
                self._reach = None  # the whole list was read: what it lacked is not on it
                self._unlisted.update(i for i in missing if i not in self._created)
                return True
            oldest = page.data[-1].created_at
            if all(i in self._created and self._created[i] > oldest for i in missing):
                return True  # paged past all of them: off the list (deleted?); retrieve them
            cursor = page.last_id
        if missing and oldest is not None:
            self._reach = oldest
            self._unlisted.update(i for i in missing if i not in self._created)
        return True

    async def _retrieve(self, ids: Sequence[str], number: int) -> None:
        gate = asyncio.Semaphore(self.concurrency)

        async def one(batch_id: str) -> None:
            async with gate:
                at = self.clock()
                answer: Answer
                try:
                    answer = await self.client.retrieve(batch_id)
                except BatchesError as exc:
                    answer = exc
                self.stats.retrieves += 1
                self._note(batch_id, at, number, answer)

        await asyncio.gather(*(one(i) for i in ids))


def _refused(exc: BatchesError) -> bool:
    """A list call that will not work by trying again (retrieves may still)."""
    return isinstance(exc, APIStatusError) and exc.status_code not in RETRYABLE_STATUSES


_POLLERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, SharedPoller]] = (
    weakref.WeakKeyDictionary()
)


def shared_poller(key: str, make_client: ClientFactory, **options: Any) -> SharedPoller:
    """The running loop's poller for ``key`` (a connection id), made on first use.

    ``make_client`` and ``options`` (``SharedPoller`` fields) are used only when the poller is
    made; a poller whose last subscriber left is dropped, and the next call makes a new one.
    """
    pollers = _POLLERS.setdefault(asyncio.get_running_loop(), {})
    poller = pollers.get(key)
    if poller is None:

        def drop(closing: SharedPoller) -> None:
            if pollers.get(key) is closing:
                del pollers[key]
            s = closing.stats
            what = f"{s.rounds} rounds, {s.pages} list pages, {s.retrieves} retrieves"
            log.info("Shared status poller for %r closed: %s", key, what)

        poller = pollers[key] = SharedPoller(make_client, on_close=drop, **options)
        log.info("Shared status poller for %r started in this event loop", key)
        freeze_startup_heap("start")  # Airflow's and our imports, before the first client
    return poller
