"""The registry of claimed batches and open create calls, shared by every job of a deployment.

The API gives a batch no metadata: after a create whose answer was lost, the only way to find
the batch it may have made is to list the workspace's batches and match creation time and
request count. With several jobs in one workspace that match is ambiguous. The registry tells
the jobs apart. It lives on the shared staging storage (``<staging>/_registry/<scope>/``), one
small object per fact, written once and never edited by two writers, so no locking is needed:

* ``intents/<day>/<token>.json``: a create call about to be sent (job, shard, request count,
  the server's time when it was sent, and when its failure was seen, if it was);
* ``claims/<day>/<batch_id>.json``: a batch that a job's shard owns (created, or adopted);
* ``orphans/<day>/<batch_id>.json``: a batch that may be an orphan (a lost create's batch that
  no one could adopt unambiguously), with what is needed to settle it later.

``<day>`` is the UTC date (``YYYY-MM-DD``) of the call's opening (carried in its token) or of
the batch's creation. Every question the registry answers is about a moment (was a batch
created then claimed, was a call open then), so it reads only the days around that moment:
a deployment's years of entries cost nothing on later runs. Entries written before the days
were introduced sit directly in the kind's folder and are still read.

A candidate batch is adopted only when exactly one unclaimed batch of the right size was
created within the shard's own create windows and no other job's create call of the same size
was open then. Otherwise a new batch is paid for, and the candidates are recorded as possible
orphans; :meth:`Registry.settle` cancels one once it is provably nobody's (see
docs/idempotency.md for what that proof assumes).
"""

from __future__ import annotations

import hashlib
import logging
import re
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict

from airflow_batches.api import BatchesError, Client, MessageBatch
from airflow_batches.api._models import check_id
from airflow_batches.jobs._store import JobStore, StoragePath, child, fresh

log = logging.getLogger(__name__)

MARGIN = timedelta(seconds=3)
"""Slack around a create window: the ``Date`` header's second, and the time a request takes
to reach the server."""
LONGEST_WINDOW = timedelta(hours=12)
"""The longest a create window may stay open (``_windows.call_timeout`` caps it): the days a
question about one moment reads follow from it."""
SKEW = timedelta(days=1)
"""Slack between the day in a name and the time it stands for: a token's day is taken before
the server's time may be known, on this machine's clock."""
ORPHAN_HORIZON = timedelta(days=2)
"""Possible orphans older than this are not settled: a batch expires 24 hours after it was
created, so there is nothing left to cancel."""

_TOKEN = re.compile(r"(\d{4})(\d{2})(\d{2})-[0-9a-f]{32}")


def new_token(opened: datetime) -> str:
    """A create call's token: the UTC day it was opened, then a random part."""
    return f"{opened.astimezone(UTC):%Y%m%d}-{uuid.uuid4().hex}"


def token_day(token: str) -> date | None:
    """The day a token was made, or None for a token of the older form (a bare uuid)."""
    match = _TOKEN.fullmatch(token)
    if match is None:
        return None
    try:
        return date(*(int(g) for g in match.groups()))
    except ValueError:
        return None


def _day(when: datetime) -> date:
    return when.astimezone(UTC).date() if when.tzinfo else when.date()


def days_between(start: datetime, end: datetime) -> list[date]:
    """Every UTC day from ``start``'s to ``end``'s, both included."""
    first, last = _day(start), _day(end)
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def scope_key(base_url: str, workspace_id: str | None) -> str:
    """The registry folder of one API and workspace (never derived from the API key)."""
    text = f"{base_url.rstrip('/')}|{workspace_id or ''}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Window(_Model):
    """One create call, on the server's clock."""

    token: str
    opened: datetime
    """The server's time just before the call was sent."""
    seen: datetime | None = None
    """The server's time when its failure was seen (None: the process died, or it worked)."""
    until: datetime
    """The latest a batch of this call can have been created (the call's timeout)."""
    rejected: bool = False
    """A 429: the call created nothing."""
    clocked: bool = True
    """False when no answer had told the server's time yet: the times are then our own
    clock's, to be moved by the offset learnt later (``on_server_clock``)."""

    def on_server_clock(self, offset: float) -> Window:
        if self.clocked:
            return self
        delta = timedelta(seconds=offset)
        return self.model_copy(
            update={
                "opened": self.opened + delta,
                "until": self.until + delta,
                "seen": self.seen + delta if self.seen else None,
                "clocked": True,
            }
        )

    def contains(self, when: datetime) -> bool:
        end = self.seen or self.until
        return self.opened - MARGIN <= when <= end + MARGIN


