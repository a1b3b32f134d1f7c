"""The fleet's operations, each written once as an `Op` (see `fleetrun.sdk.wire`):
activations, nodes, commands and invocations, documents, groups (run commands are in
`fleetrun.sdk.runcommands`).
`Client` and `AsyncClient` expose each one as a method of the same name and arguments;
read the docstrings there."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from fleetrun.core import sealing
from fleetrun.core.errors import ValidationError
from fleetrun.core.targets import Target
from fleetrun.schemas.activations import Activation, ActivationCreate, ActivationCreated
from fleetrun.schemas.base import Page, build
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
from fleetrun.schemas.events import Notification
from fleetrun.schemas.groups import Group, GroupCreate, GroupUpdate
from fleetrun.schemas.nodes import Node, NodeTagsUpdate
from fleetrun.sdk.wire import Call, Listing, Op, Stream, clean, model, nothing, path

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


def _tag_lists(
    tags: Mapping[str, str | Sequence[str]] | None,
) -> dict[str, list[str]] | None:
    if tags is None:
        return None
    return {k: [v] if isinstance(v, str) else list(v) for k, v in tags.items()}


def _tag_filters(tags: Mapping[str, str] | None) -> list[str]:
    return [f"{k}={v}" for k, v in (tags or {}).items()]


# -- activations --------------------------------------------------------------------------


def create_activation(
    *,
    name: str | None = None,
    tags: Mapping[str, str] | None = None,
    registration_limit: int = 1,
    expires_in_s: float = 24 * 3600,
    description: str | None = None,
) -> Op[ActivationCreated]:
    body = build(
        ActivationCreate,
        name=name,
        tags=dict(tags or {}),
        registration_limit=registration_limit,
        expires_in_s=expires_in_s,
        description=description,
    )
    return model(ActivationCreated, "POST", "/v1/activations", json=body.model_dump())


def list_activations() -> Listing[Activation]:
    return Listing(Activation, "/v1/activations")


def delete_activation(activation_id: str) -> Op[None]:
    return nothing("DELETE", path("activations", activation_id))


# -- nodes --------------------------------------------------------------------------------


def delete_node(node_id: str) -> Op[None]:
    """Deregister a node: its agent can no longer connect; unfinished work ends
    Undeliverable."""
    return nothing("DELETE", path("nodes", node_id))


def list_nodes(
    *, tags: Mapping[str, str] | None = None, ping_status: str | None = None
) -> Listing[Node]:
    return Listing(Node, "/v1/nodes", {"tag": _tag_filters(tags), "ping_status": ping_status})


def get_node(node_id: str) -> Op[Node]:
    return model(Node, "GET", path("nodes", node_id))


def tag_node(
    node_id: str,
    *,
    set: Mapping[str, str] | None = None,
    remove: Sequence[str] = (),
) -> Op[Node]:
    """Set tags (add or change) and remove tag keys; the node's other tags stay.
    Groups that follow tags, and targets, see the change at once."""
    body = build(NodeTagsUpdate, set=dict(set or {}), remove=list(remove))
    return model(Node, "PATCH", path("nodes", node_id, "tags"), json=body.model_dump())


# -- commands -----------------------------------------------------------------------------


def send_command(
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
) -> Op[Command]:
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
        sealed = yield from seal_for(
            body.targets, dict(secret_parameters or {}), list(secret_arguments)
        )
        body = body.model_copy(update={"secret_parameters": sealed})
    json = body.model_dump(mode="json", exclude_none=True)
    return (yield from model(Command, "POST", "/v1/commands", json=json))


def resolve_targets(targets: Sequence[Target]) -> Op[list[ResolvedNode]]:
    """The nodes targets select now, with the keys to seal secrets to them."""
    body = {"targets": [t.model_dump() for t in targets]}
    found = yield Call("POST", "/v1/targets/resolve", json=body)
    return [ResolvedNode.model_validate(n) for n in found]


def seal_for(
    targets: Sequence[Target], env: dict[str, str], args: list[str]
) -> Op[dict[str, SealedParameters]]:
    """Seal secrets for every node the targets select, each to its own key."""
    sealed: dict[str, SealedParameters] = {}
    for node in (yield from resolve_targets(targets)):
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
    command_id: str,
    *,
    wait_s: float = 0,
    version: int | None = None,
    until: Literal["changed", "done"] | None = None,
) -> Op[Command]:
    """The command; with `wait_s`, a long-poll that answers once its version differs
    from `version` (or, with `until="done"`, only once it is finished), or after
    `wait_s` seconds."""
    return model(
        Command,
        "GET",
        path("commands", command_id),
        params={"wait_s": wait_s or None, "version": version, "until": until},
        timeout_s=wait_s + 30 if wait_s else None,
    )


def cancel_command(command_id: str, node_ids: Sequence[str] | None = None) -> Op[Command]:
    """Not started: Cancelled at once; running: Cancelling until the agent confirms."""
    body = {"node_ids": list(node_ids)} if node_ids else None
    return model(Command, "POST", path("commands", command_id, "cancel"), json=body)


def list_commands_page(
    *,
    status: str | None = None,
    document: str | None = None,
    node_id: str | None = None,
    tags: Mapping[str, str] | None = None,
    since: str | None = None,
    until: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> Op[Page[Command]]:
    """One page of commands, newest first, and the cursor of the next."""
    params = {
        "status": status,
        "document": document,
        "node": node_id,
        "tag": _tag_filters(tags),
        "since": since,
        "until": until,
        "limit": limit,
        "cursor": cursor,
    }
    return Page[Command].model_validate((yield Call("GET", "/v1/commands", params=params)))


def list_commands(
    *, status: str | None = None, limit: int = 50, **filters: Any
) -> Op[list[Command]]:
    return (yield from list_commands_page(status=status, limit=limit, **filters)).items


def list_invocations(
    command_id: str,
    *,
    status: str | None = None,
    node_id: str | None = None,
    details: bool = False,
) -> Listing[Invocation]:
    """Every invocation of a command (following pages); with `details`, their steps
    and output tails."""
    params = {"status": status, "node": node_id, "details": "true" if details else None}
    return Listing(Invocation, path("commands", command_id, "invocations"), params)


def list_invocations_page(
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
) -> Op[Page[Invocation]]:
    """One page of invocations across commands (newest first), or of one command."""
    params = {
        "command": command_id,
        "node": node_id,
        "status": status,
        "tag": _tag_filters(tags),
        "since": since,
        "until": until,
        "details": "true" if details else None,
        "limit": limit,
        "cursor": cursor,
    }
    return Page[Invocation].model_validate((yield Call("GET", "/v1/invocations", params=params)))


def get_invocation(command_id: str, node_id: str) -> Op[Invocation]:
    return model(Invocation, "GET", path("commands", command_id, "invocations", node_id))


def iter_output(
    command_id: str,
    node_id: str,
    stream: str = "stdout",
    *,
    step: int | None = None,
    start: int | None = None,
    end: int | None = None,
) -> Stream:
    """The full stream as it is stored, in chunks (`start`/`end`: a byte range)."""
    headers = {}
    if start is not None or end is not None:
        headers["range"] = f"bytes={start or 0}-{'' if end is None else end - 1}"
    return Stream(
        path("commands", command_id, "invocations", node_id, "output"),
        clean({"stream": stream, "step": step}),
        headers,
    )


def wait(
    command_id: str,
    *,
    timeout_s: float | None = None,
    on_update: Callable[[Command], None] | None = None,
) -> Op[Command]:
    """Until the command is finished (or `timeout_s` passes), and return it.
    `on_update` sees every new version on the way."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    command = yield from get_command(command_id)
    if on_update:
        on_update(command)
    while not command.done:
        remaining = LONG_POLL_S if deadline is None else deadline - time.monotonic()
        if remaining <= 0:
            break
        latest = yield from get_command(
            command_id,
            wait_s=min(LONG_POLL_S, remaining),
            version=command.version,
            # nobody watches the steps on the way: one answer, at the end
            until=None if on_update else "done",
        )
        if latest.version != command.version and on_update:
            on_update(latest)
        command = latest
    return command


