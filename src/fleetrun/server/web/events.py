"""The console's events page: the recent events, and a live tail over server-sent
events, filtered by an EventBridge pattern. The tail is the API's own stream
(`/v1/events/stream`: its pattern matching, its re-decisions of the caller every few
seconds, its end when the server stops), each event re-sent as a table row."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from starlette.responses import StreamingResponse

from fleetrun.core.patterns import compile_pattern
from fleetrun.server.api import events as events_api
from fleetrun.server.api.deps import authorize
from fleetrun.server.authz import Caller
from fleetrun.server.web import sse
from fleetrun.server.web.pages import guard
from fleetrun.server.web.render import page, refusal, templates

router = APIRouter(prefix="/ui", include_in_schema=False, dependencies=[Depends(guard)])
RECENT = 200  # read; of them, those the pattern matches are shown


@router.get("/events")
async def events_page(
    request: Request,
    caller: Annotated[Caller, Depends(authorize("ListEvents", "*"))],
    pattern: str = "",
) -> Response:
    matches = None
    with refusal() as refused:
        if pattern.strip():
            matches = compile_pattern(pattern).matches  # the API's own check and matcher
    listed = await events_api.list_events(
        request, caller, since=None, detail_type=None, after=None, limit=RECENT
    )
    recent = [e for e in listed.items if matches is None or matches(e.envelope())]
    context = {"events": recent, "pattern": pattern, "message": refused.message}
    return page(request, "events.html", caller, context)


@router.get("/events/stream")
async def tail(
    request: Request,
    caller: Annotated[Caller, Depends(authorize("ListEvents", "*"))],
    pattern: str = "",
    after: int | None = None,
) -> StreamingResponse:
    api = await events_api.stream_events(request, caller, pattern.strip() or None, after)
    row = templates.get_template("event_row.html")

    async def frames() -> AsyncIterator[str]:
        async for frame in sse.frames(api.body_iterator):
            yield _frame(frame, row)

    return StreamingResponse(
        frames(), media_type="text/event-stream", headers={"x-accel-buffering": "no"}
    )


def _frame(frame: sse.Frame, row: Any) -> str:
    """One frame of the API's stream as the page takes it: an event as a table row, an
    error as the sentence; comments (keep-alives) as keep-alives."""
    if frame.name == "event":
        return sse.event(
            "event", row.render(event={**json.loads(frame.data), "seq": frame.id or ""})
        )
    if frame.name == "error":
        return sse.event("refused", json.loads(frame.data)["error"]["message"])
    return sse.KEEPALIVE
