"""`Client`: one method per API operation, returning the schema models.

Each operation is written once, without I/O, in `fleetrun.sdk.fleet`,
`fleetrun.sdk.runcommands` and `fleetrun.sdk.admin` (see `fleetrun.sdk.wire`).
`Client` drives them with a blocking `httpx.Client` and
`fleetrun.sdk.asyncclient.AsyncClient` with an `httpx.AsyncClient`, so both have the
same methods, arguments, models, retries and errors."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import httpx
from pydantic import BaseModel

from fleetrun import __version__
from fleetrun.core.errors import ConnectionError_, ValidationError
from fleetrun.core.transport import plain_http_off_host
from fleetrun.schemas.events import Event
from fleetrun.sdk import admin, alarms, fleet, runcommands
from fleetrun.sdk import output as output_ops
from fleetrun.sdk.fleet import LONG_POLL_S as LONG_POLL_S
from fleetrun.sdk.fleet import build_targets as build_targets
from fleetrun.sdk.runcommands import RunCommandDefinition as RunCommandDefinition
from fleetrun.sdk.runcommands import run_command_body as run_command_body
from fleetrun.sdk.wire import (
    Call,
    EventFrames,
    Listing,
    Op,
    Sleep,
    Stream,
    answer,
    ca_context,
    clean,
    method_of,
    ndjson,
    paginate,
    raise_for,
    raw,
    unreachable,
)
from fleetrun.sdk.wire import Retry as Retry
from fleetrun.sdk.wire import retry_after_s as retry_after_s

P = ParamSpec("P")
T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


class Base:
    """What both clients share: where the server is, the token, the retry bounds.

    With no `server`, the server and the token are those the CLI would use:
    FLEETRUN_SERVER and FLEETRUN_TOKEN (and FLEETRUN_CA_FILE, FLEETRUN_INSECURE), else
    what `fleetrun login` saved, else the local default (`fleetrun.sdk.config`). A token
    given with no server is used with that server. Given a `server`, only what is
    passed counts: `Client(url, None)` has no credentials."""

    def __init__(
        self,
        server: str | None,
        token: str | None,
        *,
        timeout_s: float,
        verify: Any,
        insecure: bool,
        retries: int,
        backoff_s: float,
        max_wait_s: float,
        profile: str | None = None,
    ) -> None:
        if server is None:
            from fleetrun.sdk import config

            found = config.resolve(None, token, None, insecure, profile=profile)
            server, token, insecure = found.server, found.token, found.insecure
            if verify is True and found.ca_file:
                verify = found.ca_file
        if retries < 0 or backoff_s < 0 or max_wait_s < 0:
            raise ValidationError("retries, backoff_s and max_wait_s cannot be negative.")
        self.server = server.rstrip("/")
        if token and plain_http_off_host(self.server) and not insecure:
            raise ValidationError(
                f"{self.server} is plain HTTP to a host that is not this machine, so the API "
                "token would cross the network in clear: use https://, or allow it "
                "explicitly with --insecure or FLEETRUN_INSECURE=1 (SDK: insecure=True)."
            )
        self._headers = {"user-agent": f"fleetrun-sdk/{__version__}"}
        if token:
            self._headers["authorization"] = f"Bearer {token}"
        self._timeout_s = timeout_s
        self._timeout = httpx.Timeout(timeout_s)
        self._retry = Retry(retries=retries, backoff_s=backoff_s, max_wait_s=max_wait_s)
        # a CA file for a server with a private CA
        self._verify = ca_context(Path(verify)) if isinstance(verify, str | Path) else verify

    def _url(self, path: str) -> str:
        return self.server + path

    def _send_args(self, call: Call) -> dict[str, Any]:
        timeout = call.timeout_s if call.timeout_s is not None else self._timeout
        return {
            "json": call.json,
            "params": clean(call.params),
            "headers": self._headers,
            "timeout": timeout,
        }

    def _stream_args(self, stream: Stream) -> dict[str, Any]:
        if stream.read_timeout_s == -1:
            timeout = self._timeout
        else:
            timeout = httpx.Timeout(30, read=stream.read_timeout_s)
        return {
            "params": stream.params,
            "headers": {**self._headers, **stream.headers},
            "timeout": timeout,
        }


# -- the sync driver -----------------------------------------------------------------------


def call(op: Callable[P, Op[T]]) -> Callable[Concatenate[Client, P], T]:
    def method(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._run(op(*args, **kwargs))

    return method_of(op, method)


def collect(listing: Callable[P, Listing[M]]) -> Callable[Concatenate[Client, P], list[M]]:
    def method(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> list[M]:
        return self._run(paginate(listing(*args, **kwargs)))

    return method_of(listing, method)


def each(listing: Callable[P, Listing[M]]) -> Callable[Concatenate[Client, P], Iterator[M]]:
    """Every item, fetching the next page only when the items of this one are used."""

    def method(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> Iterator[M]:
        return self._each(listing(*args, **kwargs))

    return method_of(listing, method, listing.__name__.replace("list_", "iter_", 1))


class Client(Base):
    """The REST API, one method per operation.

    `Client()` with no arguments talks to the server and as the principal the CLI would:
    FLEETRUN_SERVER and FLEETRUN_TOKEN (and FLEETRUN_CA_FILE, FLEETRUN_INSECURE), else
    what `fleetrun login` saved, else the local default (`fleetrun.sdk.config`). A token
    given with no server is used with that server. Given a `server`, only what is
    passed counts: `Client(url, None)` has no credentials.

    A 429 (over a rate limit) or a 503 (unavailable) is tried again, up to `retries`
    times: after the answer's Retry-After when it has one, else after a backoff that
    doubles from `backoff_s` with jitter; never waiting more than `max_wait_s` for one
    try (a longer Retry-After is raised at once as the error it is).

    `http` is the transport seam: an `httpx.Client` to send every request through (for
    example Starlette's `TestClient` around an app in the same process, or a client with
    a transport of your own). The caller owns it; `close()` leaves it open. Without it
    the SDK makes its own client for `server`.

    `fleetrun.sdk.AsyncClient` has the same methods, as coroutines (and async
    iterators)."""

    def __init__(
        self,
        server: str | None = None,
        token: str | None = None,
        *,
        timeout_s: float = 30.0,
        verify: Any = True,
        http: httpx.Client | None = None,
        insecure: bool = False,
        retries: int = 3,
        backoff_s: float = 0.5,
        max_wait_s: float = 30.0,
        profile: str | None = None,
    ) -> None:
        """`insecure=True` allows sending the token over plain http:// to a host that is
        not this machine; without it such a client is refused (ValidationError). Without
        `server`, the CLI's settings are read (fleetrun.sdk.config), from the login
        file's profile `profile` when named."""
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
            http = httpx.Client(base_url=self.server, timeout=timeout_s, verify=self._verify)
        self._http = http

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing -----------------------------------------------------------------

    def _run(self, op: Op[T]) -> T:
        """Drive an operation: send each request it yields, hand it each answer."""
        try:
            effect = next(op)
            while True:
                if isinstance(effect, Sleep):
                    time.sleep(effect.seconds)
                    effect = op.send(None)
                else:
                    effect = op.send(self._send(effect))
        except StopIteration as stop:
            result: T = stop.value
            return result

    def _send(self, call: Call) -> Any:
        attempt = 0
        while True:
            try:
                response = self._http.request(
                    call.method, self._url(call.path), **self._send_args(call)
                )
            except httpx.TransportError as exc:
                raise unreachable(self.server, exc) from exc
            attempt += 1
            wait_s = self._retry.wait_s(response, attempt)
            if wait_s is None:
                return answer(response)
            time.sleep(wait_s)

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        timeout_s: float | None = None,
    ) -> Any:
        """One request to any path of the API; its JSON answer (retried as the rest)."""
        return self._run(raw(Call(method, path, json, params, timeout_s)))

    def _each(self, listing: Listing[M]) -> Iterator[M]:
        params = dict(listing.params)
        while True:
            page = self.request("GET", listing.path, params=params)
            for item in page["items"]:
                yield listing.model.model_validate(item)
            if not page.get("next_cursor"):
                return
            params["cursor"] = page["next_cursor"]

    @contextlib.contextmanager
    def _open(self, stream: Stream) -> Iterator[httpx.Response]:
        try:
            with self._http.stream(
                "GET", self._url(stream.path), **self._stream_args(stream)
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    raise_for(response)
                yield response
        except httpx.TransportError as exc:
            raise unreachable(self.server, exc) from exc

    def _chunks(self, stream: Stream) -> Iterator[bytes]:
        with self._open(stream) as response:
            yield from response.iter_bytes()

    def _objects(self, stream: Stream) -> Iterator[dict[str, Any]]:
        with self._open(stream) as response:
            for line in response.iter_lines():
                found = ndjson(line)
                if found is not None:
                    yield found

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

    def iter_output(
        self,
        command_id: str,
        node_id: str,
        stream: str = "stdout",
        *,
        step: int | None = None,
        start: int | None = None,
        end: int | None = None,
        follow: bool = False,
    ) -> Iterator[bytes]:
        """The full stream as it is stored, in chunks (`start`/`end`: a byte range).
        With `follow`, the chunks as they are stored, from `start`, until the invocation
        has ended: a lost connection is resumed where it stopped, each byte once."""
        if follow:
            output_ops.check_follow(step, end)
            return self._follow(output_ops.Follow(command_id, node_id, stream, start or 0))
        where = fleet.iter_output(command_id, node_id, stream, step=step, start=start, end=end)
        return self._chunks(where)

    def _follow(self, follow: output_ops.Follow) -> Iterator[bytes]:
        while True:
            try:
                with self._open(follow.request()) as response:
                    for line in response.iter_lines():
                        data = follow.feed(line)
                        if data:
                            yield data
                        if follow.ended:
                            return
            except ConnectionError_:
                wait_s = follow.lost()
                if wait_s is None:
                    raise
                time.sleep(wait_s)

    search_output = call(output_ops.search_output)

    def get_output(self, command_id: str, node_id: str, stream: str = "stdout", **kw: Any) -> bytes:
        return b"".join(self.iter_output(command_id, node_id, stream, **kw))

    def export_audit_records(self, *, since: datetime | None = None) -> Iterator[dict[str, Any]]:
        """Every record, oldest first, as the JSON objects of the export; the last object
        is the signed head the export was cut at (`{"head": {...}}`, see
        `fleetrun.core.audit.verify_export`)."""
        return self._objects(admin.export_audit_records(since=since))

    def stream_events(
        self,
        *,
        pattern: Mapping[str, Any] | None = None,
        after: int | None = None,
        on_open: Callable[[], None] | None = None,
    ) -> Iterator[Event]:
        """Events as they happen (server-sent events), those matching `pattern` only;
        from the sequence number `after` when given, else from now. `on_open` is called
        once the server has accepted the stream, before any event. The iterator ends
        when the server ends the stream (it is stopping): reconnect with `after` set to
        the last event's `seq` to miss nothing."""
        with self._open(admin.stream_events(pattern=pattern, after=after)) as response:
            if on_open is not None:
                on_open()
            frames = EventFrames()
            for line in response.iter_lines():
                event = frames.feed(line)
                if event is not None:
                    yield event
