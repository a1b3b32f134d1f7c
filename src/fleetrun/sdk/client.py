"""`Client`: one method per API operation, returning the schema models."""

from __future__ import annotations

import json as jsonlib
import random
import ssl
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from fleetrun import __version__
from fleetrun.core import sealing
from fleetrun.core.errors import (
    ConnectionError_,
    LimitExceededError,
    ValidationError,
    error_for,
)
from fleetrun.core.runcommands import FINISHED
from fleetrun.core.targets import Target
from fleetrun.core.transport import plain_http_off_host
from fleetrun.schemas.access import (
    Identity,
    Policy,
    PolicyCreate,
    PolicyPut,
    Principal,
    PrincipalCreate,
    Role,
    RoleCreate,
    RolePut,
    SimulateRequest,
    SimulateResult,
    Token,
    TokenCreate,
    TokenCreated,
)
from fleetrun.schemas.activations import Activation, ActivationCreate, ActivationCreated
from fleetrun.schemas.audit import AuditKey, AuditRecord, AuditVerdict
from fleetrun.schemas.base import Page, ServerVersion, build
from fleetrun.schemas.commands import (
    Command,
    CommandCreate,
    Invocation,
    ResolvedNode,
    SealedParameters,
)
from fleetrun.schemas.documents import (
    Document,
    DocumentCreate,
    DocumentSignature,
    DocumentSummary,
    DocumentUpdate,
)
from fleetrun.schemas.events import (
    Channel,
    ChannelCreate,
    Delivery,
    Event,
    Notification,
    Redriven,
    Rule,
    RuleCreate,
    RuleTargetCreate,
)
from fleetrun.schemas.groups import Group, GroupCreate, GroupUpdate
from fleetrun.schemas.nodes import Node, NodeTagsUpdate
from fleetrun.schemas.runcommands import (
    GroupRunCommand,
    RunCommand,
    RunCommandPut,
    RunCommandRun,
)

M = TypeVar("M", bound=BaseModel)

LONG_POLL_S = 20.0


def build_targets(
    *,
    node_ids: Sequence[str] | None = None,
    tags: Mapping[str, str | Sequence[str]] | None = None,
    targets: Sequence[Target] | None = None,
    group: str | None = None,
    all_nodes: bool = False,
) -> list[Target]:
    """Targets from the usual shorthands: ids, tags (values of one key ORed), a group,
    all."""
    out: list[Target] = list(targets or [])
    if node_ids:
        out.append(Target(key="NodeIds", values=list(node_ids)))
    if group:
        out.append(Target(key="group", values=[group]))
    for key, value in (tags or {}).items():
        values = [value] if isinstance(value, str) else list(value)
        out.append(Target(key=f"tag:{key}", values=values))
    if all_nodes:
        out.append(Target(key="all", values=["*"]))
    return out


def run_command_body(
    *,
    script: str | None = None,
    script_uri: str | None = None,
    script_sha256: str | None = None,
    document: str | None = None,
    document_version: str | None = None,
    parameters: Mapping[str, str] | None = None,
    arguments: Sequence[str] = (),
    protected_parameters: Mapping[str, str] | None = None,
    protected_arguments: Sequence[str] = (),
    run_as_user: str | None = None,
    run_as_password: str | None = None,
    timeout_s: int | None = None,
    async_execution: bool = False,
    treat_failure_as_deployment_failure: bool = False,
    output_uri: str | None = None,
    error_uri: str | None = None,
    run_after: Sequence[str] = (),
) -> dict[str, Any]:
    """The PUT body of a run command, checked here as the server would."""

    def params(named: Mapping[str, str] | None, nameless: Sequence[str]) -> list[Any]:
        pairs = [{"name": k, "value": v} for k, v in (named or {}).items()]
        return pairs + [{"name": "", "value": v} for v in nameless]

    body = build(
        RunCommandPut,
        source={
            "script": script,
            "scriptUri": script_uri,
            "scriptSha256": script_sha256,
            "documentName": document,
            "documentVersion": document_version,
        },
        parameters=params(parameters, arguments),
        protectedParameters=params(protected_parameters, protected_arguments),
        runAsUser=run_as_user,
        runAsPassword=run_as_password,
        timeoutInSeconds=timeout_s,
        asyncExecution=async_execution,
        treatFailureAsDeploymentFailure=treat_failure_as_deployment_failure,
        outputUri=output_uri,
        errorUri=error_uri,
        runAfter=list(run_after),
    )
    return body.model_dump(mode="json", exclude_none=True)


