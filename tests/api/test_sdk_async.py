"""The SDK's `AsyncClient` against the real app in this process (through
`tests.inprocess.AppTransport`): the same operations, models and errors as `Client`,
listings and streams as async iterators, the same config resolution, and the same
retries of 429 (the real app's limiter) and 503 (a small real HTTP server)."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest

from fleetrun.core.errors import (
    AccessDeniedError,
    AuthenticationError,
    FleetrunError,
    LimitExceededError,
    NotFoundError,
    ValidationError,
)
from fleetrun.schemas.nodes import Node
from fleetrun.schemas.runcommands import RunCommand
from fleetrun.sdk import AsyncClient, Client
from fleetrun.sdk.config import Profile, write_file
from tests.api.test_sdk_client import Unavailable
from tests.inprocess import BASE_URL, App


@pytest.fixture
async def http(app):
    async with app.async_http() as client:
        yield client


@pytest.fixture
def no_settings(monkeypatch, tmp_path):
    for name in ("FLEETRUN_SERVER", "FLEETRUN_TOKEN", "FLEETRUN_CA_FILE", "FLEETRUN_INSECURE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FLEETRUN_CONFIG", str(tmp_path / "config.toml"))
    return tmp_path / "config.toml"


async def test_async_client_with_no_arguments_reads_the_environment_then_the_login_file(
    app, http, no_settings, monkeypatch
):
    write_file(Profile(server=BASE_URL, token=app.token), no_settings)
    async with AsyncClient(http=http) as client:
        assert client.server == BASE_URL
        assert (await client.whoami()).principal == "admin"
    app.client.create_principal("script")
    monkeypatch.setenv("FLEETRUN_SERVER", BASE_URL)
    monkeypatch.setenv("FLEETRUN_TOKEN", app.client.create_token("script").token)
    async with AsyncClient(http=http) as client:  # the environment wins over the file
        with pytest.raises(AccessDeniedError, match=r"^script may not"):
            await client.whoami()


async def test_the_main_operations_answer_what_the_sync_client_answers(app, http):
    """Nodes, tags, groups, documents, typed run commands, principals and rules: the
    same models, with the same content, from either client."""
    [node] = app.enrol(1)
    sync = app.client
    async with AsyncClient(BASE_URL, app.token, http=http) as client:
        got = await client.get_node(node.node_id)
        assert isinstance(got, Node) and got == sync.get_node(node.node_id)
        tagged = await client.tag_node(node.node_id, set={"role": "web"})
        assert tagged.tags["role"] == "web"
        assert [n.id for n in await client.list_nodes(tags={"role": "web"})] == [node.node_id]

        group = await client.create_group("web", tags={"role": "web"})
        assert group.members == sync.get_group("web").members == [node.node_id]
        await client.update_group("web", tags={"role": ["web", "edge"]}, description="edge")
        assert sync.get_group("web").description == "edge"

        doc = await client.create_document(
            "hello",
            "schemaVersion: '2.2'\nmainSteps:\n- action: runShellScript\n  name: s\n"
            "  inputs:\n    runCommand: [echo hi]\n",
        )
        assert doc == sync.get_document("hello")

        rc = await client.put_run_command(node.node_id, "ntp", script="timedatectl")
        assert isinstance(rc, RunCommand) and rc.source.script == "timedatectl"
        assert [r.name for r in await client.list_run_commands(node.node_id)] == ["ntp"]
        got_rc, sync_rc = (
            await client.get_run_command(node.node_id, "ntp"),
            sync.get_run_command(node.node_id, "ntp"),
        )  # its state moves on; what it is does not
        assert (got_rc.generation, got_rc.source) == (sync_rc.generation, sync_rc.source)

        await client.create_principal("ci", kind="service")
        token = await client.create_token("ci")
        assert [t.id for t in sync.list_tokens("ci")] == [token.id]

        rule = await client.create_rule(
            "r", pattern={"source": ["fleetrun"]}, targets=["redis:events"]
        )
        changed = await client.update_rule("r", description="now described")
        assert changed.description == "now described" and changed.created_at == rule.created_at
        assert sync.get_rule("r") == changed


async def test_listings_and_streams_are_async_iterators_that_follow_pages(app, http):
    """iter_audit_records fetches page after page (two records to a page here) and
    yields what the sync listing returns; the audit export streams line by line."""
    for index in range(5):
        app.client.create_principal(f"p{index}")  # some audit records to page through
    expected = [r.seq for r in app.client.list_audit_records(limit=1000)]
    async with AsyncClient(BASE_URL, app.token, http=http) as client:
        seen = [r.seq async for r in client.iter_audit_records(page_size=2)]
        # the async listing's own requests are audited too, after `expected` was read
        assert seen[-len(expected) :] == expected and len(expected) > 4
        exported = [o async for o in client.export_audit_records()]
    records, head = exported[:-1], exported[-1]
    assert records == list(app.client.export_audit_records())[: len(records)]  # the same log
    assert "head" in head and [r["seq"] for r in records] == sorted(r["seq"] for r in records)


async def test_errors_are_the_sdk_error_classes_with_their_sentence(app, http):
    async with AsyncClient(BASE_URL, app.token, http=http) as client:
        with pytest.raises(NotFoundError, match=r"n-00000000000000000"):
            await client.get_node("n-00000000000000000")
        with pytest.raises(ValidationError, match="empty"):  # refused before any request
            await client.send_command(script="  ", all_nodes=True)
        with pytest.raises(ValidationError, match="not both"):
            await client.attach("admin", policy="p", role="r")
    async with AsyncClient(BASE_URL, None, http=http) as anonymous:
        with pytest.raises(AuthenticationError):
            await anonymous.list_nodes()


async def test_an_unreachable_server_is_one_sentence():
    async with AsyncClient("http://127.0.0.1:9", None, retries=0) as client:
        with pytest.raises(FleetrunError, match="Cannot reach the fleetrun server"):
            await client.server_version()


# -- retries: the same as Client's ------------------------------------------------------


@pytest.fixture
def limited(tmp_path):
    a = App(tmp_path, rate_limit_per_s=1.0, rate_limit_burst=2).start()
    try:
        yield a
    finally:
        a.close()


def _script_token(app) -> str:
    app.client.create_principal("script")
    app.client.attach("script", role="Reader")
    return app.client.create_token("script").token


async def test_calls_over_the_rate_limit_wait_for_retry_after_and_succeed(limited):
    token = _script_token(limited)
    async with limited.async_http() as http, AsyncClient(BASE_URL, token, http=http) as client:
        for _ in range(5):  # a burst of 2 at 1 per second: the later calls get 429 first
            await client.list_nodes()
    statuses = [r.status for r in limited.client.list_audit_records(principal="script")]
    assert 429 in statuses and statuses.count(200) >= 5


async def test_without_retries_the_429_is_raised_with_its_retry_after(limited):
    token = _script_token(limited)
    async with limited.async_http() as http:
        client = AsyncClient(BASE_URL, token, http=http, retries=0)

        async def calls() -> None:
            for _ in range(5):
                await client.list_nodes()

        with pytest.raises(LimitExceededError) as caught:
            await calls()
    assert caught.value.retry_after_s is not None and caught.value.retry_after_s >= 1


@pytest.fixture
def unavailable(request):
    server = Unavailable(*request.param)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.mark.parametrize("unavailable", [(2, None), (2, "1")], indirect=True)
async def test_a_503_is_tried_again_after_retry_after_or_a_backoff(unavailable):
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with AsyncClient(unavailable.url, None, backoff_s=0.05) as client:
        assert await client.request("GET", "/anything") == {"ok": True}
    assert unavailable.answered == [503, 503, 200]
    if unavailable.retry_after == "1":  # two waits of the second it asked for
        assert loop.time() - started >= 2


@pytest.mark.parametrize("unavailable", [(100, None)], indirect=True)
async def test_retries_are_bounded_and_the_last_503_is_raised(unavailable):
    async with AsyncClient(unavailable.url, None, retries=2, backoff_s=0.01) as client:
        with pytest.raises(FleetrunError, match="503"):
            await client.request("GET", "/anything")
    assert unavailable.answered == [503, 503, 503]


@pytest.mark.parametrize("unavailable", [(1, "60")], indirect=True)
async def test_a_retry_after_longer_than_max_wait_s_is_raised_at_once(unavailable):
    async with AsyncClient(unavailable.url, None, max_wait_s=2) as client:
        with pytest.raises(FleetrunError, match="503"):
            await client.request("GET", "/anything")
    assert unavailable.answered == [503]


def test_both_clients_have_the_same_methods_with_the_same_signatures():
    """Each operation is written once; the two clients only drive it."""
    import inspect

    def public(cls):
        return {
            name: inspect.signature(member)
            for name, member in inspect.getmembers(cls, callable)
            if not name.startswith("_") and name not in ("close", "aclose")
        }

    sync, asynchronous = public(Client), public(AsyncClient)
    assert sync.keys() == asynchronous.keys()
    for name, signature in sync.items():
        assert list(signature.parameters) == list(asynchronous[name].parameters), name
    assert {"iter_nodes", "iter_audit_records", "update_rule"} <= sync.keys()


async def test_the_caller_owns_the_http_client_it_gives(app):
    async with app.async_http() as http:
        async with AsyncClient(BASE_URL, app.token, http=http) as client:
            await client.whoami()
        assert not http.is_closed  # still the caller's to use
        assert (await http.get("/version")).status_code == 200
    own = AsyncClient("http://127.0.0.1:9", None)
    await own.aclose()
    assert own._http.is_closed
    assert isinstance(own._http, httpx.AsyncClient)
