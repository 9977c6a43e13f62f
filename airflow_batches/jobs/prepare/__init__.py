"""Input and pre-flight: reading requests (``_request_files``, ``_request_json``), checking
them (``_validate``, ``_problems``, ``_limits``, ``_rule_checks``), the model matrix and the
metadata sidecar (``_matrix``, ``_sidecar``, ``_fanout``), sharding (``_shards``) and staging
(``_blocks``, ``_staging``). Nothing here talks to the API."""

from __future__ import annotations

from airflow_batches.jobs.prepare._blocks import Output, Staging
from airflow_batches.jobs.prepare._fanout import MatrixInput, matrix_input
from airflow_batches.jobs.prepare._limits import MAX_LINE_BYTES, MAX_NESTING, Limits
from airflow_batches.jobs.prepare._matrix import (
    HASH_HEX,
    KEEP_CHARS,
    MatrixModel,
    ModelMatrix,
    envelope_parts,
    once_source,
)
from airflow_batches.jobs.prepare._problems import Problem, RequestValidationError
from airflow_batches.jobs.prepare._request_files import (
    records_from_items,
    records_from_jsonl,
    records_from_text,
)
from airflow_batches.jobs.prepare._request_json import decode_line, nests_deeper
from airflow_batches.jobs.prepare._rule_checks import model_rules_check
from airflow_batches.jobs.prepare._shards import (
    OnInvalid,
    Part,
    Prepared,
    Shard,
    id_digest,
    iter_shard_body,
    prepare,
)
from airflow_batches.jobs.prepare._sidecar import (
    Sidecar,
    load_sidecar,
    original_key,
    sidecar_entries,
)
from airflow_batches.jobs.prepare._staging import (
    REJECTED_FILE,
    REQUESTS_FILE,
    Parts,
    SidecarWriter,
    Staged,
    combine,
    select_range,
    select_requests,
    stage_requests,
)
from airflow_batches.jobs.prepare._validate import ParamCheck, RequestValidator

__all__ = [
    "HASH_HEX",
    "KEEP_CHARS",
    "MAX_LINE_BYTES",
    "MAX_NESTING",
    "REJECTED_FILE",
    "REQUESTS_FILE",
    "Limits",
    "MatrixInput",
    "MatrixModel",
    "ModelMatrix",
    "OnInvalid",
    "Output",
    "ParamCheck",
    "Part",
    "Parts",
    "Prepared",
    "Problem",
    "RequestValidationError",
    "RequestValidator",
    "Shard",
    "Sidecar",
    "SidecarWriter",
    "Staged",
    "Staging",
    "combine",
    "decode_line",
    "envelope_parts",
    "id_digest",
    "iter_shard_body",
    "load_sidecar",
    "matrix_input",
    "model_rules_check",
    "nests_deeper",
    "once_source",
    "original_key",
    "prepare",
    "records_from_items",
    "records_from_jsonl",
    "records_from_text",
    "select_range",
    "select_requests",
    "sidecar_entries",
    "stage_requests",
]