class Intent(_Model):
    job_id: str
    shard: int
    request_count: int
    window: Window
    batch_id: str | None = None
    """Set when the call's shard got its batch (this call's, or another's)."""
    answered: bool = False
    """The call itself got its answer: ``batch_id`` is the batch it made. A call whose shard
    got its batch otherwise (a later call, an adoption) may still have made an orphan."""


class Claim(_Model):
    batch_id: str
    job_id: str
    shard: int
    adopted: bool = False
    created_at: datetime | None = None
    """The batch's creation time: the day it is filed under (None: filed with no day)."""


class Orphan(_Model):
    batch_id: str
    created_at: datetime
    request_count: int
    noted_by: str
    """The job that could not adopt it."""
    settled: str | None = None
    """``claimed`` (it was someone's after all) or ``canceled``."""


class Registry:
    """The registry folder of one scope; see the module docstring."""

    def __init__(self, root: StoragePath) -> None:
        self.store = JobStore(root)

    def __repr__(self) -> str:
        return f"Registry({str(self.store.root)!r})"

    @classmethod
    def at(cls, staging_root: StoragePath, base_url: str, workspace_id: str | None) -> Registry:
        return cls(child(staging_root, "_registry", scope_key(base_url, workspace_id)))

    # -- writing ---------------------------------------------------------------------------

    def _where(self, kind: str, day: date | None, name: str) -> tuple[str, ...]:
        return (kind, f"{name}.json") if day is None else (kind, day.isoformat(), f"{name}.json")

    def _intent_at(self, token: str) -> tuple[str, ...]:
        return self._where("intents", token_day(token), token)

    # A batch id becomes a file name here: checked again where it does (one read from another
    # job's entry, or given by hand, did not come through the API's models).
    def _claim_at(self, batch_id: str, created_at: datetime | None) -> tuple[str, ...]:
        day = _day(created_at) if created_at else None
        return self._where("claims", day, check_id(batch_id))

    def _orphan_at(self, batch_id: str, created_at: datetime) -> tuple[str, ...]:
        return self._where("orphans", _day(created_at), check_id(batch_id))

    def open(self, intent: Intent) -> None:
        self.store.write_json(intent.model_dump(mode="json"), *self._intent_at(intent.window.token))

    def claim(
        self, claim: Claim, *, tokens: Iterable[str] = (), made_by: str | None = None
    ) -> None:
        """Record that a shard owns ``claim.batch_id``, then close the shard's create calls
        (``tokens``): its shard has its batch, whatever each of them made. ``made_by`` is the
        token of the call whose answer named the batch (None for an adoption)."""
        where = self._claim_at(claim.batch_id, claim.created_at)
        self.store.write_json(claim.model_dump(mode="json"), *where)
        for token in tokens:
            intent = self.intent(token)
            if intent is not None and intent.batch_id is None:
                intent.batch_id = claim.batch_id
                intent.answered = token == made_by
                self.open(intent)

    def note_orphans(self, batches: Iterable[MessageBatch], job_id: str) -> None:
        for batch in batches:
            where = self._orphan_at(batch.id, batch.created_at)
            if fresh(self.store.path(*where)).exists():
                continue
            orphan = Orphan(
                batch_id=batch.id,
                created_at=batch.created_at,
                request_count=batch.request_counts.total,
                noted_by=job_id,
            )
            self.store.write_json(orphan.model_dump(mode="json"), *where)

    # -- reading ---------------------------------------------------------------------------

    def _names(self, *folder: str) -> list[str]:
        try:
            return sorted(p.name for p in fresh(self.store.path(*folder)).iterdir())  # type: ignore[attr-defined]
        except (FileNotFoundError, NotADirectoryError):
            return []

    def _entries(self, kind: str, days: Iterable[date] | None = None) -> Iterator[Any]:
        """The entries of ``kind`` filed under ``days`` (None: every day) and under no day."""
        names = self._names(kind)
        if days is None:
            folders = [n for n in names if _is_day(n)]
        else:
            folders = [d.isoformat() for d in days]
        for folder in ["", *folders]:
            parts = (kind, folder) if folder else (kind,)
            for name in names if not folder else self._names(*parts):
                if not name.endswith(".json"):
                    continue
                try:
                    data = self.store.read_json(*parts, name)
                except (OSError, ValueError):
                    continue  # half-written by a writer that died: as if absent
                if data is not None:
                    yield data

    def intent(self, token: str) -> Intent | None:
        data = self.store.read_json(*self._intent_at(token))
        return None if data is None else Intent.model_validate(data)

    def intents(self, around: datetime | None = None) -> list[Intent]:
        """Every create call, or (``around``) those whose window may hold that moment."""
        days = None
        if around is not None:
            days = days_between(around - LONGEST_WINDOW - SKEW, around + SKEW)
        return [Intent.model_validate(d) for d in self._entries("intents", days)]

    def claimed(self, since: datetime | None = None, until: datetime | None = None) -> set[str]:
        """The claimed batches, or (``since``) those created from then to ``until`` (now)."""
        days = None
        if since is not None:
            days = days_between(since, until or datetime.now(UTC) + SKEW)
        return {Claim.model_validate(d).batch_id for d in self._entries("claims", days)}

    def is_claimed(self, batch_id: str, created_at: datetime) -> bool:
        for where in (self._claim_at(batch_id, created_at), self._claim_at(batch_id, None)):
            if fresh(self.store.path(*where)).exists():
                return True
        return False

    def orphans(self, since: datetime | None = None) -> list[Orphan]:
        """The possible orphans, or (``since``) those created since then."""
        days = None if since is None else days_between(since, datetime.now(UTC) + SKEW)
        found = (Orphan.model_validate(d) for d in self._entries("orphans", days))
        return list({o.batch_id: o for o in found}.values())  # filed under a day: the later

    # -- deciding --------------------------------------------------------------------------

    def rivals(self, job_id: str, shard: int, request_count: int, when: datetime) -> list[Intent]:
        """Other shards' create calls of this size that may have made a batch at ``when``."""
        out = []
        for intent in self.intents(around=when):
            if (intent.job_id, intent.shard) == (job_id, shard):
                continue
            if intent.request_count != request_count or intent.window.rejected:
                continue
            if intent.answered:
                continue  # it got its answer: the batch it made is claimed
            if intent.window.contains(when):
                out.append(intent)
        return out

    def settle(self, client: Client, now: datetime) -> list[str]:
        """Cancel the recorded possible orphans that are provably nobody's; returns them.

        An orphan is nobody's when no shard claims it and every create call that could have
        made it (a call of its size whose window holds its creation time) has ended with its
        shard owning another batch: the lost call that made it is then known, and its shard
        has moved on. This assumes this registry sees every job of the workspace.
        """
        canceled: list[str] = []
        orphans = [o for o in self.orphans(since=now - ORPHAN_HORIZON) if o.settled is None]
        for orphan in orphans:
            if orphan.created_at < now - ORPHAN_HORIZON:
                continue  # expired by now: nothing to cancel (an entry filed with no day)
            if self.is_claimed(orphan.batch_id, orphan.created_at):
                self._settle(orphan, "claimed")
                continue
            makers = [
                i
                for i in self.intents(around=orphan.created_at)
                if i.request_count == orphan.request_count
                and not i.window.rejected
                and i.window.contains(orphan.created_at)
            ]
            open_calls = [i for i in makers if i.batch_id is None and i.window.until + MARGIN > now]
            if not makers or open_calls or any(i.batch_id is None for i in makers):
                continue
            try:
                batch = client.retrieve(orphan.batch_id)
                if not batch.is_ended:
                    client.cancel(orphan.batch_id)
            except BatchesError as exc:
                log.warning("Could not cancel possible orphan %s: %s", orphan.batch_id, exc)
                continue
            self._settle(orphan, "canceled")
            canceled.append(orphan.batch_id)
        return canceled

    def _settle(self, orphan: Orphan, how: str) -> None:
        orphan.settled = how
        self.store.write_json(
            orphan.model_dump(mode="json"), *self._orphan_at(orphan.batch_id, orphan.created_at)
        )


def _is_day(name: str) -> bool:
    try:
        date.fromisoformat(name)
    except ValueError:
        return False
    return len(name) == 10
