"""The token-counting endpoint: input tokens of one Messages request, free but rate-limited.

Used by the cost estimate to calibrate its byte-based counts on a sample. Requests go through
the client's own sending path, so they carry its headers and obey its retry policy (a 429 is
waited out as ``retry-after`` says).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import httpx
from pydantic import BaseModel, ConfigDict

from airflow_batches.api._client import Client

__all__ = ["COUNT_TOKENS_PATH", "TokenCount", "count_tokens"]

COUNT_TOKENS_PATH: Final = "/v1/messages/count_tokens"


class TokenCount(BaseModel):
    model_config = ConfigDict(extra="allow")

    input_tokens: int


def count_tokens(client: Client, params: Mapping[str, Any]) -> int:
    """Input tokens the API counts for ``params`` (model, messages, system, tools, ...)."""
    url = client._url(COUNT_TOKENS_PATH)

    headers = {"content-type": "application/json"}

    def build() -> httpx.Request:
        return client._http.build_request(
            "POST", url, json=dict(params), headers=client._headers(headers)
        )

    return client._parse(TokenCount, client._send(build)).input_tokens
