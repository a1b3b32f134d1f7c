"""`AsyncClient`: the same methods as `Client` (names, arguments, models, errors,
retries), as coroutines, on an `httpx.AsyncClient`; listings and streams are async
iterators. The operations are the same code as `Client`'s (`fleetrun.sdk.wire`): only
the driver differs.

    async with AsyncClient() as client:
        command = await client.send_command(script="uptime", tags={"env": "prod"})
        command = await client.wait(command.id)
        async for inv in client.iter_invocations(command.id):
            print(inv.node_name, inv.status)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, Concatenate, ParamSpec, TypeVar

import httpx
from pydantic import BaseModel

from fleetrun.core.errors import ConnectionError_
from fleetrun.schemas.events import Event
from fleetrun.sdk import admin, alarms, fleet, runcommands
from fleetrun.sdk import output as output_ops
from fleetrun.sdk.client import Base
from fleetrun.sdk.wire import (
    Call,
    EventFrames,
    Listing,
    Op,
    Sleep,
    Stream,
    answer,
    method_of,
    ndjson,
    paginate,
    raise_for,
    raw,
    unreachable,
)

P = ParamSpec("P")
T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


def call(op: Callable[P, Op[T]]) -> Callable[Concatenate[AsyncClient, P], Awaitable[T]]:
    async def method(self: AsyncClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._run(op(*args, **kwargs))

    return method_of(op, method)


def collect(
    listing: Callable[P, Listing[M]],
) -> Callable[Concatenate[AsyncClient, P], Awaitable[list[M]]]:
    async def method(self: AsyncClient, /, *args: P.args, **kwargs: P.kwargs) -> list[M]:
        return await self._run(paginate(listing(*args, **kwargs)))

    return method_of(listing, method)


def each(
    listing: Callable[P, Listing[M]],
) -> Callable[Concatenate[AsyncClient, P], AsyncIterator[M]]:
    """Every item, fetching the next page only when the items of this one are used."""

    def method(self: AsyncClient, /, *args: P.args, **kwargs: P.kwargs) -> AsyncIterator[M]:
        return self._each(listing(*args, **kwargs))

    return method_of(listing, method, listing.__name__.replace("list_", "iter_", 1))


class AsyncClient(Base):
    """The REST API, one coroutine per operation: `Client`'s methods, awaited.

    `AsyncClient()` with no arguments finds the server and the token as `Client()` and
    the CLI do; 429 and 503 are tried again as `Client` does (the waits are
    `asyncio.sleep`). `http` is the transport seam: an `httpx.AsyncClient` to send
    every request through (e.g. with `httpx.ASGITransport` around an app); the caller
    owns it and `aclose()` leaves it open. Use it as `async with AsyncClient() as c:`."""

    def __init__(
        self,
        server: str | None = None,
        token: str | None = None,
        *,
        timeout_s: float = 30.0,
        verify: Any = True,
        http: httpx.AsyncClient | None = None,
        insecure: bool = False,
        retries: int = 3,
        backoff_s: float = 0.5,
        max_wait_s: float = 30.0,
        profile: str | None = None,
    ) -> None:
        super().__init__(
            server,
            token,
            timeout_s=timeout_s,
            verify=verify,
            insecure=insecure,
            retries=retries,
            backoff_s=backoff_s,
            max_wait_s=max_wait_s,
            profile=profile,
        )
        self._owns_http = http is None
        if http is None:
            http = httpx.AsyncClient(base_url=self.server, timeout=timeout_s, verify=self._verify)
        self._http = http

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- plumbing -----------------------------------------------------------------

    async def _run(self, op: Op[T]) -> T:
        """Drive an operation: send each request it yields, hand it each answer."""
        try:
            effect = next(op)
            while True:
                if isinstance(effect, Sleep):
                    await asyncio.sleep(effect.seconds)
                    effect = op.send(None)
                else:
                    effect = op.send(await self._send(effect))
        except StopIteration as stop:
            result: T = stop.value
            return result

    async def _send(self, call: Call) -> Any:
        attempt = 0
        while True:
            try:
                response = await self._http.request(
                    call.method, self._url(call.path), **self._send_args(call)
                )
            except httpx.TransportError as exc:
                raise unreachable(self.server, exc) from exc
            attempt += 1
            wait_s = self._retry.wait_s(response, attempt)
            if wait_s is None:
                return answer(response)
            await asyncio.sleep(wait_s)

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        timeout_s: float | None = None,
    ) -> Any:
        """One request to any path of the API; its JSON answer (retried as the rest)."""
        return await self._run(raw(Call(method, path, json, params, timeout_s)))

    async def _each(self, listing: Listing[M]) -> AsyncIterator[M]:
        params = dict(listing.params)
        while True:
            page = await self.request("GET", listing.path, params=params)
            for item in page["items"]:
                yield listing.model.model_validate(item)
            if not page.get("next_cursor"):
                return
            params["cursor"] = page["next_cursor"]

    @contextlib.asynccontextmanager
    async def _open(self, stream: Stream) -> AsyncIterator[httpx.Response]:
        try:
            async with self._http.stream(
                "GET", self._url(stream.path), **self._stream_args(stream)
            ) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise_for(response)
                yield response
        except httpx.TransportError as exc:
            raise unreachable(self.server, exc) from exc

    # -- the operations (fleetrun.sdk.fleet, .runcommands, .admin) ------------------------

    create_activation = call(fleet.create_activation)
    list_activations = collect(fleet.list_activations)
    iter_activations = each(fleet.list_activations)
    delete_activation = call(fleet.delete_activation)
    delete_node = call(fleet.delete_node)
    list_nodes = collect(fleet.list_nodes)
    iter_nodes = each(fleet.list_nodes)
    get_node = call(fleet.get_node)
    tag_node = call(fleet.tag_node)
    send_command = call(fleet.send_command)
    resolve_targets = call(fleet.resolve_targets)
    seal_for = call(fleet.seal_for)
    get_command = call(fleet.get_command)
    cancel_command = call(fleet.cancel_command)
    list_commands_page = call(fleet.list_commands_page)
    list_commands = call(fleet.list_commands)
    list_invocations = collect(fleet.list_invocations)
    iter_invocations = each(fleet.list_invocations)
    list_invocations_page = call(fleet.list_invocations_page)
    get_invocation = call(fleet.get_invocation)
    wait = call(fleet.wait)
    create_document = call(fleet.create_document)
    update_document = call(fleet.update_document)
    list_documents = collect(fleet.list_documents)
    iter_documents = each(fleet.list_documents)
    get_document = call(fleet.get_document)
    set_default_version = call(fleet.set_default_version)
    sign_document = call(fleet.sign_document)
    delete_document = call(fleet.delete_document)
    create_group = call(fleet.create_group)
    update_group = call(fleet.update_group)
    list_groups = collect(fleet.list_groups)
    iter_groups = each(fleet.list_groups)
    get_group = call(fleet.get_group)
    delete_group = call(fleet.delete_group)
    put_run_command = call(runcommands.put_run_command)
    put_group_run_command = call(runcommands.put_group_run_command)
    get_group_run_command = call(runcommands.get_group_run_command)
    list_group_run_commands = collect(runcommands.list_group_run_commands)
    iter_group_run_commands = each(runcommands.list_group_run_commands)
    rerun_group_run_command = call(runcommands.rerun_group_run_command)
    delete_group_run_command = call(runcommands.delete_group_run_command)
    get_run_command = call(runcommands.get_run_command)
    list_run_commands = collect(runcommands.list_run_commands)
    iter_run_commands = each(runcommands.list_run_commands)
    delete_run_command = call(runcommands.delete_run_command)
    rerun_run_command = call(runcommands.rerun_run_command)
    list_run_command_runs = collect(runcommands.list_run_command_runs)
    iter_run_command_runs = each(runcommands.list_run_command_runs)
    wait_run_command = call(runcommands.wait_run_command)
    server_version = call(admin.server_version)
    whoami = call(admin.whoami)
    create_principal = call(admin.create_principal)
    list_principals = collect(admin.list_principals)
    iter_principals = each(admin.list_principals)
    get_principal = call(admin.get_principal)
    delete_principal = call(admin.delete_principal)
    attach = call(admin.attach)
    detach = call(admin.detach)
    simulate = call(admin.simulate)
    create_token = call(admin.create_token)
    list_tokens = collect(admin.list_tokens)
    iter_tokens = each(admin.list_tokens)
    revoke_token = call(admin.revoke_token)
    create_policy = call(admin.create_policy)
    put_policy = call(admin.put_policy)
    list_policies = collect(admin.list_policies)
    iter_policies = each(admin.list_policies)
    get_policy = call(admin.get_policy)
    delete_policy = call(admin.delete_policy)
    create_role = call(admin.create_role)
    put_role = call(admin.put_role)
    list_roles = collect(admin.list_roles)
    iter_roles = each(admin.list_roles)
    get_role = call(admin.get_role)
    delete_role = call(admin.delete_role)
    list_audit_records = call(admin.list_audit_records)
    iter_audit_records = each(admin.iter_audit_records)
    get_audit_key = call(admin.get_audit_key)
    verify_audit_log = call(admin.verify_audit_log)
    list_events = call(admin.list_events)
    create_rule = call(admin.create_rule)
    update_rule = call(admin.update_rule)
    list_rules = collect(admin.list_rules)
    iter_rules = each(admin.list_rules)
    get_rule = call(admin.get_rule)
    enable_rule = call(admin.enable_rule)
    disable_rule = call(admin.disable_rule)
    delete_rule = call(admin.delete_rule)
    list_rule_deliveries = call(admin.list_rule_deliveries)
    redrive_rule = call(admin.redrive_rule)
    create_channel = call(admin.create_channel)
    list_channels = collect(admin.list_channels)
    iter_channels = each(admin.list_channels)
    get_channel = call(admin.get_channel)
    list_channel_deliveries = call(admin.list_channel_deliveries)
    delete_channel = call(admin.delete_channel)
    create_alarm = call(alarms.create_alarm)
    list_alarms = collect(alarms.list_alarms)
    iter_alarms = each(alarms.list_alarms)
    get_alarm = call(alarms.get_alarm)
    get_alarm_history = call(alarms.get_alarm_history)
    delete_alarm = call(alarms.delete_alarm)
    list_forwarders = call(alarms.list_forwarders)

    # -- streams --------------------------------------------------------------------

    async def iter_output(
        self,
        command_id: str,
        node_id: str,
        stream: str = "stdout",
        *,
        step: int | None = None,
        start: int | None = None,
        end: int | None = None,
        follow: bool = False,
    ) -> AsyncIterator[bytes]:
        """The full stream as it is stored, in chunks (`start`/`end`: a byte range);
        with `follow`, as it is stored until the invocation ends (`Client.iter_output`)."""
        if follow:
            output_ops.check_follow(step, end)
            async for chunk in self._follow(
                output_ops.Follow(command_id, node_id, stream, start or 0)
            ):
                yield chunk
            return
        where = fleet.iter_output(command_id, node_id, stream, step=step, start=start, end=end)
        async with self._open(where) as response:
            async for chunk in response.aiter_bytes():
                yield chunk

    async def _follow(self, follow: output_ops.Follow) -> AsyncIterator[bytes]:
        while True:
            try:
                async with self._open(follow.request()) as response:
                    async for line in response.aiter_lines():
                        data = follow.feed(line)
                        if data:
                            yield data
                        if follow.ended:
                            return
            except ConnectionError_:
                wait_s = follow.lost()
                if wait_s is None:
                    raise
                await asyncio.sleep(wait_s)

    search_output = call(output_ops.search_output)

    async def get_output(
        self, command_id: str, node_id: str, stream: str = "stdout", **kw: Any
    ) -> bytes:
        return b"".join(
            [chunk async for chunk in self.iter_output(command_id, node_id, stream, **kw)]
        )

    async def export_audit_records(
        self, *, since: datetime | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Every record, oldest first, as the JSON objects of the export; the last object
        is the signed head the export was cut at (`{"head": {...}}`)."""
        async with self._open(admin.export_audit_records(since=since)) as response:
            async for line in response.aiter_lines():
                found = ndjson(line)
                if found is not None:
                    yield found

    async def stream_events(
        self,
        *,
        pattern: Mapping[str, Any] | None = None,
        after: int | None = None,
        on_open: Callable[[], None] | None = None,
    ) -> AsyncIterator[Event]:
        """Events as they happen (server-sent events), as `Client.stream_events`."""
        async with self._open(admin.stream_events(pattern=pattern, after=after)) as response:
            if on_open is not None:
                on_open()
            frames = EventFrames()
            async for line in response.aiter_lines():
                event = frames.feed(line)
                if event is not None:
                    yield event
