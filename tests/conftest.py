from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.harness import Fleet, free_port, wait_for
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


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[str]:
    """A real S3-compatible server (moto) on a loopback port, with one bucket, `logs`."""
    moto = shutil.which("moto_server", path=os.path.dirname(sys.executable))
    if moto is None:
        pytest.skip("moto[server] is not installed")
    port = free_port()
    with (tmp_path / "moto.log").open("wb") as log:
        proc = subprocess.Popen(
            [moto, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for(lambda: _up(url), what="the S3 server to start")
            assert httpx.put(f"{url}/logs").status_code == 200  # the bucket
            yield url
        finally:
            proc.terminate()
            proc.wait(10)


def _up(url: str) -> bool:
    try:
        httpx.get(url, timeout=1)
    except httpx.HTTPError:
        return False
    return True
