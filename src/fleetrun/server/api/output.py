"""Output as it happens and output searched: a live stream of one invocation's output
(server-sent events) and a search across the stored output of many.

The stream reads what the output store holds beyond the offset it has sent, then waits
for a wake-up: at once when this server stores more of that invocation's output (or its
state), and every POLL_S regardless, so a stream served by one replica follows output
that another replica's agent session stores. It ends, with an `end` event, once the
invocation has ended and everything stored has been sent.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from fleetrun.core import access
from fleetrun.core.errors import FleetrunError, ValidationError
from fleetrun.core.inputs import INT64_MAX
from fleetrun.core.outputlines import compile_search
from fleetrun.core.statuses import TERMINAL_INVOCATION
from fleetrun.schemas import output as schemas
from fleetrun.server import retention
from fleetrun.server.api.deps import action, authorize, recheck, state_of
from fleetrun.server.api.events import EventStreamResponse
from fleetrun.server.api.query import moment, tag_filters
from fleetrun.server.authz import Caller
from fleetrun.server.commandauthz import readable_invocations, require_invocation
from fleetrun.server.output import OutputStore, Part, output_key, read_parts, stream_parts
from fleetrun.server.store import commands as command_store
from fleetrun.server.store import groups as group_store
from fleetrun.server.store import invocations as invocation_store
from fleetrun.server.store import nodes as node_store
from fleetrun.server.store import outputlines as store
from fleetrun.server.store.tables import Invocation, OutputLine

router = APIRouter(prefix="/v1", tags=["output"])

POLL_S = 1.0  # output another replica stored is seen within this long
KEEPALIVE_S = 15.0
RECHECK_S = 2.0  # the caller's access is decided again this often
EVENT_BYTES = 64 * 1024  # output bytes per event, at most


@dataclass(frozen=True)
class Stored:
    """Where an invocation's stream stands: its parts (output key, size) and status."""

    parts: list[Part]
    status: str

    @property
    def total(self) -> int:
        return sum(size for _, size in self.parts)

    @property
    def ended(self) -> bool:
        return self.status in {s.value for s in TERMINAL_INVOCATION}


def _stored(command_id: str, node_id: str, stream: str, session: Session) -> Stored:
    inv = invocation_store.read_invocation(session, command_id, node_id)
    steps = invocation_store.read_steps(session, inv.id)
    return Stored(stream_parts(command_id, node_id, steps, stream), inv.status)


