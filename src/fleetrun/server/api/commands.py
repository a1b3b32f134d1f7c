from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, status
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session

from fleetrun.core.errors import ValidationError
from fleetrun.schemas import commands as schemas
from fleetrun.schemas.base import Page
from fleetrun.server.api.deps import action, authorize, state_of
from fleetrun.server.authz import Caller
from fleetrun.server.db import Tx
from fleetrun.server.output import stream_key
from fleetrun.server.store import commands as store
from fleetrun.server.store import invocations as invocation_store
from fleetrun.server.store.tables import InvocationStep

router = APIRouter(prefix="/v1/commands", tags=["commands"])

MAX_WAIT_S = 60.0


@router.post("", status_code=status.HTTP_201_CREATED, **action("SendCommand"))
async def send_command(
    request: Request,
    body: schemas.CommandCreate,
    caller: Annotated[Caller, Depends(authorize("SendCommand"))],
) -> schemas.Command:
    state = state_of(request)

    def create(tx: Tx) -> schemas.Command:
        command = store.create_command(tx.session, body, principal=caller.principal)
        tx.after_commit(state.dispatcher.wake)
        return store.to_schema(command)

    return await state.db.write(create)


@router.get("", **action("ListCommands"))
async def list_commands(
    request: Request,
    caller: Annotated[Caller, Depends(authorize("ListCommands"))],
    status: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: str | None = None,
) -> Page[schemas.Command]:
    rows, next_cursor = await state_of(request).db.read(
        lambda s: store.read_commands(s, status=status, limit=limit, cursor=cursor)
    )
    return Page(items=[store.to_schema(r) for r in rows], next_cursor=next_cursor)


@router.get("/{command_id}", **action("GetCommand"))
async def get_command(
    request: Request,
    command_id: str,
    caller: Annotated[Caller, Depends(authorize("GetCommand"))],
    wait_s: Annotated[float, Query(ge=0, le=MAX_WAIT_S, description="long-poll")] = 0,
    version: Annotated[int | None, Query(description="return once the version differs")] = None,
) -> schemas.Command:
    """With `wait_s`, answer as soon as the command's version differs from `version`
    (or it is finished), and at the latest after `wait_s` seconds."""
    state = state_of(request)

    def read(session: Session) -> schemas.Command:
        return store.to_schema(store.read_command(session, command_id))

    with state.changes.subscribe(command_id) as changed:
        command = await state.db.read(read)
        if wait_s <= 0 or command.done or (version is not None and command.version != version):
            return command
        if await changed.wait(wait_s):
            command = await state.db.read(read)
    return command


@router.get("/{command_id}/invocations", **action("ListCommandInvocations"))
async def list_invocations(
    request: Request,
    command_id: str,
    caller: Annotated[Caller, Depends(authorize("ListCommandInvocations"))],
    status: str | None = None,
    details: Annotated[bool, Query(description="include steps and output tails")] = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 1000,
    cursor: str | None = None,
) -> Page[schemas.Invocation]:
    def read(session: Session) -> Page[schemas.Invocation]:
        command = store.read_command(session, command_id)
        rows, next_cursor = invocation_store.read_invocations(
            session, command_id, status=status, limit=limit, cursor=cursor
        )
        steps = invocation_store.read_steps_of(session, [r.id for r in rows]) if details else {}
        plan = command.steps if details else []
        items = [invocation_store.to_schema(r, steps.get(r.id, []), plan) for r in rows]
        return Page(items=items, next_cursor=next_cursor)

    return await state_of(request).db.read(read)


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
        return invocation_store.to_schema(
            inv, invocation_store.read_steps(session, inv.id), command.steps
        )

    return await state_of(request).db.read(read)


@router.get("/{command_id}/invocations/{node_id}/output", **action("GetCommandInvocation"))
async def get_output(
    request: Request,
    command_id: str,
    node_id: str,
    caller: Annotated[Caller, Depends(authorize("GetCommandInvocation"))],
    stream: Literal["stdout", "stderr"] = "stdout",
    step: int | None = None,
) -> StreamingResponse:
    """The full stream, all steps in order (or one step), as bytes. Honours a single
    `Range: bytes=START-END` header."""
    state = state_of(request)

    def read(session: Session) -> list[InvocationStep]:
        inv = invocation_store.read_invocation(session, command_id, node_id)
        return invocation_store.read_steps(session, inv.id)

    steps = await state.db.read(read)
    parts = [
        (
            stream_key(command_id, node_id, s.idx, stream),
            s.stdout_bytes if stream == "stdout" else s.stderr_bytes,
        )
        for s in steps
        if step is None or s.idx == step
    ]
    total = sum(size for _, size in parts)
    start, end = _range(request.headers.get("range"), total)

    async def body() -> AsyncIterator[bytes]:
        offset = 0
        for key, size in parts:
            lo, hi = max(start - offset, 0), min(end - offset, size)
            if lo < hi:
                async for chunk in state.output.read(key, lo, hi):
                    yield chunk
            offset += size

    headers = {"accept-ranges": "bytes", "content-length": str(end - start)}
    code = 200
    if request.headers.get("range"):
        code = 206
        headers["content-range"] = f"bytes {start}-{max(end - 1, start)}/{total}"
    return StreamingResponse(
        body(), status_code=code, headers=headers, media_type="application/octet-stream"
    )


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