# -- documents ----------------------------------------------------------------------------


def create_document(name: str, content: str) -> Op[Document]:
    """Create a document from YAML or JSON text."""
    body = build(DocumentCreate, name=name, content=content).model_dump()
    return model(Document, "POST", "/v1/documents", json=body)


def update_document(name: str, content: str) -> Op[Document]:
    """Add a version; the default version does not change."""
    body = build(DocumentUpdate, content=content).model_dump()
    return model(Document, "PUT", path("documents", name), json=body)


def list_documents() -> Listing[DocumentSummary]:
    return Listing(DocumentSummary, "/v1/documents")


def get_document(name: str, version: str | None = None) -> Op[Document]:
    return model(Document, "GET", path("documents", name), params={"version": version})


def set_default_version(name: str, version: str | int) -> Op[Document]:
    body = {"version": str(version)}
    return model(Document, "PUT", path("documents", name, "default-version"), json=body)


def sign_document(
    name: str, version: str, *, publisher: str, public_key: str, signature: str
) -> Op[Document]:
    """Attach a signature made with `fleetrun.core.signing.sign`."""
    body = build(
        DocumentSignature,
        version=str(version),
        publisher=publisher,
        public_key=public_key,
        signature=signature,
    ).model_dump()
    return model(Document, "POST", path("documents", name, "signatures"), json=body)


def delete_document(name: str) -> Op[None]:
    return nothing("DELETE", path("documents", name))


# -- groups -------------------------------------------------------------------------------


def create_group(
    name: str,
    *,
    node_ids: Sequence[str] | None = None,
    tags: Mapping[str, str | Sequence[str]] | None = None,
    description: str | None = None,
) -> Op[Group]:
    """A group of fixed nodes, or of every node matching tags (now and later)."""
    body = build(
        GroupCreate,
        name=name,
        description=description,
        node_ids=list(node_ids) if node_ids is not None else None,
        tags=_tag_lists(tags),
    )
    return model(Group, "POST", "/v1/groups", json=body.model_dump())


def update_group(
    name: str,
    *,
    node_ids: Sequence[str] | None = None,
    tags: Mapping[str, str | Sequence[str]] | None = None,
    description: str | None = None,
) -> Op[Group]:
    """New members (a list of nodes, or tag filters) for an existing group; the
    description changes when given. Its run commands go to the nodes that join."""
    body = build(
        GroupUpdate,
        description=description,
        node_ids=list(node_ids) if node_ids is not None else None,
        tags=_tag_lists(tags),
    )
    return model(Group, "PUT", path("groups", name), json=body.model_dump())


def list_groups() -> Listing[Group]:
    return Listing(Group, "/v1/groups")


def get_group(name: str) -> Op[Group]:
    return model(Group, "GET", path("groups", name))


def delete_group(name: str) -> Op[None]:
    return nothing("DELETE", path("groups", name))
