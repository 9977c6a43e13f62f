"""What each operator tells a lineage catalog, as plain data (no OpenLineage import).

A task's lineage is the storage it read and wrote, named as OpenLineage names datasets (a
namespace for the storage, a name within it), and one run facet of figures about the job:
its models, request counts, token usage, cost, batch ids and anthropic-version. The figures
come from what the task already returns (the job descriptor, the manifest, the evaluation's
summary); never the API key, a request's text or a model's answer. ``_lineage`` turns this
into OpenLineage objects when the openlineage provider is installed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from airflow_batches.operators._common import coerce_batch_ids, coerce_job, parse_text

FACET_KEY = "airflowBatches_job"
"""The run facet's key in an event: custom facets carry a prefix naming their producer."""

_BUCKETS = {"s3": "s3", "s3a": "s3", "s3n": "s3", "gs": "gs", "gcs": "gs"}
"""Object stores named ``<scheme>://<bucket>`` + key; the user part of their URI is the Airflow
connection id (``s3://aws_default@bucket/...``), which is not part of the dataset."""
_AZURE = frozenset({"abfs", "abfss", "wasb", "wasbs"})
"""Azure names keep the ``container@account`` authority whole: the container is the user part."""


@dataclass(frozen=True)
class Lineage:
    """One task's lineage: storage URIs read and written, and the job facet's fields."""

    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    job: dict[str, Any] | None = None

    def datasets(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """The inputs and outputs as OpenLineage (namespace, name) pairs, each once."""
        return _unique(self.inputs), _unique(self.outputs)


def dataset_name(uri: str) -> tuple[str, str]:
    """A storage URI as an OpenLineage dataset's (namespace, name), per OpenLineage's naming:
    ``s3://bucket/key`` -> (``s3://bucket``, ``key``); ``gs://``/``gcs://`` likewise as ``gs``;
    a local path or ``file:///path`` -> (``file``, ``/path``); Azure keeps
    ``container@account``; anything else -> (``<scheme>://<host>``, ``/path``)."""
    text = str(uri)
    if "://" not in text:
        text = "file://" + text
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    host = parts.netloc.rpartition("@")[2] if scheme not in _AZURE else parts.netloc
    path = parts.path.rstrip("/") or "/"
    if scheme in _BUCKETS:
        return f"{_BUCKETS[scheme]}://{host}", path.lstrip("/")
    if scheme == "file":
        return ("file" if host in ("", "localhost") else f"file://{host}"), path
    return f"{scheme}://{host}", path


def _unique(uris: Iterable[str]) -> list[tuple[str, str]]:
    return list(dict.fromkeys(dataset_name(u) for u in uris if u))


# -- the submit --------------------------------------------------------------------------


def submit_lineage(
    *,
    requests_path: Any,
    models: Any,
    job: Mapping[str, Any] | None,
) -> Lineage:
    """The submit's lineage: the requests file in (none for inline requests), the job folder
    on the staging storage out (none when the requests were staged in a temporary folder).

    Before the job exists (at start, or when the task failed before submitting) the facet
    names the models the task was given, when it was given a model matrix.
    """
    inputs = (str(requests_path),) if requests_path else ()
    if job is None:
        matrix = _matrix_entries(models)
        facet = {"stage": "submit", "models": matrix} if matrix else {"stage": "submit"}
        return Lineage(inputs=inputs, job=facet)
    outputs = (job["job_dir"],) if job.get("job_dir") else ()
    return Lineage(inputs=inputs, outputs=outputs, job=_submitted(job))


def _submitted(job: Mapping[str, Any]) -> dict[str, Any]:
    estimate = job.get("estimate") or {}
    cache = job.get("cache") or {}
    batches = job.get("batches") or []
    counts = {
        "total": int(job.get("request_count") or 0),
        "sent": sum(int(b.get("request_count") or 0) for b in batches),
        "rejected": int(job.get("rejected_count") or 0),
    }
    if cache:
        counts["fromCache"] = int(cache.get("hits") or 0)
    by_model = estimate.get("models") or {}
    labels = _labels(job.get("matrix"))
    models = [
        {
            "model": model,
            "label": labels.get(model, model),
            "requests": m.get("requests"),
            "estimatedCostUsd": m.get("expected_usd"),
            "worstCaseCostUsd": m.get("worst_usd"),
        }
        for model, m in by_model.items()
    ]
    return {
        "stage": "submit",
        "jobId": job.get("job_id"),
        "apiVersion": job.get("anthropic_version"),
        "batchIds": [b["id"] for b in batches],
        "models": models or _matrix_entries(job.get("matrix")),
        "requestCounts": counts,
        **_estimate(estimate),
    }


def _estimate(estimate: Mapping[str, Any]) -> dict[str, Any]:
    if not estimate:
        return {}
    return {
        "estimatedCostUsd": estimate.get("expected_usd"),
        "worstCaseCostUsd": estimate.get("worst_usd"),
    }


def _matrix_entries(models: Any) -> list[dict[str, Any]]:
    """A model matrix's entries as (model, label) only: an entry's params may hold prompt
    text, which a catalog never gets."""
    if isinstance(models, str):
        try:
            models = parse_text(models)
        except ValueError:
            return []
    if not isinstance(models, Sequence) or isinstance(models, str):
        return []
    out = []
    for entry in models:
        if isinstance(entry, str):
            out.append({"model": entry, "label": entry})
        elif isinstance(entry, Mapping) and entry.get("model"):
            model = str(entry["model"])
            out.append({"model": model, "label": str(entry.get("label") or model)})
    return out


def _labels(matrix: Any) -> dict[str, str]:
    """model id -> label, for the ids exactly one label of a matrix uses."""
    entries = _matrix_entries(matrix)
    ids = [e["model"] for e in entries]
    return {e["model"]: e["label"] for e in entries if ids.count(e["model"]) == 1}


# -- the fetch ---------------------------------------------------------------------------


def fetch_lineage(*, job: Any, manifest: Mapping[str, Any] | None) -> Lineage:
    """The fetch's lineage: the job folder the submit staged in (when it did), the published
    results files out (one per type and per model when split); the facet from the manifest
    once published, else from the job it was given."""
    descriptor = _descriptor(job)
    inputs = (descriptor["job_dir"],) if descriptor and descriptor.get("job_dir") else ()
    if manifest is None:
        if descriptor is not None:
            facet = {**_submitted(descriptor), "stage": "fetch"}
        else:
            facet = {"stage": "fetch", "batchIds": _batch_ids(job)}
        return Lineage(inputs=inputs, job=facet)
    files = tuple(str(f) for f in (manifest.get("files") or {}).values())
    facet = _fetched(manifest, "fetch")
    if descriptor is not None:
        facet.update(_estimate(descriptor.get("estimate") or {}))
    return Lineage(inputs=inputs, outputs=files, job=facet)


def _descriptor(job: Any) -> dict[str, Any] | None:
    try:
        found = coerce_job(job)
    except ValueError:
        return None
    return None if found is None else found.model_dump(mode="json")


def _batch_ids(job: Any) -> list[str]:
    try:
        return coerce_batch_ids(job)
    except ValueError:
        return []


_TOKENS = {
    "inputTokens": "input_tokens",
    "outputTokens": "output_tokens",
    "cacheReadInputTokens": "cache_read_input_tokens",
    "cacheWriteTokens": "cache_write_tokens",
}


def _tokens(usages: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    total = dict.fromkeys(_TOKENS, 0)
    for usage in usages:
        for ours, theirs in _TOKENS.items():
            total[ours] += int(usage.get(theirs) or 0)
    return total


def _fetched(manifest: Mapping[str, Any], stage: str) -> dict[str, Any]:
    """The facet of a fetched job, from its manifest: per model (per matrix label when the
    job had a matrix) its requests, counts, tokens and cost."""
    usage = manifest.get("usage_by_model") or {}
    matrix = manifest.get("matrix") or {}
    models: list[dict[str, Any]]
    if matrix:
        models = [
            {
                "model": m.get("model") or label,
                "label": label,
                "requests": m.get("requests"),
                "requestCounts": dict(m.get("counts") or {}),
                "usage": _tokens((m.get("usage") or {}).values()),
                "costUsd": m.get("cost_usd"),
            }
            for label, m in matrix.items()
        ]
    else:
        models = [
            {
                "model": model,
                "label": model,
                "requests": m.get("requests"),
                "usage": _tokens([m]),
                "costUsd": m.get("cost_usd"),
            }
            for model, m in usage.items()
        ]
    facet: dict[str, Any] = {
        "stage": stage,
        "jobId": manifest.get("job_id"),
        "apiVersion": manifest.get("anthropic_version"),
        "batchIds": list(manifest.get("batch_ids") or []),
        "models": models,
        "requestCounts": dict(manifest.get("counts") or {}),
        "usage": _tokens(usage.values()),
        "costUsd": manifest.get("cost_usd"),
        "costComplete": manifest.get("cost_complete"),
    }
    cache = manifest.get("cache") or {}
    if cache:
        facet["requestCounts"]["fromCache"] = int(cache.get("hits") or 0)
        facet["costAvoidedUsd"] = cache.get("cost_avoided_usd")
    return facet


# -- the evaluation ----------------------------------------------------------------------


def evaluate_lineage(
    *, results: Any, manifest: Mapping[str, Any] | None, summary: Mapping[str, Any] | None
) -> Lineage:
    """The evaluation's lineage: the results files in, ``scores.jsonl``, ``summary.json``,
    ``report.html`` (and ``regressions.jsonl`` when written) out; the facet joins the fetch's
    figures to each model's pass rate and mean score. ``manifest`` is the one the task read
    (else the one it was handed), ``summary`` what it wrote (None until it has)."""
    manifest = dict(manifest) if manifest is not None else _manifest_given(results)
    inputs = tuple(str(f) for f in (manifest.get("files") or {}).values())
    facet: dict[str, Any] = _fetched(manifest, "evaluate") if manifest else {"stage": "evaluate"}
    if summary is None:
        return Lineage(inputs=inputs, job=facet)
    written = summary.get("files") or {}
    outputs = tuple(str(v) for k, v in written.items() if k != "manifest" and v)
    by_label = {m["label"]: m for m in facet.get("models", [])}
    models = []
    for label, figures in (summary.get("models") or {}).items():
        models.append(
            {
                **by_label.get(label, {"model": label, "label": label}),
                "requests": figures.get("requests"),
                "costUsd": figures.get("cost_usd"),
                "scored": figures.get("scored"),
                "passed": figures.get("passed"),
                "passRate": figures.get("pass_rate"),
                "meanScore": figures.get("mean_score"),
                "costPerCorrectUsd": figures.get("cost_per_correct_usd"),
            }
        )
    totals = summary.get("totals") or {}
    facet.update(
        models=models,
        batchIds=facet.get("batchIds") or [b["id"] for b in summary.get("batches") or []],
        jobId=facet.get("jobId") or (summary.get("run") or {}).get("job_id"),
        costUsd=totals.get("cost_usd", facet.get("costUsd")),
        evaluation={
            "scored": totals.get("scored"),
            "passed": totals.get("passed"),
            "passRate": totals.get("pass_rate"),
            "meanScore": totals.get("mean_score"),
            "regressions": totals.get("regressions"),
            "thresholdsMet": not (summary.get("gate") or {}).get("violations"),
        },
    )
    return Lineage(inputs=inputs, outputs=outputs, job=facet)


def _manifest_given(results: Any) -> dict[str, Any]:
    """The manifest when the task was handed one (the fetch's output), without reading
    storage; empty for a folder URI (read when the task runs)."""
    if isinstance(results, str) and results.lstrip().startswith("{"):
        try:
            results = parse_text(results)
        except ValueError:
            return {}
    if isinstance(results, Mapping) and "manifest" in results and "results" in results:
        return dict(results["manifest"])
    return dict(results) if isinstance(results, Mapping) else {}
