"""The token-counting endpoint: input tokens of one Messages request, free but rate-limited.

Used by the cost estimate to calibrate its byte-based counts on a sample; a thin name over
``Client.count_tokens`` (the client's own headers and retry policy: a 429 is waited out as
``retry-after`` says).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_batches.api._base import COUNT_TOKENS_PATH, TokenCount
from airflow_batches.api._sync import Client

__all__ = ["COUNT_TOKENS_PATH", "TokenCount", "count_tokens"]


def count_tokens(client: Client, params: Mapping[str, Any]) -> int:
    """Input tokens the API counts for ``params`` (model, messages, system, tools, ...)."""
    return client.count_tokens(params)
