"""Whose results a destination holds: the run that claimed it, checked before anything is paid.

A fetch with a destination claims it when it starts, before it resends anything, by writing
``owner.json`` there (the dag, run and task ids, the job id, when); the manifest it publishes
names the same run, and the claim is removed once the manifest is in place. A destination is
the run's own for good: a task retry, a resumed fetch or a cleared run (same dag and run ids)
finds it and goes on, whatever its job. Any other run is refused, naming the run that holds it
and the path, before it pays: the submit task checks the destinations of the fetches
downstream of it before validating anything, the fetch checks again when it starts, and the
publish once more. Ownership is by run (and task), not by job: two runs with the same input
make the same job (the same fingerprint and job id), and would otherwise take each other's
folders.

A claim whose run is known to be over (failed, or succeeded without publishing) no longer
holds the destination. A manifest written before runs were recorded is judged by its job (see
:func:`check_destination`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from airflow_batches.api import BatchesError
from airflow_batches.jobs._store import JobStore, StoragePath, child, fresh
from airflow_batches.jobs.results._manifest import MANIFEST_FILE, RunRef

OWNER_FILE = "owner.json"
"""The claim a fetch writes at its destination when it starts."""


class DestinationHeldError(BatchesError):
    """The destination holds, or was claimed for, another run's results; nothing was sent.

    No retry fixes it: choose a destination of the run's own (``.../{{ run_id }}``), or pass
    ``overwrite=True`` to the fetch.
    """

    def __init__(self, message: str, *, destination: str = "", holder: str = "") -> None:
        super().__init__(message)
        self.destination = destination
        self.holder = holder

    def _state(self) -> dict[str, Any]:
        return {"message": self.message, "destination": self.destination, "holder": self.holder}


IsRunning = Callable[[RunRef], bool | None]
"""Whether a run is still going (queued or running); None when it cannot be told."""

LegacyCheck = Callable[[Any], bool]
"""Whether a manifest that names no run is this job's own (the rule before runs were kept)."""

_REMEDY = (
    "Give each run a destination of its own (for example destination="
    '"s3://bucket/results/{{ run_id }}"), or pass overwrite=True to the fetch to replace it'
)


def _run_of(data: Any) -> RunRef | None:
    if not isinstance(data, dict) or not isinstance(data.get("run"), dict):
        return None
    try:
        return RunRef.model_validate(data["run"])
    except ValidationError:
        return None


def _this(run: RunRef | None) -> str:
    return f"this run ({run})" if run is not None else "this job"


def _other(holder: RunRef, run: RunRef) -> str:
    return "another task of this run" if holder.same_run(run) else "another run"


def check_destination(
    destination: StoragePath,
    run: RunRef | None,
    *,
    names: Iterable[str] = (),
    is_running: IsRunning | None = None,
    legacy: LegacyCheck | None = None,
    outcome: str = "nothing was published",
    log: Any = None,
) -> None:
    """Raise :class:`DestinationHeldError` unless ``destination`` is free or ``run``'s own.

    ``run`` None (a fetch outside Airflow) judges every manifest by ``legacy``.

    :param names: the result files the fetch would write; one found there with neither a
        claim nor a manifest is someone else's.
    :param is_running: tells whether the run of a claim without results is still going; a
        claim of a run known to be over is stale and does not hold the destination.
    :param legacy: judges a manifest that names no run (written before runs were kept);
        None (the submit, which does not know the job yet) lets it pass to the fetch.
    :param outcome: what the refusal spared, for the message ("nothing was submitted").
    """
    store = JobStore(destination)
    manifest = store.read_json(MANIFEST_FILE)
    where = str(destination)
    if run is not None:
        claim = store.read_json(OWNER_FILE)
        ours = _check_run(destination, run, manifest, claim, outcome, is_running, log)
        if ours:
            return  # this run's own: a retry, a resumed fetch or a cleared run
    if manifest is not None:
        if legacy is None or legacy(manifest):
            return
        job = manifest.get("job_id", "?") if isinstance(manifest, dict) else "?"
        raise DestinationHeldError(
            f"destination {where} holds the results of another job ({job}; its manifest "
            f"names no run); refused for {_this(run)}: {outcome}. {_REMEDY}.",
            destination=where,
        )
    for name in names:
        if fresh(child(destination, name)).exists():
            raise DestinationHeldError(
                f"{child(destination, name)} exists and was not written by {_this(run)}: "
                f"{outcome}. {_REMEDY}.",
                destination=where,
            )


def _check_run(
    destination: StoragePath,
    run: RunRef,
    manifest: Any,
    claim: Any,
    outcome: str,
    is_running: IsRunning | None,
    log: Any,
) -> bool:
    """Raise if a run other than ``run`` holds the destination; True if ``run`` does."""
    where = str(destination)
    published = _run_of(manifest)
    if published is not None and not published.same_task(run):
        job = manifest.get("job_id", "?")
        fetched = (manifest.get("timings") or {}).get("fetched_at", "?")
        raise DestinationHeldError(
            f"destination {where} holds the results of {_other(published, run)} "
            f"({published}; job {job}, published at {fetched}); refused for this run "
            f"({run}): {outcome}. {_REMEDY}.",
            destination=where,
            holder=str(published),
        )
    claimed = _run_of(claim)
    if claimed is not None and not claimed.same_task(run):
        if is_running is not None and is_running(claimed) is False:
            if log is not None:
                log.warning(
                    "%s was claimed by run %s, which is over without having published there: "
                    "taking it over",
                    where,
                    claimed,
                )
            return True
        raise DestinationHeldError(
            f"destination {where} is claimed by {_other(claimed, run)} ({claimed}), whose "
            f"fetch started at {claim.get('claimed_at', '?')} and has not published there; "
            f"refused for this run ({run}): {outcome}. {_REMEDY}; if that run is dead, "
            f"delete {child(destination, OWNER_FILE)}.",
            destination=where,
            holder=str(claimed),
        )
    return published is not None or claimed is not None


def claim_destination(destination: StoragePath, run: RunRef, job_id: str) -> None:
    """Write this run's claim at ``destination`` (removed once its manifest names the run)."""
    JobStore(destination).write_json(
        {
            "run": run.model_dump(mode="json"),
            "job_id": job_id,
            "claimed_at": datetime.now(UTC).isoformat(),
        },
        OWNER_FILE,
    )


def release_destination(destination: StoragePath) -> None:
    """Remove the claim once the manifest, which names the same run, is published."""
    fresh(child(destination, OWNER_FILE)).unlink(missing_ok=True)