class Client:
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
    the SDK makes its own client for `server`."""

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
        self._timeout = httpx.Timeout(timeout_s)
        self._retry = Retry(retries=retries, backoff_s=backoff_s, max_wait_s=max_wait_s)
        self._owns_http = http is None
        if http is None:
            if isinstance(verify, str | Path):  # a CA file for a server with a private CA
                verify = _ca_context(Path(verify))
            http = httpx.Client(base_url=self.server, timeout=timeout_s, verify=verify)
        self._http = http

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _url(self, path: str) -> str:
        return self.server + path

    # -- plumbing -----------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        timeout_s: float | None = None,
    ) -> Any:
        attempt = 0
        while True:
            try:
                response = self._http.request(
                    method,
                    self._url(path),
                    json=json,
                    params=_clean(params),
                    headers=self._headers,
                    timeout=timeout_s if timeout_s is not None else self._timeout,
                )
            except httpx.TransportError as exc:
                raise _unreachable(self.server, exc) from exc
            attempt += 1
            wait_s = self._retry.wait_s(response, attempt)
            if wait_s is None:
                break
            time.sleep(wait_s)
        _raise_for(response)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def _model(self, model: type[M], method: str, path: str, **kw: Any) -> M:
        return model.model_validate(self.request(method, path, **kw))

    def _items(
        self, model: type[M], path: str, params: Mapping[str, Any] | None = None
    ) -> Iterator[M]:
        """Every item of a paged listing, following cursors."""
        params = dict(params or {})
        while True:
            page = self.request("GET", path, params=params)
            for item in page["items"]:
                yield model.model_validate(item)
            if not page.get("next_cursor"):
                return
            params["cursor"] = page["next_cursor"]

    # -- activations --------------------------------------------------------------

    def create_activation(
        self,
        *,
        name: str | None = None,
        tags: Mapping[str, str] | None = None,
        registration_limit: int = 1,
        expires_in_s: float = 24 * 3600,
        description: str | None = None,
    ) -> ActivationCreated:
        body = build(
            ActivationCreate,
            name=name,
            tags=dict(tags or {}),
            registration_limit=registration_limit,
            expires_in_s=expires_in_s,
            description=description,
        )
        return self._model(ActivationCreated, "POST", "/v1/activations", json=body.model_dump())

    def list_activations(self) -> list[Activation]:
        return list(self._items(Activation, "/v1/activations"))

    def delete_activation(self, activation_id: str) -> None:
        self.request("DELETE", _path("activations", activation_id))

    # -- nodes ----------------------------------------------------------------------

    def delete_node(self, node_id: str) -> None:
        """Deregister a node: its agent can no longer connect; unfinished work ends
        Undeliverable."""
        self.request("DELETE", _path("nodes", node_id))

    def list_nodes(
        self, *, tags: Mapping[str, str] | None = None, ping_status: str | None = None
    ) -> list[Node]:
        params = {"tag": [f"{k}={v}" for k, v in (tags or {}).items()], "ping_status": ping_status}
        return list(self._items(Node, "/v1/nodes", params))

    def get_node(self, node_id: str) -> Node:
        return self._model(Node, "GET", _path("nodes", node_id))

    def tag_node(
        self,
        node_id: str,
        *,
        set: Mapping[str, str] | None = None,
        remove: Sequence[str] = (),
    ) -> Node:
        """Set tags (add or change) and remove tag keys; the node's other tags stay.
        Groups that follow tags, and targets, see the change at once."""
        body = build(NodeTagsUpdate, set=dict(set or {}), remove=list(remove))
        return self._model(Node, "PATCH", _path("nodes", node_id, "tags"), json=body.model_dump())

    # -- commands -------------------------------------------------------------------

    def send_command(
        self,
        *,
        script: str | None = None,
        document: str = "RunShellScript",
        document_version: str | None = None,
        parameters: Mapping[str, str | Sequence[str]] | None = None,
        arguments: Sequence[str] = (),
        node_ids: Sequence[str] | None = None,
        tags: Mapping[str, str | Sequence[str]] | None = None,
        targets: Sequence[Target] | None = None,
        group: str | None = None,
        all_nodes: bool = False,
        timeout_s: int | None = None,
        delivery_timeout_s: int | None = None,
        max_concurrency: str | int | None = None,
        max_errors: str | int | None = None,
        run_as: str | None = None,
        comment: str | None = None,
        secret_parameters: Mapping[str, str] | None = None,
        secret_arguments: Sequence[str] = (),
        notification: Notification | Mapping[str, Any] | None = None,
    ) -> Command:
        """Send a command. `script` is the shorthand for RunShellScript's `commands`;
        `timeout_s` is the execution timeout per node.

        `secret_parameters` (environment variables) and `secret_arguments` (positional)
        are sealed here, on this machine, to each target node's key: the server only
        ever holds ciphertext, and the agent masks the values as *** in the output."""
        params = {k: [v] if isinstance(v, str) else list(v) for k, v in (parameters or {}).items()}
        if script is not None:
            if not script.strip():
                raise ValidationError("The script is empty: give the commands to run.")
            params["commands"] = [script]
        body = build(
            CommandCreate,
            document_name=document,
            document_version=document_version,
            parameters=params,
            arguments=list(arguments),
            targets=build_targets(
                node_ids=node_ids, tags=tags, targets=targets, group=group, all_nodes=all_nodes
            ),
            comment=comment,
            execution_timeout_s=timeout_s,
            delivery_timeout_s=delivery_timeout_s,
            max_concurrency=None if max_concurrency is None else str(max_concurrency),
            max_errors=None if max_errors is None else str(max_errors),
            run_as=run_as,
            notification=notification,
        )
        if secret_parameters or secret_arguments:
            sealed = self.seal_for(
                body.targets, dict(secret_parameters or {}), list(secret_arguments)
            )
            body = body.model_copy(update={"secret_parameters": sealed})
        return self._model(
            Command, "POST", "/v1/commands", json=body.model_dump(mode="json", exclude_none=True)
        )

    def resolve_targets(self, targets: Sequence[Target]) -> list[ResolvedNode]:
        """The nodes targets select now, with the keys to seal secrets to them."""
        body = {"targets": [t.model_dump() for t in targets]}
        return [
            ResolvedNode.model_validate(n)
            for n in self.request("POST", "/v1/targets/resolve", json=body)
        ]

    def seal_for(
        self, targets: Sequence[Target], env: dict[str, str], args: list[str]
    ) -> dict[str, SealedParameters]:
        """Seal secrets for every node the targets select, each to its own key."""
        sealed: dict[str, SealedParameters] = {}
        for node in self.resolve_targets(targets):
            if not node.seal_public_key:
                raise ValidationError(
                    f"Node {node.id} has no sealing key (its agent registered before secrets "
                    "existed): register it again to send it secrets."
                )
            key = node.seal_public_key
            sealed[node.id] = SealedParameters(
                env={
                    name: sealing.seal(key, value.encode(), context=f"{node.id}:{name}".encode())
                    for name, value in env.items()
                },
                args=[
                    sealing.seal(key, value.encode(), context=f"{node.id}:arg:{index}".encode())
                    for index, value in enumerate(args)
                ],
            )
        return sealed

    def get_command(
        self, command_id: str, *, wait_s: float = 0, version: int | None = None
    ) -> Command:
        return self._model(
            Command,
            "GET",
            _path("commands", command_id),
            params={"wait_s": wait_s or None, "version": version},
            timeout_s=wait_s + 30 if wait_s else None,
        )

    def cancel_command(self, command_id: str, node_ids: Sequence[str] | None = None) -> Command:
        """Not started: Cancelled at once; running: Cancelling until the agent confirms."""
        body = {"node_ids": list(node_ids)} if node_ids else None
        return self._model(Command, "POST", _path("commands", command_id, "cancel"), json=body)

    def list_commands_page(
        self,
        *,
        status: str | None = None,
        document: str | None = None,
        node_id: str | None = None,
        tags: Mapping[str, str] | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[Command]:
        """One page of commands, newest first, and the cursor of the next."""
        params = {
            "status": status,
            "document": document,
            "node": node_id,
            "tag": [f"{k}={v}" for k, v in (tags or {}).items()],
            "since": since,
            "until": until,
            "limit": limit,
            "cursor": cursor,
        }
        return Page[Command].model_validate(self.request("GET", "/v1/commands", params=params))

    def list_commands(
        self, *, status: str | None = None, limit: int = 50, **filters: Any
    ) -> list[Command]:
        return self.list_commands_page(status=status, limit=limit, **filters).items

    def list_invocations(
        self,
        command_id: str,
        *,
        status: str | None = None,
        node_id: str | None = None,
        details: bool = False,
    ) -> list[Invocation]:
        """Every invocation of a command (following pages); with `details`, their steps
        and output tails."""
        params = {"status": status, "node": node_id, "details": "true" if details else None}
        return list(self._items(Invocation, _path("commands", command_id, "invocations"), params))

    def list_invocations_page(
        self,
        *,
        command_id: str | None = None,
        node_id: str | None = None,
        status: str | None = None,
        tags: Mapping[str, str] | None = None,
        since: str | None = None,
        until: str | None = None,
        details: bool = False,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page[Invocation]:
        """One page of invocations across commands (newest first), or of one command."""
        params = {
            "command": command_id,
            "node": node_id,
            "status": status,
            "tag": [f"{k}={v}" for k, v in (tags or {}).items()],
            "since": since,
            "until": until,
            "details": "true" if details else None,
            "limit": limit,
            "cursor": cursor,
        }
        return Page[Invocation].model_validate(
            self.request("GET", "/v1/invocations", params=params)
        )

    def get_invocation(self, command_id: str, node_id: str) -> Invocation:
        return self._model(Invocation, "GET", _path("commands", command_id, "invocations", node_id))

    def iter_output(
        self,
        command_id: str,
        node_id: str,
        stream: str = "stdout",
        *,
        step: int | None = None,
        start: int | None = None,
        end: int | None = None,
    ) -> Iterator[bytes]:
        """The full stream as it is stored, in chunks (`start`/`end`: a byte range)."""
        headers = dict(self._headers)
        if start is not None or end is not None:
            headers["range"] = f"bytes={start or 0}-{'' if end is None else end - 1}"
        path = _path("commands", command_id, "invocations", node_id, "output")
        try:
            with self._http.stream(
                "GET",
                self._url(path),
                params=_clean({"stream": stream, "step": step}),
                headers=headers,
                timeout=self._timeout,
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    _raise_for(response)
                yield from response.iter_bytes()
        except httpx.TransportError as exc:
            raise _unreachable(self.server, exc) from exc

    def get_output(self, command_id: str, node_id: str, stream: str = "stdout", **kw: Any) -> bytes:
        return b"".join(self.iter_output(command_id, node_id, stream, **kw))

    # -- documents ------------------------------------------------------------------

    def create_document(self, name: str, content: str) -> Document:
        """Create a document from YAML or JSON text."""
        body = build(DocumentCreate, name=name, content=content).model_dump()
        return self._model(Document, "POST", "/v1/documents", json=body)

    def update_document(self, name: str, content: str) -> Document:
        """Add a version; the default version does not change."""
        body = build(DocumentUpdate, content=content).model_dump()
        return self._model(Document, "PUT", _path("documents", name), json=body)

    def list_documents(self) -> list[DocumentSummary]:
        return list(self._items(DocumentSummary, "/v1/documents"))

    def get_document(self, name: str, version: str | None = None) -> Document:
        return self._model(Document, "GET", _path("documents", name), params={"version": version})

    def set_default_version(self, name: str, version: str | int) -> Document:
        body = {"version": str(version)}
        return self._model(Document, "PUT", _path("documents", name, "default-version"), json=body)

    def sign_document(
        self, name: str, version: str, *, publisher: str, public_key: str, signature: str
    ) -> Document:
        """Attach a signature made with `fleetrun.core.signing.sign`."""
        body = build(
            DocumentSignature,
            version=str(version),
            publisher=publisher,
            public_key=public_key,
            signature=signature,
        ).model_dump()
        return self._model(Document, "POST", _path("documents", name, "signatures"), json=body)

    def delete_document(self, name: str) -> None:
        self.request("DELETE", _path("documents", name))

    # -- groups ---------------------------------------------------------------------

    def create_group(
        self,
        name: str,
        *,
        node_ids: Sequence[str] | None = None,
        tags: Mapping[str, str | Sequence[str]] | None = None,
        description: str | None = None,
    ) -> Group:
        """A group of fixed nodes, or of every node matching tags (now and later)."""
        tag_lists = None
        if tags is not None:
            tag_lists = {k: [v] if isinstance(v, str) else list(v) for k, v in tags.items()}
        body = build(
            GroupCreate,
            name=name,
            description=description,
            node_ids=list(node_ids) if node_ids is not None else None,
            tags=tag_lists,
        )
        return self._model(Group, "POST", "/v1/groups", json=body.model_dump())

    def update_group(
        self,
        name: str,
        *,
        node_ids: Sequence[str] | None = None,
        tags: Mapping[str, str | Sequence[str]] | None = None,
        description: str | None = None,
    ) -> Group:
        """New members (a list of nodes, or tag filters) for an existing group; the
        description changes when given. Its run commands go to the nodes that join."""
        tag_lists = None
        if tags is not None:
            tag_lists = {k: [v] if isinstance(v, str) else list(v) for k, v in tags.items()}
        body = build(
            GroupUpdate,
            description=description,
            node_ids=list(node_ids) if node_ids is not None else None,
            tags=tag_lists,
        )
        return self._model(Group, "PUT", _path("groups", name), json=body.model_dump())

    def list_groups(self) -> list[Group]:
        return list(self._items(Group, "/v1/groups"))

    def get_group(self, name: str) -> Group:
        return self._model(Group, "GET", _path("groups", name))

    def delete_group(self, name: str) -> None:
        self.request("DELETE", _path("groups", name))

    def wait(
        self,
        command_id: str,
        *,
        timeout_s: float | None = None,
        on_update: Callable[[Command], None] | None = None,
    ) -> Command:
        """Block until the command is finished (or `timeout_s` passes) and return it.
        `on_update` sees every new version on the way."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        command = self.get_command(command_id)
        if on_update:
            on_update(command)
        while not command.done:
            remaining = LONG_POLL_S if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                break
            latest = self.get_command(
                command_id, wait_s=min(LONG_POLL_S, remaining), version=command.version
            )
            if latest.version != command.version and on_update:
                on_update(latest)
            command = latest
        return command

    # -- run commands -----------------------------------------------------------------

    def put_run_command(self, node_id: str, name: str, **definition: Any) -> RunCommand:
        """Create or update a run command on a node, and run it (an identical body runs
        nothing). See `run_command_body` for the definition's keywords: named parameters
        become environment variables, arguments positional ones (public before
        protected); protected values are sealed to the node's key by the server and
        never returned."""
        return self._model(
            RunCommand,
            "PUT",
            _path("nodes", node_id, "run-commands", name),
            json=run_command_body(**definition),
        )

    def put_group_run_command(self, group: str, name: str, **definition: Any) -> GroupRunCommand:
        """Put a run command on every member of a node group (and on nodes that join it
        later)."""
        return self._model(
            GroupRunCommand,
            "PUT",
            _path("groups", group, "run-commands", name),
            json=run_command_body(**definition),
        )

    def get_group_run_command(self, group: str, name: str) -> GroupRunCommand:
        return self._model(
            GroupRunCommand,
            "GET",
            _path("groups", group, "run-commands", name),
        )

    def list_group_run_commands(self, group: str) -> list[GroupRunCommand]:
        return list(self._items(GroupRunCommand, _path("groups", group, "run-commands")))

    def rerun_group_run_command(self, group: str, name: str) -> GroupRunCommand:
        return self._model(
            GroupRunCommand,
            "POST",
            _path("groups", group, "run-commands", name, "run"),
        )

    def delete_group_run_command(self, group: str, name: str) -> GroupRunCommand:
        return self._model(
            GroupRunCommand,
            "DELETE",
            _path("groups", group, "run-commands", name),
        )

    def get_run_command(self, node_id: str, name: str) -> RunCommand:
        return self._model(RunCommand, "GET", _path("nodes", node_id, "run-commands", name))

    def list_run_commands(self, node_id: str) -> list[RunCommand]:
        return list(self._items(RunCommand, _path("nodes", node_id, "run-commands")))

    def delete_run_command(self, node_id: str, name: str) -> RunCommand:
        return self._model(RunCommand, "DELETE", _path("nodes", node_id, "run-commands", name))

    def rerun_run_command(self, node_id: str, name: str) -> RunCommand:
        return self._model(RunCommand, "POST", _path("nodes", node_id, "run-commands", name, "run"))

    def list_run_command_runs(self, node_id: str, name: str) -> list[RunCommandRun]:
        return list(
            self._items(RunCommandRun, _path("nodes", node_id, "run-commands", name, "runs"))
        )

    def wait_run_command(
        self,
        node_id: str,
        name: str,
        *,
        timeout_s: float | None = None,
        until: Callable[[RunCommand], bool] | None = None,
        on_update: Callable[[RunCommand], None] | None = None,
        poll_s: float = 0.5,
    ) -> RunCommand:
        """Poll until `until` holds (default: the current run has finished)."""
        done = until or (lambda rc: rc.instanceView.executionState in FINISHED)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            rc = self.get_run_command(node_id, name)
            if on_update:
                on_update(rc)
            if done(rc) or (deadline is not None and time.monotonic() >= deadline):
                return rc
            time.sleep(poll_s)

    # -- access control ---------------------------------------------------------------

    def server_version(self) -> ServerVersion:
        """The server's release and agent protocols (needs no token)."""
        return self._model(ServerVersion, "GET", "/version")

    def whoami(self) -> Identity:
        return self._model(Identity, "GET", "/v1/whoami")

    def create_principal(
        self, name: str, *, kind: str = "user", description: str | None = None
    ) -> Principal:
        body = build(PrincipalCreate, name=name, kind=kind, description=description)
        return self._model(Principal, "POST", "/v1/principals", json=body.model_dump())

    def list_principals(self) -> list[Principal]:
        return list(self._items(Principal, "/v1/principals"))

    def get_principal(self, name: str) -> Principal:
        return self._model(Principal, "GET", _path("principals", name))

    def delete_principal(self, name: str) -> None:
        self.request("DELETE", _path("principals", name))

    def attach(
        self, principal: str, *, policy: str | None = None, role: str | None = None
    ) -> Principal:
        """Attach a policy or a role to a principal."""
        kind, name = _one_of(policy, role)
        path = _path("principals", principal, kind, name)
        return self._model(Principal, "PUT", path)

    def detach(
        self, principal: str, *, policy: str | None = None, role: str | None = None
    ) -> Principal:
        kind, name = _one_of(policy, role)
        path = _path("principals", principal, kind, name)
        return self._model(Principal, "DELETE", path)

    def simulate(
        self,
        principal: str,
        action: str,
        resource: str = "*",
        context: Mapping[str, str | Sequence[str]] | None = None,
    ) -> SimulateResult:
        """Would `principal` be allowed ACTION on RESOURCE with this context?"""
        values = {k: v if isinstance(v, str) else list(v) for k, v in (context or {}).items()}
        body = build(SimulateRequest, action=action, resource=resource, context=values)
        path = _path("principals", principal, "simulate")
        return self._model(SimulateResult, "POST", path, json=body.model_dump())

    def create_token(
        self,
        principal: str,
        *,
        expires_in_s: float | None = None,
        description: str | None = None,
    ) -> TokenCreated:
        """A new API token of `principal`; its secret (`.token`) is shown only here."""
        body = build(
            TokenCreate, principal=principal, expires_in_s=expires_in_s, description=description
        )
        return self._model(TokenCreated, "POST", "/v1/tokens", json=body.model_dump())

    def list_tokens(self, principal: str | None = None) -> list[Token]:
        return list(self._items(Token, "/v1/tokens", {"principal": principal}))

    def revoke_token(self, token_id: str) -> Token:
        return self._model(Token, "DELETE", _path("tokens", token_id))

    def create_policy(
        self, name: str, document: str | Mapping[str, Any], *, description: str | None = None
    ) -> Policy:
        """Create a policy from its JSON text (or an object); refused if it exists."""
        body = build(PolicyCreate, name=name, document=_doc(document), description=description)
        return self._model(Policy, "POST", "/v1/policies", json=body.model_dump())

    def put_policy(
        self, name: str, document: str | Mapping[str, Any], *, description: str | None = None
    ) -> Policy:
        """Create or replace a policy."""
        body = build(PolicyPut, document=_doc(document), description=description)
        return self._model(Policy, "PUT", _path("policies", name), json=body.model_dump())

    def list_policies(self) -> list[Policy]:
        return list(self._items(Policy, "/v1/policies"))

    def get_policy(self, name: str) -> Policy:
        return self._model(Policy, "GET", _path("policies", name))

    def delete_policy(self, name: str) -> None:
        self.request("DELETE", _path("policies", name))

    def create_role(
        self, name: str, policies: Sequence[str], *, description: str | None = None
    ) -> Role:
        body = build(RoleCreate, name=name, policies=list(policies), description=description)
        return self._model(Role, "POST", "/v1/roles", json=body.model_dump())

    def put_role(
        self, name: str, policies: Sequence[str], *, description: str | None = None
    ) -> Role:
        body = build(RolePut, policies=list(policies), description=description)
        return self._model(Role, "PUT", _path("roles", name), json=body.model_dump())

    def list_roles(self) -> list[Role]:
        return list(self._items(Role, "/v1/roles"))

    def get_role(self, name: str) -> Role:
        return self._model(Role, "GET", _path("roles", name))

    def delete_role(self, name: str) -> None:
        self.request("DELETE", _path("roles", name))

    # -- audit --------------------------------------------------------------------------

    def list_audit_records(
        self,
        *,
        since: datetime | None = None,
        principal: str | None = None,
        action: str | None = None,
        limit: int = 100,
    ) -> list[AuditRecord]:
        """The newest `limit` records matching the filters, newest first."""
        params = {
            "since": since.isoformat() if since else None,
            "principal": principal,
            "action": action,
            "limit": min(limit, 1000),
        }
        found: list[AuditRecord] = []
        for record in self._items(AuditRecord, "/v1/audit", params):
            found.append(record)
            if len(found) >= limit:
                break
        return found

    def export_audit_records(self, *, since: datetime | None = None) -> Iterator[dict[str, Any]]:
        """Every record, oldest first, as the JSON objects of the export; the last object
        is the signed head the export was cut at (`{"head": {...}}`, see
        `fleetrun.core.audit.verify_export`)."""
        params = _clean({"since": since.isoformat() if since else None})
        try:
            with self._http.stream(
                "GET",
                self._url("/v1/audit/export"),
                params=params,
                headers=self._headers,
                timeout=self._timeout,
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    _raise_for(response)
                for line in response.iter_lines():
                    if line.strip():
                        yield jsonlib.loads(line)
        except httpx.TransportError as exc:
            raise _unreachable(self.server, exc) from exc

    def get_audit_key(self) -> str:
        """The server's public key (base64 Ed25519) that verifies the heads of exports."""
        return self._model(AuditKey, "GET", "/v1/audit/key").public_key

    def verify_audit_log(self) -> AuditVerdict:
        return self._model(AuditVerdict, "GET", "/v1/audit/verify")

    # -- events, rules and channels -----------------------------------------------------

    def list_events(
        self,
        *,
        since: datetime | None = None,
        detail_type: str | None = None,
        limit: int = 100,
    ) -> list[Event]:
        """The newest `limit` events (matching the filters), newest first."""
        params = {
            "since": since.isoformat() if since else None,
            "detail-type": detail_type,
            "limit": min(limit, 1000),
        }
        page = self.request("GET", "/v1/events", params=params)
        return [Event.model_validate(item) for item in page["items"]]

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
        params = _clean({"pattern": jsonlib.dumps(pattern) if pattern else None, "after": after})
        try:
            with self._http.stream(
                "GET",
                self._url("/v1/events/stream"),
                params=params,
                headers=self._headers,
                timeout=httpx.Timeout(30, read=None),
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    _raise_for(response)
                if on_open is not None:
                    on_open()
                data: list[str] = []
                kind, seq = "event", ""
                for line in response.iter_lines():
                    if line.startswith("event:"):
                        kind = line[6:].strip()
                    elif line.startswith("id:"):
                        seq = line[3:].strip()
                    elif line.startswith("data:"):
                        data.append(line[5:].strip())
                    elif not line and data:
                        payload = jsonlib.loads("\n".join(data))
                        if kind == "error":  # the server closed the stream, and says why
                            body = payload.get("error") or {}
                            raise error_for(str(body.get("type")), 0, str(body.get("message")))
                        if seq.isdigit():  # the `id:` of the frame is the event's sequence
                            payload["seq"] = int(seq)
                        yield Event.model_validate(payload)
                        data, kind, seq = [], "event", ""
        except httpx.TransportError as exc:
            raise _unreachable(self.server, exc) from exc

    def create_rule(
        self,
        name: str,
        *,
        pattern: Mapping[str, Any],
        targets: Sequence[str | RuleTargetCreate | Mapping[str, Any]],
        principal: str | None = None,
        description: str | None = None,
        enabled: bool = True,
    ) -> Rule:
        """A rule: `targets` are "SCHEME:ADDRESS" strings, or objects with a webhook's
        `secret` or a command's `input` template."""
        body = build(
            RuleCreate,
            name=name,
            pattern=pattern,
            targets=[_rule_target(t) for t in targets],
            principal=principal,
            description=description,
            enabled=enabled,
        )
        return self._model(Rule, "POST", "/v1/rules", json=body.model_dump(exclude_none=True))

    def list_rules(self) -> list[Rule]:
        return list(self._items(Rule, "/v1/rules"))

    def get_rule(self, name: str) -> Rule:
        return self._model(Rule, "GET", _path("rules", name))

    def enable_rule(self, name: str) -> Rule:
        return self._model(Rule, "POST", _path("rules", name, "enable"))

    def disable_rule(self, name: str) -> Rule:
        return self._model(Rule, "POST", _path("rules", name, "disable"))

    def delete_rule(self, name: str) -> None:
        self.request("DELETE", _path("rules", name))

    def list_rule_deliveries(
        self, name: str, *, state: str | None = None, limit: int = 100
    ) -> list[Delivery]:
        params = {"state": state, "limit": min(limit, 1000)}
        page = self.request("GET", _path("rules", name, "deliveries"), params=params)
        return [Delivery.model_validate(item) for item in page["items"]]

    def redrive_rule(self, name: str) -> Redriven:
        return self._model(Redriven, "POST", _path("rules", name, "redrive"))

    def create_channel(
        self,
        name: str,
        *,
        target: str,
        secret: str | None = None,
        description: str | None = None,
    ) -> Channel:
        body = build(
            ChannelCreate, name=name, target=target, secret=secret, description=description
        )
        return self._model(Channel, "POST", "/v1/channels", json=body.model_dump(exclude_none=True))

    def list_channels(self) -> list[Channel]:
        return list(self._items(Channel, "/v1/channels"))

    def get_channel(self, name: str) -> Channel:
        return self._model(Channel, "GET", _path("channels", name))

    def list_channel_deliveries(self, name: str, *, limit: int = 100) -> list[Delivery]:
        page = self.request("GET", _path("channels", name, "deliveries"), params={"limit": limit})
        return [Delivery.model_validate(item) for item in page["items"]]

    def delete_channel(self, name: str) -> None:
        self.request("DELETE", _path("channels", name))


def _rule_target(target: str | RuleTargetCreate | Mapping[str, Any]) -> RuleTargetCreate:
    if isinstance(target, RuleTargetCreate):
        return target
    if isinstance(target, str):
        return build(RuleTargetCreate, target=target)
    return build(RuleTargetCreate, **dict(target))


def _ca_context(path: Path) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=str(path))
    except ssl.SSLError as exc:
        raise ValidationError(
            f"The CA file {path} holds no certificate that can be read ({exc.reason or exc}): "
            "give the server's CA certificate in PEM."
        ) from None
    except OSError as exc:
        raise ValidationError(
            f"Cannot read the CA file {path}: {(exc.strerror or str(exc)).lower()}."
        ) from None


def _path(*segments: str) -> str:
    """The API path of these segments, each quoted as exactly one segment: a name or an
    id never adds a level, climbs one (`../groups/x`, `..`) or addresses a listing (an
    empty one). Every method that puts a caller's value in a path goes through here."""
    quoted = []
    for segment in segments:
        if segment == "":
            raise ValidationError("A name or id is empty: give the name or id of one resource.")
        # quote() leaves dots alone, and a URL would read "." and ".." as a move.
        quoted.append("%2E" * len(segment) if segment in (".", "..") else quote(segment, safe=""))
    return "/v1/" + "/".join(quoted)


def _doc(document: str | Mapping[str, Any]) -> str | dict[str, Any]:
    return document if isinstance(document, str) else dict(document)


def _one_of(policy: str | None, role: str | None) -> tuple[str, str]:
    if policy is not None and role is None:
        return "policies", policy
    if role is not None and policy is None:
        return "roles", role
    raise ValidationError("Name either a policy or a role, not both and not neither.")


def _clean(params: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if params is None:
        return None
    return {k: v for k, v in params.items() if v is not None and v != []}


def _unreachable(server: str, exc: httpx.TransportError) -> ConnectionError_:
    """One sentence for a request that got no answer; a certificate that is not trusted
    says where to give the CA that signed it."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, ssl.SSLCertVerificationError):
        cause = cause.__cause__ or cause.__context__
    if isinstance(cause, ssl.SSLCertVerificationError):
        reason = cause.verify_message or cause.reason or "not trusted"
        return ConnectionError_(
            f"The certificate of the fleetrun server at {server} is not trusted ({reason}): "
            "give the CA certificate that signed it with --ca-file or FLEETRUN_CA_FILE (SDK: "
            "verify=PATH), or check that --server names the right host."
        )
    return ConnectionError_(
        f"Cannot reach the fleetrun server at {server} ({_reason(exc)}): check --server (or "
        "FLEETRUN_SERVER) and that the server is running."
    )


def _reason(exc: httpx.TransportError) -> str:
    text = str(exc) or type(exc).__name__
    return text.split("] ")[-1]


RETRIED = frozenset({429, 503})


@dataclass(frozen=True)
class Retry:
    """When to send a request again: on 429 and 503 only (the server did not act on
    it), at most `retries` times, after Retry-After or a jittered, doubling backoff."""

    retries: int = 3
    backoff_s: float = 0.5
    max_wait_s: float = 30.0

    def wait_s(self, response: httpx.Response, attempt: int) -> float | None:
        """How long to wait before try `attempt + 1`; None: do not try again."""
        if response.status_code not in RETRIED or attempt > self.retries:
            return None
        after = retry_after_s(response.headers.get("retry-after", ""))
        if after is None:  # "full jitter": spread many clients over the whole backoff
            after = random.uniform(0, self.backoff_s * 2.0 ** (attempt - 1))
        return after if after <= self.max_wait_s else None


def retry_after_s(value: str) -> float | None:
    """Retry-After's seconds: a number of seconds or an HTTP date (RFC 9110 10.2.3)."""
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def _raise_for(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        body = response.json()["error"]
        type_, message = str(body["type"]), str(body["message"])
    except (ValueError, KeyError, TypeError):
        raise error_for(
            "",
            response.status_code,
            f"The server answered {response.status_code} {response.reason_phrase}.",
        ) from None
    error = error_for(type_, response.status_code, message)
    if isinstance(error, LimitExceededError):
        error.retry_after_s = retry_after_s(response.headers.get("retry-after", ""))
    raise error
