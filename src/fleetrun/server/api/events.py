"""The event log: recent events, and a live stream of them (server-sent events)."""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import AsyncIterator
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session

from fleetrun.core.errors import FleetrunError
from fleetrun.core.patterns import compile_pattern
from fleetrun.schemas import events as schemas
from fleetrun.schemas.base import Page
from fleetrun.server.api.deps import action, authorize, recheck, state_of
from fleetrun.server.api.query import Seq, moment
from fleetrun.server.authz import Caller
from fleetrun.server.outbox import EVENTS_KEY
from fleetrun.server.store import deliveries as store
from fleetrun.server.store.tables import Event

router = APIRouter(prefix="/v1/events", tags=["events"])
KEEPALIVE_S = 15.0
# Woken at once by commits on this server; events another replica wrote are read within
# this long.
POLL_S = 1.0
# Events that commit out of order (PostgreSQL, concurrent writers) land a little below
# the newest sequence number seen: the stream looks back this far and skips repeats.
LOOKBACK = 200
# A stream is decided again this often: a revoked or expired token, a deleted principal
# or a policy that no longer allows ListEvents closes it within about this long.
RECHECK_S = 2.0


@router.get("", **action("ListEvents"))
async def list_events(
    request: Request,
    caller: Annotated[Caller, Depends(authorize("ListEvents", "*"))],
    since: Annotated[str | None, Query(description="ISO time, or how long ago: 2h")] = None,
    detail_type: Annotated[str | None, Query(alias="detail-type")] = None,
    after: Seq = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Page[schemas.Event]:
    """Newest first (oldest first with `after`, a sequence number, for paging on)."""
    state = state_of(request)
    await state.audit.flush()  # denials still queued are events too
    rows = await state.db.read(
        lambda s: store.read_events(
            s,
            since=moment(since, "since"),
            after=after,
            detail_type=detail_type,
            limit=limit,
            newest_first=after is None,
        )
    )
    return Page(items=[store.event_schema(r) for r in rows])


class EventStreamResponse(StreamingResponse):
    media_type = "text/event-stream"


@router.get(
    "/stream",
    response_class=EventStreamResponse,
    responses={200: {"description": "Server-sent events, each `data:` one Event (JSON)."}},
    **action("ListEvents"),
)
async def stream_events(
    request: Request,
    caller: Annotated[Caller, Depends(authorize("ListEvents", "*"))],
    pattern: str | None = None,
    after: Seq = None,
) -> StreamingResponse:
    """Events as they happen, as server-sent events (`id:` is the sequence number:
    reconnect with `after` to miss nothing); only those matching `pattern` (JSON).
    The caller's credentials are decided again every RECHECK_S: when they no longer
    allow it, the stream ends with an `error` event that says why. A server that is
    stopping ends its streams (within POLL_S) without an error: reconnect with `after`."""
    matches = _matcher(pattern)
    state = state_of(request)
    start = after if after is not None else await state.db.read(store.last_seq)

    async def stream() -> AsyncIterator[bytes]:
        last = start
        quiet = 0
        seen: deque[int] = deque(maxlen=4 * LOOKBACK)
        checked = time.monotonic()
        yield b": stream of fleetrun events\n\n"
        while not state.stopping and not await request.is_disconnected():
            if time.monotonic() - checked >= RECHECK_S:
                refused = await recheck(request, caller, "ListEvents", "*")
                if refused is not None:
                    yield _closing(refused)
                    return
                checked = time.monotonic()
            with state.changes.subscribe(EVENTS_KEY) as sub:
                floor = max(start, last - LOOKBACK)
                rows = await state.db.read(partial(_after, floor))
                fresh = [r for r in rows if r.seq not in seen]
                for row in fresh:
                    seen.append(row.seq)
                    last = max(last, row.seq)
                    event = store.event_of(row)
                    if matches is None or matches(event):
                        yield f"id: {row.seq}\nevent: event\ndata: {json.dumps(event)}\n\n".encode()
                if len(rows) == 500:
                    continue
                if not await sub.wait(POLL_S):
                    quiet += 1
                    if quiet * POLL_S >= KEEPALIVE_S:
                        quiet = 0
                        yield b": keepalive\n\n"

    return EventStreamResponse(
        stream(), headers={"cache-control": "no-cache", "x-accel-buffering": "no"}
    )


def _closing(error: FleetrunError) -> bytes:
    """The last frame of a stream its caller may no longer read: the error, as an API
    error body, under the event type `error`."""
    body = {"error": {"type": error.type, "message": error.message}}
    return f"event: error\ndata: {json.dumps(body)}\n\n".encode()


def _after(floor: int, session: Session) -> list[Event]:
    return store.read_events(session, after=floor, limit=500, newest_first=False)


def _matcher(text: str | None) -> Any:
    """The stream's pattern (JSON text; compile_pattern names a fault in it)."""
    return compile_pattern(text).matches if text else None
