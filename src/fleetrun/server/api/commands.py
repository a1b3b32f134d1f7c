from __future__ import annotations

import time
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, status
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session

from fleetrun.core import logs
from fleetrun.core.errors import ValidationError
from fleetrun.core.inputs import INT64_MAX
from fleetrun.schemas import commands as schemas
from fleetrun.schemas.base import Page
from fleetrun.server import retention
from fleetrun.server.api.deps import action, authorize, state_of
from fleetrun.server.api.query import Count, moment, tag_filters
from fleetrun.server.authz import Caller
from fleetrun.server.commandauthz import (
    cancellable_nodes,
    command_resource,
    readable_invocations,
    require_invocation,
)
from fleetrun.server.db import Tx
from fleetrun.server.engine import commands as engine_commands
from fleetrun.server.output import read_parts, stream_parts
from fleetrun.server.store import commands as store
from fleetrun.server.store import invocations as invocation_store
from fleetrun.server.store.tables import Command, InvocationStep

router = APIRouter(prefix="/v1/commands", tags=["commands"])
invocations_router = APIRouter(prefix="/v1/invocations", tags=["commands"])

MAX_WAIT_S = 60.0
Tags = Annotated[list[str] | None, Query(description="KEY=VALUE, repeatable (ANDed)")]


@router.post("", status_code=status.HTTP_201_CREATED, **action("SendCommand"))
async def send_command(
    request: Request,
    body: schemas.CommandCreate,
    caller: Annotated[Caller, Depends(authorize("SendCommand"))],
) -> schemas.Command:
    state = state_of(request)
    now = state.clock.now()

    def create(tx: Tx) -> schemas.Command:
        command = engine_commands.send_command(
            tx.session, body, principal=caller.principal, caller=caller, now=now
        )
        logs.bind(command_id=command.id)
        state.wake_dispatcher(tx)
        return store.to_schema(command)

    return await state.db.write(create)


@router.get("", **action("ListCommands"))
async def list_commands(
    request: Request,
    caller: Annotated[Caller, Depends(authorize("ListCommands"))],
    status: Annotated[str | None, Query(description="a status or a detail")] = None,
    document: str | None = None,
    node: Annotated[str | None, Query(description="commands that ran on this node")] = None,
    tag: Tags = None,
    since: Annotated[str | None, Query(description="ISO time, or how long ago: 2h")] = None,
    until: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: str | None = None,
) -> Page[schemas.Command]:
    filters = store.CommandFilter(
        status=status,
        document=document,
        node_id=node,
        tags=tag_filters(tag),
        since=moment(since, "since"),
        until=moment(until, "until"),
    )

    def readable(command: Command) -> bool:
        return caller.allows("ListCommands", *command_resource(command))

    rows, next_cursor = await state_of(request).db.read(
        lambda s: store.read_commands(s, filters, limit=limit, cursor=cursor, keep=readable)
    )
    return Page(items=[store.to_schema(r) for r in rows], next_cursor=next_cursor)


@router.get("/{command_id}", **action("GetCommand"))
async def get_command(
    request: Request,
    command_id: str,
    caller: Annotated[Caller, Depends(authorize("GetCommand"))],
    wait_s: Annotated[float, Query(ge=0, le=MAX_WAIT_S, description="long-poll")] = 0,
    version: Annotated[
        int | None,
        Query(ge=0, le=INT64_MAX, description="return once the version differs"),
    ] = None,
    until: Annotated[
        Literal["changed", "done"],
        Query(description="with wait_s: answer on any change (default) or only once done"),
    ] = "changed",
) -> schemas.Command:
    """With `wait_s`, answer as soon as the command's version differs from `version`
    (or it is finished), and at the latest after `wait_s` seconds; with `until=done`,
    only once it is finished (or after `wait_s`): a waiter that wants the end is not
    woken for every step on the way."""
    state = state_of(request)

    def read(session: Session) -> schemas.Command:
        command = store.read_command(session, command_id)
        caller.require("GetCommand", *command_resource(command))
        return store.to_schema(command)

    def answers(command: schemas.Command) -> bool:
        if command.done:
            return True
        return until == "changed" and version is not None and command.version != version

    with state.changes.subscribe(command_id) as changed:
        command = await state.db.read(read)
        if wait_s <= 0 or answers(command):
            return command
        deadline = time.monotonic() + wait_s
        while (left := deadline - time.monotonic()) > 0 and await changed.wait(left):
            if until != "changed" and not changed.take_final():
                continue  # a step on the way: nothing to read for a waiter of the end
            command = await state.db.read(read)
            if until == "changed" or command.done:
                break
    return command


@router.post("/{command_id}/cancel", **action("CancelCommand"))
async def cancel_command(
    request: Request,
    command_id: str,
    caller: Annotated[Caller, Depends(authorize("CancelCommand"))],
    body: schemas.CommandCancel | None = None,
) -> schemas.Command:
    """Not started: Cancelled at once. Running: Cancelling until the agent confirms.
    Finished: unchanged."""
    state = state_of(request)
    node_ids = body.node_ids if body else None

    def cancel(tx: Tx) -> tuple[schemas.Command, list[tuple[str, str]]]:
        allowed = cancellable_nodes(
            tx.session, caller, store.read_command(tx.session, command_id), node_ids
        )
        notify = engine_commands.cancel_command(tx.session, command_id, allowed)
        state.refresh_commands(tx, [command_id])
        tx.session.flush()
        return store.to_schema(store.read_command(tx.session, command_id)), notify

    command, notify = await state.db.write(cancel)
    await state.gateway.cancel(notify)
    return command


