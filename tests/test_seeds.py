"""The ``random_seed`` fixture: fresh and printed by default, replayed from the environment."""

from __future__ import annotations

import pytest

from tests.seeds import SEED_ENV, run_seed


def test_a_seed_from_the_environment_is_replayed_and_printed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(SEED_ENV, " 123456789 ")
    assert run_seed() == 123456789
    assert f"replay with {SEED_ENV}=123456789" in capsys.readouterr().out


def test_without_the_environment_each_seed_is_fresh_and_printed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(SEED_ENV, raising=False)
    seeds = {run_seed() for _ in range(8)}
    assert len(seeds) > 1
    out = capsys.readouterr().out
    assert all(f"random seed {seed} " in out for seed in seeds)


def test_a_seed_that_is_not_an_integer_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(SEED_ENV, "abc")
    with pytest.raises(ValueError, match=f"{SEED_ENV}='abc': the seed must be an integer"):
        run_seed()
