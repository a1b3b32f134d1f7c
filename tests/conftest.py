from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import Fleet
from tests.inprocess import App


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


def _attach_logs(request: pytest.FixtureRequest, f: Fleet) -> None:
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print("\n" + f.logs())


@pytest.fixture
def fleet(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Fleet]:
    """A fresh server of its own, no agents yet."""
    f = Fleet(tmp_path).start()
    try:
        yield f
    finally:
        _attach_logs(request, f)
        f.close()


@pytest.fixture(scope="module")
def shared_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """One server with three agents (env=test, role=web|web|db) for a module's tests
    that do not change the fleet."""
    f = Fleet(tmp_path_factory.mktemp("shared")).start()
    try:
        web = f.add_agents(2, tags={"env": "test", "role": "web"}, prefix="web")
        db = f.add_agents(1, tags={"env": "test", "role": "db"}, prefix="db")
        assert len(web + db) == 3
        yield f
    finally:
        f.close()


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    """The real app in this process, on a database of its own; no agents, no processes."""
    a = App(tmp_path).start()
    try:
        yield a
    finally:
        a.close()