@router.get("/{command_id}/invocations", **action("ListCommandInvocations"))
async def list_invocations(
    request: Request,
    command_id: str,
    caller: Annotated[Caller, Depends(authorize("ListCommandInvocations"))],
    status: Annotated[str | None, Query(description="a status or a detail")] = None,
    node: str | None = None,
    tag: Tags = None,
    details: Annotated[bool, Query(description="include steps and output tails")] = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 1000,
    cursor: str | None = None,
) -> Page[schemas.Invocation]:
    filters = invocation_store.InvocationFilter(
        command_id=command_id, status=status, node_id=node, tags=tag_filters(tag)
    )

    def read(session: Session) -> Page[schemas.Invocation]:
        store.read_command(session, command_id)
        return invocation_store.read_page(
            session,
            filters,
            details=details,
            limit=limit,
            cursor=cursor,
            keep=readable_invocations(caller, "ListCommandInvocations"),
        )

    return await state_of(request).db.read(read)


@invocations_router.get("", **action("ListCommandInvocations"))
async def list_all_invocations(
    request: Request,
    caller: Annotated[Caller, Depends(authorize("ListCommandInvocations"))],
    command: str | None = None,
    node: str | None = None,
    status: Annotated[str | None, Query(description="a status or a detail")] = None,
    tag: Tags = None,
    since: Annotated[str | None, Query(description="ISO time, or how long ago: 2h")] = None,
    until: str | None = None,
    details: Annotated[bool, Query(description="include steps and output tails")] = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> Page[schemas.Invocation]:
    """Invocations across commands, newest first (or one command's, by node)."""
    filters = invocation_store.InvocationFilter(
        command_id=command,
        node_id=node,
        status=status,
        tags=tag_filters(tag),
        since=moment(since, "since"),
        until=moment(until, "until"),
    )
    return await state_of(request).db.read(
        lambda s: invocation_store.read_page(
            s,
            filters,
            details=details,
            limit=limit,
            cursor=cursor,
            keep=readable_invocations(caller, "ListCommandInvocations"),
        )
    )


@router.get("/{command_id}/invocations/{node_id}", **action("GetCommandInvocation"))
async def get_invocation(
    request: Request,
    command_id: str,
    node_id: str,
    caller: Annotated[Caller, Depends(authorize("GetCommandInvocation"))],
) -> schemas.Invocation:
    def read(session: Session) -> schemas.Invocation:
        command = store.read_command(session, command_id)
        inv = invocation_store.read_invocation(session, command_id, node_id)
        require_invocation(session, caller, command, node_id)
        return invocation_store.to_schema(
            inv,
            invocation_store.read_steps(session, inv.id),
            command.steps,
            invocation_store.read_transitions(session, inv.id),
        )

    return await state_of(request).db.read(read)


class OctetStreamResponse(StreamingResponse):
    media_type = "application/octet-stream"


@router.get(
    "/{command_id}/invocations/{node_id}/output",
    response_class=OctetStreamResponse,
    responses={
        200: {"description": "The output's bytes."},
        206: {
            "description": "The range asked for in the Range header.",
            "content": {"application/octet-stream": {"schema": {"type": "string"}}},
        },
    },
    **action("GetCommandInvocation"),
)
async def get_output(
    request: Request,
    command_id: str,
    node_id: str,
    caller: Annotated[Caller, Depends(authorize("GetCommandInvocation"))],
    stream: Literal["stdout", "stderr"] = "stdout",
    step: Count = None,
) -> StreamingResponse:
    """The full stream, all steps in order (or one step), as bytes. Honours a single
    `Range: bytes=START-END` header."""
    state = state_of(request)

    def read(session: Session) -> list[InvocationStep]:
        command = store.read_command(session, command_id)
        inv = invocation_store.read_invocation(session, command_id, node_id)
        require_invocation(session, caller, command, node_id)
        retention.check_output(inv, state.settings.retention_output_s)
        return invocation_store.read_steps(session, inv.id)

    steps = await state.db.read(read)
    chosen = [s for s in steps if step is None or s.idx == step]
    parts = stream_parts(command_id, node_id, chosen, stream)
    total = sum(size for _, size in parts)
    start, end = _range(request.headers.get("range"), total)

    headers = {"accept-ranges": "bytes", "content-length": str(end - start)}
    code = 200
    if request.headers.get("range"):
        code = 206
        headers["content-range"] = f"bytes {start}-{max(end - 1, start)}/{total}"
    body = read_parts(state.output, parts, start, end)
    return OctetStreamResponse(body, status_code=code, headers=headers)


def _range(header: str | None, total: int) -> tuple[int, int]:
    if not header:
        return 0, total
    unit, _, spec = header.partition("=")
    first, _, last = spec.partition("-")
    try:
        if unit.strip() != "bytes" or "," in spec:
            raise ValueError
        if first == "":
            start, end = max(total - int(last), 0), total
        else:
            start = int(first)
            end = min(int(last) + 1, total) if last else total
    except ValueError as exc:
        raise ValidationError(
            f"Range {header!r} is not understood: use bytes=START-END, bytes=START- or bytes=-N."
        ) from exc
    if start > end or (start >= total and total > 0):
        raise ValidationError(f"Range {header!r} is outside the {total} bytes of this stream.")
    return start, end
