"""The admin view against what a web page in the developer's browser can send, on a real server.

A hostile page can send a ``text/plain`` POST (no CORS preflight) from its own origin, or
rebind its own DNS name to 127.0.0.1 and send anything with its own name in ``Host``. None of
it may change the emulator's state or read a key; the project's own tools keep working.
"""

from __future__ import annotations

import json
import socket
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest
from starlette.datastructures import Headers
from starlette.routing import Route

from airflow_batches.emulator import admin
from airflow_batches.emulator.admin_guard import check_admin_request, host_allowed
from airflow_batches.emulator.testing import RunningEmulator
from tests.emulator.conftest import MODEL, requests

KEYS = {"default": ["sk-emu-alpha-7f3c1d", "sk-emu-beta-91ab02"], "team": ["sk-emu-team-5e6d"]}
EVIL = "https://evil.example"


@pytest.fixture
def em(emulator_factory: Callable[..., RunningEmulator]) -> RunningEmulator:
    return emulator_factory(workspaces=KEYS)


@pytest.fixture
def batch_id(em: RunningEmulator) -> str:
    with anthropic.Anthropic(api_key=em.api_key, base_url=em.base_url, max_retries=0) as sdk:
        batch = sdk.messages.batches.create(requests=requests(2))  # type: ignore[arg-type]
    return batch.id


def _admin(em: RunningEmulator, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, f"{em.base_url}/_emulator{path}", timeout=30, **kwargs)


