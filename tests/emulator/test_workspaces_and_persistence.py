"""Workspace isolation, and what survives a restart."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import anthropic
import httpx
import pytest

from airflow_batches.api import Client, NotFoundError, PermissionDeniedError
from airflow_batches.emulator import EmulatorConfig
from airflow_batches.emulator.testing import RunningEmulator, serve_emulator
from tests.emulator.conftest import requests

TEAMS = {"default": ["key-a", "key-a2"], "team-b": ["key-b"], "shared": ["key-b", "key-s"]}


def test_batches_are_visible_only_to_their_workspace(
    emulator_factory: Callable[..., RunningEmulator],
) -> None:
    em = emulator_factory(workspaces=TEAMS)
    assert em.keys == {"default": "key-a", "team-b": "key-b", "shared": "key-b"}
    with (
        Client(api_key="key-a", base_url=em.base_url) as a,
        Client(api_key="key-a2", base_url=em.base_url) as a2,
        Client(api_key="key-b", base_url=em.base_url) as b,
    ):
        batch = a.create(requests(2))
        em.wait_ended(batch.id)
        assert a2.retrieve(batch.id).id == batch.id
        for call in (b.retrieve, b.cancel, b.delete):
            with pytest.raises(NotFoundError):
                call(batch.id)
        with pytest.raises(NotFoundError):
            list(b.results(a.retrieve(batch.id)))
        assert list(b.list()) == []
        assert [x.id for x in a2.list()] == [batch.id]
    assert em.admin.batches_created("default") == 1
    assert em.admin.batches_created("team-b") == 0
    assert [x["id"] for x in em.admin.batches(workspace="default")] == [batch.id]


def test_workspace_header_selects_among_a_keys_workspaces(
    emulator_factory: Callable[..., RunningEmulator],
) -> None:
    em = emulator_factory(workspaces=TEAMS)
    with Client(api_key="key-b", base_url=em.base_url, workspace_id="shared") as shared:
        batch = shared.create(requests(1))
    with Client(api_key="key-b", base_url=em.base_url) as team_b, pytest.raises(NotFoundError):
        team_b.retrieve(batch.id)
    with Client(api_key="key-s", base_url=em.base_url) as s:
        assert s.retrieve(batch.id).id == batch.id
    with (
        Client(api_key="key-a", base_url=em.base_url, workspace_id="shared") as wrong,
        pytest.raises(PermissionDeniedError),
    ):
        wrong.list_page()
    assert em.admin.batches_created("shared") == 1


def test_sdk_bearer_auth_in_another_workspace(
    emulator_factory: Callable[..., RunningEmulator],
) -> None:
    em = emulator_factory(workspaces=TEAMS)
    with anthropic.Anthropic(api_key="key-a", base_url=em.base_url) as a:
        batch = a.messages.batches.create(requests=requests(1))
    with (
        anthropic.Anthropic(api_key="key-s", base_url=em.base_url, max_retries=0) as s,
        pytest.raises(anthropic.NotFoundError),
    ):
        s.messages.batches.retrieve(batch.id)


def test_everything_survives_a_restart(emulator: RunningEmulator, client: Client) -> None:
    done = client.create(requests(5))
    emulator.wait_ended(done.id)
    before = sorted(line.model_dump_json() for line in client.results(done.id))
    emulator.configure(paused=True)
    waiting = client.create(requests(7, prefix="w"))
    port = emulator.port

    emulator.restart()
    assert emulator.port == port
    assert client.retrieve(done.id).request_counts.succeeded == 5
    assert sorted(line.model_dump_json() for line in client.results(done.id)) == before
    assert client.retrieve(waiting.id).processing_status == "in_progress"
    assert emulator.admin.batches_created() == 2
    assert emulator.admin.requests(waiting.id)[0]["custom_id"] == "w-0"

    emulator.configure(paused=False)
    emulator.wait_ended(waiting.id)
    assert client.retrieve(waiting.id).request_counts.succeeded == 7
    assert [b.id for b in client.list()] == [waiting.id, done.id]


def test_a_batch_interrupted_mid_way_finishes_after_restart(
    emulator: RunningEmulator, client: Client
) -> None:
    emulator.configure(latency=0.01, workers=1)
    batch = client.create(requests(40))
    emulator.wait_processed(batch.id, 5)
    emulator.restart()
    emulator.configure(latency=0)
    emulator.wait_ended(batch.id)
    lines = list(client.results(batch.id))
    assert sorted(line.custom_id for line in lines) == sorted(f"req-{i}" for i in range(40))
    assert client.retrieve(batch.id).request_counts.succeeded == 40


def test_uncommitted_progress_is_redone_after_a_crash(tmp_path: Path) -> None:
    # Lines written after the last commit (a crash) are cut off and processed again.
    data_dir = tmp_path / "em"
    with serve_emulator(EmulatorConfig(paused=True), data_dir=data_dir) as em:
        with Client(api_key=em.api_key, base_url=em.base_url) as client:
            batch = client.create(requests(4))
        em.stop()
        files = data_dir / "batches" / batch.id
        with (files / "results.jsonl").open("ab") as fh:
            fh.write(b'{"custom_id":"req-0","result":{"type":"succe')
        with (files / "journal.bin").open("ab") as fh:
            fh.write(b"\x00\x00\x00\x00\x01")
        em.restart()
        em.configure(paused=False)
        em.wait_ended(batch.id)
        response = httpx.get(
            f"{em.base_url}/v1/messages/batches/{batch.id}/results",
            headers={"x-api-key": em.api_key, "anthropic-version": "2023-06-01"},
        )
        lines = response.text.splitlines()
        assert len(lines) == 4
        assert all(line.endswith("}") for line in lines)


def test_the_emulated_clock_survives_a_restart(emulator: RunningEmulator) -> None:
    advanced = emulator.advance_clock(10 * 86400)
    emulator.restart()
    assert emulator.admin.clock()["epoch"] >= advanced.timestamp()


def test_reset_forgets_everything(emulator: RunningEmulator, client: Client) -> None:
    batch = client.create(requests(2))
    emulator.admin.reset()
    with pytest.raises(NotFoundError):
        client.retrieve(batch.id)
    assert emulator.admin.batches_created() == 0
    assert emulator.admin.batches() == []
