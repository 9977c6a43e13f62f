"""Pre-flight's receipts, and the cache's step of a submission: an input judged before is
copied, not judged again; what is sent is never validated twice, and the estimate sees only it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from airflow_batches.jobs._store import JobStore
from airflow_batches.jobs.cache import CacheStep, CrossRunCache, endpoint_identity
from airflow_batches.jobs.prepare import (
    REQUESTS_FILE,
    ModelMatrix,
    Parts,
    RequestValidator,
    Sidecar,
    Staged,
    envelope_parts,
    model_rules_check,
    records_from_jsonl,
    stage_requests,
)
from airflow_batches.jobs.prepare._validate import RequestValidator as Validator

MODELS = ["claude-haiku-4-5", "claude-sonnet-4-5"]


class Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, message: str, *args: Any) -> None:
        self.lines.append(message % args)

    warning = info


def write_input(path: Path, texts: list[str]) -> None:
    with path.open("w") as out:
        for i, text in enumerate(texts):
            request = {
                "custom_id": f"q{i}",
                "params": {"messages": [{"role": "user", "content": text}]},
                "metadata": {"i": i},
            }
            out.write(json.dumps(request) + "\n")


def step(tmp_path: Path, observers: list[Any] | None = None) -> CacheStep:
    cache = CrossRunCache(
        tmp_path / "cache",
        endpoint=endpoint_identity("http://127.0.0.1:8089"),
        anthropic_version="2023-06-01",
    )
    sender = RequestValidator(anthropic_version="2023-06-01", observers=observers or [])
    return CacheStep(cache, sender, ModelMatrix.of(MODELS).part_of)


def submit(
    tmp_path: Path, source: Path, night: str, cache: CacheStep, **settings: Any
) -> tuple[Staged, Sidecar, bool]:
    """What ``submit_job`` does before any create: recall, else stage and remember."""
    sidecar = Sidecar()
    records = Parts(
        envelope_parts(
            lambda: records_from_jsonl(source.open("rb")), sidecar, ModelMatrix.of(MODELS)
        )
    )
    validator = RequestValidator(
        anthropic_version="2023-06-01",
        defaults=settings.get("defaults", {"max_tokens": 8}),
        metadata=sidecar.metadata,
        checks=settings.get("checks", []),
    )
    root = JobStore(tmp_path / "staging" / night)
    digest, staged = cache.recall(root, records, validator, "fail", sidecar, Log())
    recalled = staged is not None
    if staged is None:
        store, prepared = stage_requests(root, records, validator, sidecar=sidecar)
        staged = Staged(store, prepared)
        if digest is not None:
            cache.remember(digest, staged, sidecar)
    return cache.stage(staged, Log()), sidecar, recalled


def test_the_same_input_is_not_judged_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "in.jsonl"
    write_input(source, ["a", "b", "c"])
    cache = step(tmp_path)
    checks = [model_rules_check(anthropic_version="2023-06-01")]
    first, side1, recalled = submit(tmp_path, source, "n1", cache, checks=checks)
    assert not recalled and first.sent is not None and first.sent.request_count == 6

    reads: list[str] = []
    original = Validator.read

    def counting(self: Validator, location: str, raw: Any) -> Any:
        reads.append(location)
        return original(self, location, raw)

    monkeypatch.setattr(Validator, "read", counting)
    keyed: list[bytes] = []
    key = CrossRunCache.key

    def counting_keys(self: CrossRunCache, line: bytes) -> tuple[str, bytes]:
        keyed.append(line)
        return key(self, line)

    monkeypatch.setattr(CrossRunCache, "key", counting_keys)
    again = model_rules_check(anthropic_version="2023-06-01")  # the same table, betas, rules
    second, side2, recalled = submit(tmp_path, source, "n2", cache, checks=[again])
    assert recalled and reads == []
    assert keyed == []  # the first lookup's keys came with the receipt
    assert second.prepared.fingerprint == first.prepared.fingerprint
    assert second.store.root != first.store.root
    for name in (REQUESTS_FILE, side1.name):
        assert second.store.path(name).read_bytes() == first.store.path(name).read_bytes()
    assert (side2.count, side2.with_metadata) == (side1.count, side1.with_metadata) == (6, 6)


@pytest.mark.parametrize(
    "change",
    ["input", "defaults", "order", "checks", "gone"],
)
def test_anything_else_is_judged_again(tmp_path: Path, change: str) -> None:
    source = tmp_path / "in.jsonl"
    write_input(source, ["a", "b"])
    cache = step(tmp_path)
    first, _, _ = submit(tmp_path, source, "n1", cache)
    settings: dict[str, Any] = {}
    if change == "input":
        write_input(source, ["a", "b!"])
    elif change == "defaults":
        settings["defaults"] = {"max_tokens": 9}
    elif change == "order":  # the same defaults, spliced in another order: other bytes
        settings["defaults"] = {"temperature": 1, "max_tokens": 8}
        first, _, _ = submit(
            tmp_path, source, "n0", cache, defaults={"max_tokens": 8, "temperature": 1}
        )
    elif change == "checks":
        settings["checks"] = [lambda params: iter(())]  # says nothing of what it depends on
    else:
        shutil.rmtree(first.store.root)  # the earlier job's folder was cleaned up
    _, _, recalled = submit(tmp_path, source, "n2", cache, **settings)
    assert not recalled


def test_what_is_sent_is_shown_to_the_estimate_once_and_never_validated_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "in.jsonl"
    write_input(source, ["a", "b", "c"])
    seen: list[tuple[str, Any]] = []
    cache = step(tmp_path, observers=[lambda cid, params, line: seen.append((cid, params))])
    first, _, _ = submit(tmp_path, source, "n1", cache)
    info = first.cache
    writer = cache.cache.writer(first.store, info)
    writer.add("m0_q0", "msgbatch_1", b'{"type":"succeeded"}')
    writer.add("m1_q2", "msgbatch_1", b'{"type":"succeeded"}')
    writer.commit()

    write_input(source, ["a", "b", "c", "d"])
    seen.clear()
    reads: list[str] = []
    original = Validator.read

    def counting(self: Validator, location: str, raw: Any) -> Any:
        reads.append(location)
        return original(self, location, raw)

    monkeypatch.setattr(Validator, "read", counting)
    second, _, _ = submit(tmp_path, source, "n2", cache)
    assert len(reads) == 4  # each input line read once, for both models
    assert sorted(cid for cid, _ in seen) == ["m0_q1", "m0_q2", "m0_q3", "m1_q0", "m1_q1", "m1_q3"]
    assert all(params["max_tokens"] == 8 for _, params in seen)
    assert second.sent is not None and second.sent.request_count == 6
    assert len(second.sent.shards) == 2  # one batch per model, as pre-flight plans them
    assert second.cache is not None and second.sent_file == second.cache.uncached_file
    sent = second.store.path(second.sent_file).read_bytes()
    assert sum(shard.length for shard in second.sent.shards) == len(sent)
    # A retry reuses the lookup and plans the same batches, showing them to the estimate again.
    seen.clear()
    again = cache.stage(Staged(second.store, second.prepared), Log())
    assert again.sent == second.sent and len(seen) == 6


def test_a_recalled_night_all_from_the_cache_never_opens_its_staged_requests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_batches.jobs.cache._layout import CACHED_FILE, KEYS_MEMO

    source = tmp_path / "in.jsonl"
    write_input(source, [f"question {i}" for i in range(40)])
    cache = step(tmp_path)
    first, _, _ = submit(tmp_path, source, "n1", cache)
    assert first.sent is not None and first.sent.request_count == 80
    writer = cache.cache.writer(first.store, first.cache)
    for model in ("m0", "m1"):
        for i in range(40):
            writer.add(f"{model}_q{i}", "msgbatch_1", b'{"type":"succeeded","i":%d}' % i)
    assert writer.commit() == 80

    opened: list[str] = []
    open_path = Path.open

    def spying(self: Path, *args: Any, **kwargs: Any) -> Any:
        opened.append(self.name)
        return open_path(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", spying)
    second, _, recalled = submit(tmp_path, source, "n2", cache)
    assert recalled and second.sent is None and second.cache is not None
    assert second.cache.hits == 80 and second.cache.misses == 0
    assert REQUESTS_FILE not in opened  # its keys, hashes and custom_ids came with the receipt
    assert second.store.path(KEYS_MEMO).read_bytes() == first.store.path(KEYS_MEMO).read_bytes()
    cached = sorted(
        json.loads(x)["custom_id"] for x in second.store.path(CACHED_FILE).read_bytes().split()
    )
    assert cached == sorted(f"m{m}_q{i}" for m in (0, 1) for i in range(40))


@pytest.mark.parametrize("memo", ["older layout", "garbled", "gone"])
def test_a_memo_that_is_not_this_layouts_is_computed_again(tmp_path: Path, memo: str) -> None:
    from airflow_batches.jobs.cache._layout import KEYS_MEMO

    source = tmp_path / "in.jsonl"
    write_input(source, ["a", "b", "c"])
    cache = step(tmp_path)
    first, _, _ = submit(tmp_path, source, "n1", cache)
    writer = cache.cache.writer(first.store, first.cache)
    for model in ("m0", "m1"):
        for i in range(3):
            writer.add(f"{model}_q{i}", "msgbatch_1", b'{"type":"succeeded"}')
    writer.commit()
    path = first.store.path(KEYS_MEMO)
    good = path.read_bytes()
    if memo == "older layout":  # the header, then 16 bytes a request
        path.write_bytes(good[:32] + b"".join(good[32 + 88 * i :][:16] for i in range(6)))
    elif memo == "garbled":  # the right size, the wrong header
        path.write_bytes(b"\0" * 32 + good[32:])
    else:
        path.unlink()
    second, _, recalled = submit(tmp_path, source, "n2", cache)
    assert recalled and second.cache is not None
    assert (second.cache.hits, second.cache.misses) == (6, 0)
    assert second.store.path(KEYS_MEMO).read_bytes() == good  # computed, and kept, again