def _refused(response: httpx.Response, status: int, words: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()
    assert error["type"] == "error" and error["request_id"] == response.headers["request-id"]
    assert words in error["error"]["message"]


def _state(em: RunningEmulator) -> dict[str, Any]:
    """What a hostile request would change: settings, batches, the clock."""
    live = em.app.state.emulator
    return {
        "config": live.config.model_dump(mode="json"),
        "batches": sorted(r.id for r in live.store.all()),
        "epoch": live.clock.now(),
    }


def _unchanged(before: dict[str, Any], after: dict[str, Any]) -> None:
    assert after["config"] == before["config"]
    assert after["batches"] == before["batches"]
    assert after["epoch"] - before["epoch"] < 3600  # a hostile advance asks for 10 days


# Each state-changing admin call as a page would send it: path and JSON of the change.
CHANGES = [
    ("PATCH", "/config", {"paused": True, "workspaces": {"default": ["attacker-key"]}}),
    ("POST", "/config", {"faults": {"*": {"rate_500": 1.0}}}),
    ("POST", "/clock/advance", {"seconds": 864000}),
    ("POST", "/reset", {}),
]


@pytest.mark.parametrize(("method", "path", "change"), CHANGES)
@pytest.mark.parametrize(
    ("headers", "status", "words"),
    [
        # A form or fetch() with text/plain: no preflight, so the browser sends it.
        ({"content-type": "text/plain", "origin": EVIL}, 403, "Origin 'https://evil.example'"),
        ({"content-type": "text/plain;charset=UTF-8"}, 415, "application/json"),
        ({"content-type": "application/x-www-form-urlencoded"}, 415, "application/json"),
        ({"content-type": "multipart/form-data; boundary=x"}, 415, "application/json"),
        # A sandboxed iframe or a file:// page says Origin: null.
        ({"content-type": "application/json", "origin": "null"}, 403, "Origin 'null'"),
        # JSON from another site (had a preflight been granted).
        ({"content-type": "application/json", "origin": EVIL}, 403, "Cross-site"),
    ],
)
def test_a_cross_site_page_changes_nothing(
    em: RunningEmulator,
    batch_id: str,
    method: str,
    path: str,
    change: dict[str, Any],
    headers: dict[str, str],
    status: int,
    words: str,
) -> None:
    before = _state(em)
    response = _admin(em, method, path, content=json.dumps(change), headers=headers)
    _refused(response, status, words)
    _unchanged(before, _state(em))
    assert batch_id in before["batches"]


@pytest.mark.parametrize(("method", "path", "change"), CHANGES)
def test_a_dns_rebinding_page_changes_nothing(
    em: RunningEmulator, batch_id: str, method: str, path: str, change: dict[str, Any]
) -> None:
    # After rebinding, the page is same-origin: its own name in Host and Origin, and any
    # content type it likes.
    host = f"attacker.example:{em.port}"
    before = _state(em)
    response = _admin(
        em,
        method,
        path,
        json=change,
        headers={"host": host, "origin": f"http://{host}"},
    )
    _refused(response, 403, f"Host {host!r} refused")
    _unchanged(before, _state(em))


@pytest.mark.parametrize(
    "path", ["/config", "/stats", "/batches", "/batches/{id}", "/batches/{id}/requests"]
)
def test_a_dns_rebinding_page_reads_nothing(em: RunningEmulator, batch_id: str, path: str) -> None:
    response = _admin(em, "GET", path.format(id=batch_id), headers={"host": "rebind.example"})
    _refused(response, 403, "Host 'rebind.example' refused")
    assert batch_id not in response.text and "sk-emu" not in response.text


def _every_admin_call(batch: str) -> Iterator[tuple[str, str]]:
    """Each route of the admin view with each of its methods, reset last."""
    calls = []
    for route in admin.routes:
        assert isinstance(route, Route) and route.methods
        for method in sorted(route.methods - {"HEAD"}):
            calls.append((method, route.path.replace("{batch_id}", batch)))
    yield from sorted(calls, key=lambda call: call[1] == "/reset")


def test_no_admin_answer_holds_a_key(em: RunningEmulator, batch_id: str) -> None:
    secrets = [key for keys in KEYS.values() for key in keys]
    answers = []
    for method, path in _every_admin_call(batch_id):
        body = None if method == "GET" else {}
        response = _admin(em, method, path, json=body)
        assert response.status_code == 200, (method, path, response.text)
        answers.append(response.text)
    # Error answers too: a refused change and an unknown field.
    answers.append(_admin(em, "PATCH", "/config", json={"workspaces": {"x": []}}).text)
    answers.append(_admin(em, "PATCH", "/config", json={"no_such_field": 1}).text)
    assert len(answers) >= 12
    for text in answers:
        assert not any(key in text for key in secrets), text
    shown = em.admin.config()["workspaces"]
    assert shown == {"default": ["<redacted>", "<redacted>"], "team": ["<redacted>"]}


def test_the_projects_own_admin_client_still_works(em: RunningEmulator, batch_id: str) -> None:
    # What tests, scripts and the e2e stack do, through AdminClient and RunningEmulator.
    em.configure(paused=True, latency=0.0)
    assert em.api_key == "sk-emu-alpha-7f3c1d"  # the keys survive a redacted answer
    assert em.keys == {"default": "sk-emu-alpha-7f3c1d", "team": "sk-emu-team-5e6d"}
    assert em.admin.config()["paused"] is True
    assert [b["id"] for b in em.admin.batches()] == [batch_id]
    assert len(em.admin.requests(batch_id)) == 2
    em.configure(paused=False)
    assert em.wait_ended(batch_id)["succeeded"] == 2
    now = em.advance_clock(3600)
    assert em.admin.clock()["now"] >= now.isoformat()
    assert em.admin.batches_created() == 1
    em.admin.reset()
    assert em.admin.batches() == []
    # Keys can still be set at run time by a tool, but not to the placeholder it was shown.
    em.configure(workspaces={"team": ["sk-emu-team-new"]})
    assert em.keys["team"] == "sk-emu-team-new"
    with pytest.raises(ValueError, match=r"workspaces\.team: '<redacted>' is what"):
        em.configure(workspaces={"team": ["<redacted>"]})
    assert em.app.state.emulator.config.workspaces["team"] == ["sk-emu-team-new"]


def test_own_origin_loopback_names_and_admin_hosts_are_let_in(
    emulator_factory: Callable[..., RunningEmulator],
) -> None:
    em = emulator_factory(admin_hosts=["emulator.internal"])
    for host in ("localhost", f"localhost:{em.port}", f"127.0.0.7:{em.port}", f"[::1]:{em.port}"):
        response = _admin(em, "PATCH", "/config", json={"seed": 3}, headers={"host": host})
        assert response.status_code == 200, (host, response.text)
    own = f"127.0.0.1:{em.port}"
    response = _admin(em, "POST", "/clock/advance", json={}, headers={"origin": f"http://{own}"})
    assert response.status_code == 200
    response = _admin(em, "GET", "/stats", headers={"host": "Emulator.Internal:8089"})
    assert response.status_code == 200
    # A link to a batch followed from Airflow's UI or a report: a cross-site navigation.
    navigation = {"sec-fetch-site": "cross-site", "sec-fetch-mode": "navigate"}
    assert _admin(em, "GET", "/health", headers=navigation).json() == {"ok": True}
    # admin_hosts is a start-time setting, like the responder.
    response = _admin(em, "PATCH", "/config", json={"admin_hosts": ["evil.example"]})
    _refused(response, 400, "admin_hosts: cannot be set through the admin view")


@pytest.mark.parametrize(
    ("host", "served", "allowed"),
    [
        ("127.0.0.1:8089", "127.0.0.1", True),
        ("LOCALHOST.:8089", None, True),
        ("[::1]:8089", "::1", True),
        ("192.168.1.20:8089", "192.168.1.20", True),  # bound to 0.0.0.0, reached by address
        ("192.168.1.20:8089", "127.0.0.1", False),
        ("localhost.evil.example", "127.0.0.1", False),
        ("127.0.0.1.nip.io:8089", "127.0.0.1", False),
        ("emulator.internal", "10.0.0.2", True),  # admin_hosts
        ("host.docker.internal:8089", "127.0.0.1", True),  # this machine, from a container
        (f"{socket.gethostname().upper()}.:8089", "127.0.0.1", True),  # this machine's name
        (f"{socket.gethostname()}.evil.example", "127.0.0.1", False),
    ],
)
def test_which_hosts_are_the_emulators_own(host: str, served: str | None, allowed: bool) -> None:
    assert host_allowed(host, served, ["emulator.internal"]) is allowed


def test_a_get_needs_no_content_type_but_no_other_origin() -> None:
    own = Headers({"host": "127.0.0.1:8089"})
    assert check_admin_request("GET", own) is None
    assert check_admin_request("HEAD", own) is None
    other = Headers({"host": "127.0.0.1:8089", "origin": "http://localhost:8089"})
    refusal = check_admin_request("GET", other)
    assert refusal is not None and refusal.status == 403
    deleted = check_admin_request("DELETE", own)
    assert deleted is not None and deleted.status == 415


CANARY = """
from pathlib import Path

Path(__file__).with_suffix(".imported").write_text("imported")


def answer(ctx):
    return {
        "id": ctx.message_id, "type": "message", "role": "assistant",
        "model": ctx.params["model"], "content": [{"type": "text", "text": "canary"}],
        "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }
"""


@pytest.fixture
def canary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    """An importable module of the test's own that leaves a file behind when imported."""
    name = f"canary_{uuid.uuid4().hex}"
    folder = tmp_path / "canaries"
    folder.mkdir()
    (folder / f"{name}.py").write_text(CANARY)
    monkeypatch.syspath_prepend(str(folder))
    yield name, folder / f"{name}.imported"
    sys.modules.pop(name, None)


@pytest.mark.parametrize("method", ["PATCH", "POST"])
def test_a_responder_named_over_http_is_refused_and_never_imported(
    em: RunningEmulator, canary: tuple[str, Path], method: str
) -> None:
    name, marker = canary
    before = _state(em)
    response = _admin(em, method, "/config", json={"paused": True, "responder": f"{name}:answer"})
    _refused(response, 400, "responder: cannot be set through the admin view")
    assert "--responder" in response.json()["error"]["message"]
    _unchanged(before, _state(em))
    assert not marker.exists() and name not in sys.modules
    with pytest.raises(ValueError, match="responder: cannot be set"):
        em.configure(responder=f"{name}:answer")
    assert not marker.exists() and name not in sys.modules


def test_a_responder_given_at_start_is_imported_and_answers(
    emulator_factory: Callable[..., RunningEmulator], canary: tuple[str, Path]
) -> None:
    # The control for the test above: the same module, chosen at start, is imported.
    name, marker = canary
    em = emulator_factory(responder=f"{name}:answer")
    with anthropic.Anthropic(api_key=em.api_key, base_url=em.base_url, max_retries=0) as sdk:
        batch = sdk.messages.batches.create(
            requests=[
                {
                    "custom_id": "a",
                    "params": {
                        "model": MODEL,
                        "max_tokens": 8,
                        "messages": [{"role": "user", "content": "hi"}],
                    },
                }
            ]
        )
        em.wait_ended(batch.id)
        lines = list(sdk.messages.batches.results(batch.id))
    assert marker.read_text() == "imported"
    assert lines[0].result.type == "succeeded"
    assert lines[0].result.message.content[0].text == "canary"  # type: ignore[union-attr]


def test_the_api_refuses_a_dns_rebinding_page_and_answers_allowed_hosts(
    emulator_factory: Callable[..., RunningEmulator],
) -> None:
    # A page that rebound its name to 127.0.0.1 is same-origin with the emulator: it may send
    # the default key in a header without a preflight. Its own name in Host gives it away.
    em = emulator_factory(allowed_hosts=["emulator.internal"])
    before = _state(em)
    url = f"{em.base_url}/v1/messages/batches"
    headers = {"x-api-key": em.api_key, "anthropic-version": "2023-06-01"}
    body = {"requests": requests(1)}
    for host in (f"attacker.example:{em.port}", "127.0.0.1.nip.io", "localhost.evil.example"):
        for method, kwargs in (("GET", {}), ("POST", {"json": body})):
            response = httpx.request(
                method, url, headers={**headers, "host": host}, timeout=30, **kwargs
            )
            _refused(response, 403, f"Host {host!r} refused: the emulator answers only loopback")
            assert "allowed_hosts" in response.json()["error"]["message"]
    _unchanged(before, _state(em))
    assert em.admin.create_calls() == 0
    # The admin view refuses it too.
    response = _admin(em, "GET", "/stats", headers={"host": "attacker.example"})
    _refused(response, 403, "refused")
    # The emulator's own names, and a name in allowed_hosts (a docker-compose service), are in.
    names = (f"127.0.0.1:{em.port}", f"localhost:{em.port}", "Emulator.Internal:8089")
    for host in (*names, f"{socket.gethostname()}:{em.port}", "host.docker.internal"):
        response = httpx.get(url, headers={**headers, "host": host}, timeout=30)
        assert response.status_code == 200, (host, response.text)
    with anthropic.Anthropic(api_key=em.api_key, base_url=em.base_url, max_retries=0) as sdk:
        assert sdk.messages.batches.create(requests=requests(1)).id  # type: ignore[arg-type]
    response = _admin(em, "GET", "/stats", headers={"host": "emulator.internal"})
    assert response.status_code == 200
    # Like admin_hosts, allowed_hosts is set at start only.
    response = _admin(em, "PATCH", "/config", json={"allowed_hosts": ["evil.example"]})
    _refused(response, 400, "allowed_hosts: cannot be set through the admin view")
