"""The cross-run cache on its own: keys, the plan at submission, segments written at fetch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from airflow_batches.jobs._store import JobStore
from airflow_batches.jobs.cache import CrossRunCache, endpoint_identity, request_cache_key
from airflow_batches.jobs.cache._layout import CACHED_FILE, PLAN_FILE, UNCACHED_FILE
from airflow_batches.jobs.prepare import (
    REQUESTS_FILE,
    RequestValidator,
    records_from_items,
    stage_requests,
)

VALIDATOR = RequestValidator(anthropic_version="2023-06-01", defaults={"max_tokens": 8})
EMULATOR = endpoint_identity("http://127.0.0.1:8089")


def key_of(params: bytes, **kw: Any) -> bytes:
    return request_cache_key(params, endpoint=EMULATOR, **kw)


class Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, message: str, *args: Any) -> None:
        self.lines.append(message % args)


def params(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": text}], **extra}


def stage(root: Path, items: list[tuple[str, dict[str, Any]]]) -> JobStore:
    requests = [{"custom_id": c, "params": p} for c, p in items]
    job, _ = stage_requests(JobStore(root), records_from_items(requests), VALIDATOR)
    return job


def answer(custom_id: str, text: str) -> bytes:
    return json.dumps(
        {
            "type": "succeeded",
            "message": {"content": [{"type": "text", "text": text}], "id": custom_id},
        }
    ).encode()


def test_identical_means_same_params_after_defaults_model_version_and_betas() -> None:
    key = key_of(b'{"a": 1, "b": [1, 2]}', anthropic_version="v1", betas=["x", "y"])
    assert key == key_of(b'{"b":[1,2],"a":1}', anthropic_version="v1", betas=["y", "x"])
    assert key != key_of(b'{"a": 1, "b": [2, 1]}', anthropic_version="v1", betas=["x", "y"])
    assert key != key_of(b'{"a": 1, "b": [1, 2]}', anthropic_version="v2", betas=["x", "y"])
    assert key != key_of(b'{"a": 1, "b": [1, 2]}', anthropic_version="v1", betas=["x"])
    huge = b'{"a": 123456789012345678901234567890}'
    assert len(key_of(huge, anthropic_version="v1", betas=())) == 16


def test_the_endpoint_is_part_of_the_key() -> None:
    same = {"anthropic_version": "2023-06-01", "betas": ()}
    body = b'{"a": 1}'
    real = endpoint_identity("https://api.anthropic.com")
    assert (
        real
        == endpoint_identity("HTTPS://API.Anthropic.com:443/")
        == ("https://api.anthropic.com:443/")
    )
    assert endpoint_identity("http://127.0.0.1:8089") == "http://127.0.0.1:8089/"
    assert endpoint_identity("https://user:pw@gw.example/anthropic?x=1") == (
        "https://gw.example:443/anthropic/"
    )
    assert endpoint_identity("https://api.anthropic.com", "wrkspc_1").endswith(
        "?workspace=wrkspc_1"
    )
    keys = {
        request_cache_key(body, endpoint=e, **same)
        for e in (
            real,
            EMULATOR,
            endpoint_identity("http://127.0.0.1:8090"),
            endpoint_identity("https://gw.example/anthropic"),
            endpoint_identity("https://api.anthropic.com", "wrkspc_1"),
            endpoint_identity("https://api.anthropic.com", "wrkspc_2"),
        )
    }
    assert len(keys) == 6


def test_another_endpoint_never_gets_this_endpoint_s_answers(tmp_path: Path) -> None:
    emulator = CrossRunCache(tmp_path / "cache", endpoint=EMULATOR, anthropic_version="2023-06-01")
    first = stage(tmp_path / "one", [("a", params("x"))])
    info = emulator.plan(first, REQUESTS_FILE, Log())
    assert info.endpoint == EMULATOR
    writer = emulator.writer(first, info)
    writer.add("a", "msgbatch_1", answer("a", "from the emulator"))
    assert writer.commit() == 1

    real = CrossRunCache(
        tmp_path / "cache",
        endpoint=endpoint_identity("https://api.anthropic.com"),
        anthropic_version="2023-06-01",
    )
    log = Log()
    again = real.plan(stage(tmp_path / "two", [("a", params("x"))]), REQUESTS_FILE, log)
    assert (again.hits, again.misses, again.segments_read) == (0, 1, 1)
    assert "https://api.anthropic.com:443/" in log.lines[-1]
    # The emulator itself still finds its own answer.
    third = emulator.plan(stage(tmp_path / "three", [("a", params("x"))]), REQUESTS_FILE, Log())
    assert (third.hits, third.misses) == (1, 0)


def test_entries_of_the_older_layout_are_never_read(tmp_path: Path) -> None:
    """Caches written before the endpoint was part of the key live in ``v1/``: one night of
    misses after an upgrade, never a hit from an unknown endpoint."""
    old = tmp_path / "cache" / "v1"
    old.mkdir(parents=True)
    (old / "2026.jsonl").write_text("{}\n")
    (old / "2026.keys").write_bytes(b"\0" * 36)
    cache = CrossRunCache(tmp_path / "cache", endpoint=EMULATOR, anthropic_version="2023-06-01")
    assert cache.segments() == []


def test_a_second_job_is_answered_from_what_the_first_stored(tmp_path: Path) -> None:
    cache = CrossRunCache(tmp_path / "cache", endpoint=EMULATOR, anthropic_version="2023-06-01")
    first = stage(tmp_path / "one", [("a", params("x")), ("b", params("y")), ("c", params("z"))])
    info = cache.plan(first, REQUESTS_FILE, Log())
    assert (info.hits, info.misses, info.segments_read) == (0, 3, 0)
    assert len(first.path(UNCACHED_FILE).read_bytes().splitlines()) == 3
    writer = cache.writer(first, info)
    writer.add("a", "msgbatch_1", answer("a", "ax"))
    writer.add("b", "msgbatch_1", answer("b", "by"))  # c errored: never stored
    writer.add("unknown", "msgbatch_1", answer("?", "?"))  # not one of the misses: ignored
    assert writer.commit() == 2
    assert len(cache.segments()) == 1

    # Same params under other custom_ids, one changed, one new; max_tokens from the default
    # in both jobs, so the same params after defaults.
    second = stage(
        tmp_path / "two",
        [
            ("p", params("x")),
            ("q", params("y", temperature=0.5)),
            ("r", params("z")),
            ("s", params("y")),
        ],
    )
    log = Log()
    info2 = cache.plan(second, REQUESTS_FILE, log)
    assert (info2.hits, info2.misses) == (2, 2)
    cached = {
        json.loads(x)["custom_id"]: json.loads(x)
        for x in second.path(CACHED_FILE).read_bytes().splitlines()
    }
    assert set(cached) == {"p", "s"}
    assert cached["p"]["result"]["message"]["content"][0]["text"] == "ax"
    assert cached["p"]["cached_from"] == {"batch_id": "msgbatch_1", "custom_id": "a"}
    assert cached["s"]["cached_from"]["custom_id"] == "b"
    sent = [
        json.loads(x)["custom_id"] for x in second.path(UNCACHED_FILE).read_bytes().splitlines()
    ]
    assert sent == ["q", "r"]
    # A retry of the task looks nothing up again: what is sent never changes.
    again = cache.plan(second, REQUESTS_FILE, log)
    assert again == info2 and "reusing" in log.lines[-1]
    assert second.path(PLAN_FILE).exists()


def test_a_request_gets_its_own_earlier_result_before_a_twin_s(tmp_path: Path) -> None:
    cache = CrossRunCache(tmp_path / "cache", endpoint=EMULATOR, anthropic_version="2023-06-01")
    job = stage(tmp_path / "one", [("a", params("same")), ("b", params("same"))])
    info = cache.plan(job, REQUESTS_FILE, Log())
    writer = cache.writer(job, info)
    writer.add("a", "msgbatch_1", answer("a", "first"))
    writer.add("b", "msgbatch_1", answer("b", "second"))
    writer.commit()
    rerun = stage(tmp_path / "two", [("b", params("same")), ("a", params("same"))])
    cache.plan(rerun, REQUESTS_FILE, Log())
    cached = {
        json.loads(x)["custom_id"]: json.loads(x)
        for x in rerun.path(CACHED_FILE).read_bytes().splitlines()
    }
    assert cached["a"]["result"]["message"]["id"] == "a"
    assert cached["b"]["result"]["message"]["id"] == "b"


def test_an_aborted_or_unfinished_segment_is_never_read(tmp_path: Path) -> None:
    cache = CrossRunCache(tmp_path / "cache", endpoint=EMULATOR, anthropic_version="2023-06-01")
    job = stage(tmp_path / "one", [("a", params("x"))])
    info = cache.plan(job, REQUESTS_FILE, Log())
    writer = cache.writer(job, info)
    writer.add("a", "msgbatch_1", answer("a", "ax"))
    writer.abort()
    assert cache.segments() == []
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    (tmp_path / "cache" / "v2").mkdir(parents=True, exist_ok=True)
    (tmp_path / "cache" / "v2" / "half.jsonl").write_text("{}\n")  # no .keys: still being written
    assert cache.segments() == []
