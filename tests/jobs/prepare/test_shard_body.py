"""A shard's create body is the client's create body of the same requests, byte for byte.

Both go through ``api._envelope`` (one framing): the client joins encoded requests, a job
streams its staged lines in blocks of any size. The fingerprint and the shard sizes a job
records depend on these bytes.
"""

from __future__ import annotations

import io

import pytest

from airflow_batches.api import iter_create_body
from airflow_batches.jobs.prepare import Limits, RequestValidator, iter_shard_body, prepare

REQUESTS = [
    {
        "custom_id": f"r{i}",
        "params": {
            "model": "claude-sonnet-4-5",
            "max_tokens": 16,
            "messages": [{"role": "user", "content": "é\n" * i}],
        },
    }
    for i in range(12)
]


@pytest.mark.parametrize("chunk_size", [1, 7, 1 << 20])
def test_a_shard_body_is_the_create_body_of_its_lines(chunk_size: int) -> None:
    staged = io.BytesIO()
    validator = RequestValidator(anthropic_version="2023-06-01", limits=Limits(max_requests=5))
    records = ((f"request {i}", r) for i, r in enumerate(REQUESTS))
    prepared = prepare(records, validator, staged)
    lines = staged.getvalue().splitlines()
    assert [shard.count for shard in prepared.shards] == [5, 5, 2]

    def opened() -> io.BytesIO:
        return io.BytesIO(staged.getvalue())

    for shard in prepared.shards:
        body = b"".join(iter_shard_body(opened, shard, chunk_size=chunk_size))
        expected = b"".join(iter_create_body(lines[shard.first : shard.first + shard.count]))
        assert body == expected
        assert len(body) == shard.body_bytes