@router.get(
    "/commands/{command_id}/invocations/{node_id}/output/stream",
    response_class=EventStreamResponse,
    responses={
        200: {
            "description": "Server-sent events: `output` (data: {offset, data: base64}; "
            "id: the offset after it), then `end` (data: {status, offset})."
        }
    },
    **action("GetCommandInvocation"),
)
async def stream_output(
    request: Request,
    command_id: str,
    node_id: str,
    caller: Annotated[Caller, Depends(authorize("GetCommandInvocation"))],
    stream: Literal["stdout", "stderr"] = "stdout",
    offset: Annotated[int | None, Query(ge=0, le=INT64_MAX)] = None,
    last_event_id: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> StreamingResponse:
    """One invocation's stream (all its steps, in order) as it is stored, from byte
    `offset` (or the `Last-Event-ID` a reconnecting client sends), until it has ended."""
    state = state_of(request)
    start = _start(offset, last_event_id)

    def first(session: Session) -> tuple[str, Stored]:
        command = command_store.read_command(session, command_id)
        inv = invocation_store.read_invocation(session, command_id, node_id)
        require_invocation(session, caller, command, node_id)
        retention.check_output(inv, state.settings.retention_output_s)
        return inv.id, _stored(command_id, node_id, stream, session)

    inv_id, stored = await state.db.read(first)
    if start > stored.total:
        raise ValidationError(
            f"Offset {start} is past the {stored.total} bytes of {stream} stored so far: "
            "resume from an offset the stream sent (its last event id)."
        )
    read = partial(_stored, command_id, node_id, stream)
    resource = access.frn("node", node_id)

    async def events() -> AsyncIterator[bytes]:
        sent = start
        checked = quiet = time.monotonic()
        yield b": output of " + f"{command_id} on {node_id}".encode() + b"\n\n"
        while not state.stopping and not await request.is_disconnected():
            if time.monotonic() - checked >= RECHECK_S:
                refused = await recheck(request, caller, "GetCommandInvocation", resource)
                if refused is not None:
                    yield _closing(refused)
                    return
                checked = time.monotonic()
            with state.changes.subscribe(output_key(inv_id)) as woken:
                now = await state.db.read(read)
                async for event in _chunks(state.output, now.parts, sent, now.total):
                    yield event
                sent = now.total
                if now.ended:
                    end = {"status": now.status, "offset": sent}
                    yield f"id: {sent}\nevent: end\ndata: {json.dumps(end)}\n\n".encode()
                    return
                if await woken.wait(POLL_S):
                    quiet = time.monotonic()
                elif time.monotonic() - quiet >= KEEPALIVE_S:
                    quiet = time.monotonic()
                    yield b": keepalive\n\n"

    return EventStreamResponse(
        events(), headers={"cache-control": "no-cache", "x-accel-buffering": "no"}
    )


def _start(offset: int | None, last_event_id: str | None) -> int:
    """Where to start: the Last-Event-ID a reconnecting client sends wins over ?offset."""
    if last_event_id is None or not last_event_id.strip():
        return offset or 0
    if not last_event_id.strip().isdigit() or len(last_event_id.strip()) > 18:
        raise ValidationError(
            f"Last-Event-ID {last_event_id[:40]!r} is not a byte offset: send the id of the "
            "last event received, or leave it out and give ?offset=."
        )
    return int(last_event_id.strip())


async def _chunks(
    output: OutputStore, parts: list[Part], start: int, end: int
) -> AsyncIterator[bytes]:
    """Events carrying bytes [start, end) of the stream made of `parts`."""
    at, pending = start, b""
    async for chunk in read_parts(output, parts, start, end):
        pending += chunk
        while len(pending) >= EVENT_BYTES:
            piece, pending = pending[:EVENT_BYTES], pending[EVENT_BYTES:]
            yield _output_event(at, piece)
            at += len(piece)
    if pending:
        yield _output_event(at, pending)


def _output_event(offset: int, data: bytes) -> bytes:
    body = {"offset": offset, "data": base64.b64encode(data).decode()}
    return f"id: {offset + len(data)}\nevent: output\ndata: {json.dumps(body)}\n\n".encode()


def _closing(error: FleetrunError) -> bytes:
    body = {"error": {"type": error.type, "message": error.message}}
    return f"event: error\ndata: {json.dumps(body)}\n\n".encode()


@router.get("/output/search", **action("GetCommandInvocation"))
async def search_output(
    request: Request,
    caller: Annotated[Caller, Depends(authorize("GetCommandInvocation"))],
    pattern: Annotated[str, Query(max_length=500, description="words, or a regex")],
    regex: bool = False,
    command: str | None = None,
    node: Annotated[list[str] | None, Query(description="a node id, repeatable")] = None,
    tag: Annotated[list[str] | None, Query(description="KEY=VALUE, repeatable (ANDed)")] = None,
    group: str | None = None,
    stream: Literal["stdout", "stderr"] | None = None,
    since: Annotated[str | None, Query(description="ISO time, or how long ago: 24h")] = None,
    until: str | None = None,
    context: Annotated[int, Query(ge=0, le=20, description="lines around each")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[int | None, Query(ge=1, le=INT64_MAX)] = None,
) -> schemas.SearchPage:
    """Lines of stored output that hold the words of `pattern` in that order (any case),
    or match it as a regular expression; newest first, only on nodes the caller may read
    invocations of. `next_cursor` goes on to older lines."""
    compiled = compile_search(pattern, regex=regex)
    if sum(x is not None for x in (node, tag, group)) > 1:
        raise ValidationError("Choose the nodes one way: --node, --tag or --group, not several.")
    scope = store.Scope(
        command_id=command,
        stream=stream,
        since=moment(since, "since"),
        until=moment(until, "until"),
    )
    keep = readable_invocations(caller, "GetCommandInvocation")

    def search(session: Session) -> schemas.SearchPage:
        scope.node_ids = _nodes(session, node, tag, group)
        found = store.search(
            session,
            compiled,
            scope,
            limit=limit,
            before=cursor,
            keep=partial(_readable_lines, keep),
        )
        names = _names(session, found.lines)
        items = [_item(session, row, names, context) for row in found.lines]
        return schemas.SearchPage(items=items, next_cursor=found.next_cursor)

    return await state_of(request).db.read(search)


def _nodes(
    session: Session, node: list[str] | None, tag: list[str] | None, group: str | None
) -> list[str] | None:
    if node is not None:
        return [n.id for n in node_store.read_nodes_by_ids(session, node)]
    if tag is not None:
        return [n.id for n in node_store.read_nodes(session, tags=tag_filters(tag))]
    if group is not None:
        return group_store.members(session, group_store.read_group(session, group))
    return None


def _readable_lines(
    keep: Callable[[Session, list[Invocation]], list[Invocation]],
    session: Session,
    rows: list[OutputLine],
) -> list[OutputLine]:
    """The lines on invocations the caller may read, decided once per invocation."""
    if not rows:
        return rows
    ids = {r.invocation_id for r in rows}
    invocations = list(session.execute(select(Invocation).where(Invocation.id.in_(ids))).scalars())
    allowed = {inv.id for inv in keep(session, invocations)}
    return [r for r in rows if r.invocation_id in allowed]


def _names(session: Session, rows: list[OutputLine]) -> dict[str, str | None]:
    ids = {r.invocation_id for r in rows}
    if not ids:
        return {}
    found = session.execute(
        select(Invocation.id, Invocation.node_name).where(Invocation.id.in_(ids))
    ).all()
    return dict(found)


def _item(
    session: Session, row: OutputLine, names: dict[str, str | None], lines: int
) -> schemas.SearchHit:
    before, after = store.context(session, row, lines)
    return schemas.SearchHit(
        command_id=row.command_id,
        node_id=row.node_id,
        node_name=names.get(row.invocation_id),
        step=row.step,
        stream=row.stream,
        line_no=row.line_no,
        at=row.at,
        line=row.text,
        before=before,
        after=after,
    )
