from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.api.fakes import AsyncDriver, Driver, FakeAPI, SyncDriver


@pytest.fixture(params=["sync", "async"])
def connect(request: pytest.FixtureRequest) -> Iterator[Callable[..., Driver]]:
    """``connect(api, **client_kwargs)``: a Client or an AsyncClient talking to ``api``."""
    made: list[Driver] = []
    cls = SyncDriver if request.param == "sync" else AsyncDriver

    def factory(api: FakeAPI, **kwargs: Any) -> Driver:
        driver = cls(api, **kwargs)
        made.append(driver)
        return driver

    yield factory
    for driver in made:
        driver.close()
