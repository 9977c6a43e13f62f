"""``params_faults`` skips its checks for params that ``_unremarkable`` passes: the two must
never disagree (a request the checks would fault must not pass the one-call test)."""

from __future__ import annotations

import random
from typing import Any

from airflow_batches.api._request_shape import (
    _ALL_CHECKS,
    NOT_SENDABLE,
    Fault,
    _unremarkable,
    params_faults,
)

_MISSING = object()
_ANYTHING: list[Any] = [None, "", "x", 0, -1, 1, 2**40, True, False, 1.5, [], {}, ["x"], {"a": 1}]
# Each field: its valid values, then the others (drawn a fifth of the time).
_MODELS: tuple[list[Any], list[Any]] = (["claude-haiku-5-5"], _ANYTHING)
_MAX_TOKENS: tuple[list[Any], list[Any]] = ([1, 64, 100_000], _ANYTHING)
_ROLES: tuple[list[Any], list[Any]] = (["user", "assistant"], ["system", "User", *_ANYTHING])
_CONTENT: tuple[list[Any], list[Any]] = (
    ["hi", [{"type": "text", "text": "hi"}], []],
    [(), ("x",), *_ANYTHING],
)


def _draw(rng: random.Random, choices: tuple[list[Any], list[Any]]) -> Any:
    return rng.choice(choices[0] if rng.random() < 0.8 else choices[1])


class _Tuple(tuple[Any, ...]):
    pass


def _message(rng: random.Random) -> Any:
    if rng.random() < 0.05:
        return rng.choice(_ANYTHING)
    message: dict[str, Any] = {}
    for key, choices in (("role", _ROLES), ("content", _CONTENT)):
        if rng.random() < 0.95:
            message[key] = _draw(rng, choices)
    return message


def _params(rng: random.Random) -> Any:
    params: dict[str, Any] = {}
    for key, choices in (("model", _MODELS), ("max_tokens", _MAX_TOKENS)):
        if rng.random() < 0.95:
            params[key] = _draw(rng, choices)
    roll = rng.random()
    if roll < 0.9:
        messages: Any = [_message(rng) for _ in range(rng.randrange(4))]
        params["messages"] = _Tuple(messages) if rng.random() < 0.05 else messages
    elif roll < 0.95:
        params["messages"] = rng.choice(_ANYTHING)
    if rng.random() < 0.15:
        params[rng.choice(sorted(NOT_SENDABLE))] = rng.choice([False, True, None, 1])
    if rng.random() < 0.2:
        params[rng.choice(["temperature", "system", "metadata"])] = rng.choice(_ANYTHING)
    return params


def _checked(params: Any) -> list[Fault]:
    faults: list[Fault] = []
    for check in _ALL_CHECKS:
        check(params, (), faults)
    return faults


def test_the_one_call_test_passes_only_what_every_check_passes() -> None:
    rng = random.Random(31)
    passed = faulted = 0
    for _ in range(20_000):
        params = _params(rng)
        faults = _checked(params)
        if _unremarkable(params):
            passed += 1
            assert faults == [], params
        assert params_faults(params) == faults, params
        faulted += bool(faults)
    # Both sides of the test were exercised, many times.
    assert passed > 1_000 and faulted > 5_000


def test_common_requests_take_the_one_call_test() -> None:
    params = {
        "model": "claude-haiku-5-5",
        "max_tokens": 64,
        "temperature": 0.2,
        "system": "Be brief.",
        "messages": [
            {"role": "user", "content": "What is 2 + 2?"},
            {"role": "assistant", "content": [{"type": "text", "text": "4"}]},
        ],
    }
    assert _unremarkable(params) and params_faults(params) == []
    assert not _unremarkable({**params, "stream": False})  # the checks judge it: fine too
    assert params_faults({**params, "stream": False}) == []
