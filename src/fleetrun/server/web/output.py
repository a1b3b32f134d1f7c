"""Console routes for a command's output: one node's output live, line by line as it
is printed (server-sent events), and a search within the command's output.

Both call the API's own route functions with the caller, so they are decided exactly as
the API decides them: the live output is the API's output stream (GetCommandInvocation
on that node, decided again while it runs), turned into lines of HTML; the search is the
API's output search, bounded to this command and to the nodes the caller may read.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncIterator, Iterator
from html import escape
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Request
from starlette.responses import Response, StreamingResponse

from fleetrun.server.api import output as output_api
from fleetrun.server.api.deps import authorize
from fleetrun.server.authz import Caller
from fleetrun.server.web import sse
from fleetrun.server.web.pages import guard
from fleetrun.server.web.render import page

router = APIRouter(prefix="/ui", include_in_schema=False, dependencies=[Depends(guard)])

SEARCH_LIMIT = 100  # lines shown; the CLI and the API page on through the rest


class Lines:
    """Bytes of a stream, from byte `start`, cut into whole lines: what each chunk
    completes, and the byte offset just after the last whole line (where a client that
    reconnects resumes, so a line is never shown twice or in halves)."""

    def __init__(self, start: int) -> None:
        self.offset = start
        self.pending = b""

    def feed(self, data: bytes) -> list[str]:
        self.pending += data
        *whole, self.pending = self.pending.split(b"\n")
        self.offset += sum(len(line) + 1 for line in whole)
        return [line.decode("utf-8", "replace") for line in whole]

    def rest(self) -> list[str]:
        """The last line when the stream ends without a newline."""
        if not self.pending:
            return []
        raw, self.pending = self.pending, b""
        self.offset += len(raw)
        return [raw.decode("utf-8", "replace")]


def html_lines(lines: list[str]) -> str:
    """Lines as text for a <pre>, escaped; each newline written as a character reference,
    so the fragment travels as one SSE data line."""
    return "".join(escape(line.rstrip("\r")) + "&#10;" for line in lines)


@router.get("/commands/{command_id}/nodes/{node_id}/live")
async def live_output(
    request: Request,
    command_id: str,
    node_id: str,
    caller: Annotated[Caller, Depends(authorize("GetCommandInvocation"))],
    stream: Literal["stdout", "stderr"] = "stdout",
    last_event_id: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> StreamingResponse:
    """Server-sent events: `output` (escaped lines to append, as they are printed),
    `refused` (the reason, when the caller may no longer read it) and `end`. Each event's
    id is the byte offset after its last whole line: a reconnecting browser sends it back
    and the stream goes on from there."""
    upstream = await output_api.stream_output(
        request, command_id, node_id, caller, stream=stream, offset=None,
        last_event_id=last_event_id,
    )  # fmt: skip
    resumed = (last_event_id or "").strip()  # the API stream has checked it
    lines = Lines(int(resumed) if resumed else 0)

    def output(new: list[str]) -> Iterator[str]:
        if text := html_lines(new):
            yield sse.event("output", text, lines.offset)

    async def events() -> AsyncIterator[str]:
        async for frame in sse.frames(upstream.body_iterator):
            if frame.name == "output":
                for sent in output(lines.feed(_decoded(frame.data))):
                    yield sent
            elif frame.name == "error":
                error = json.loads(frame.data).get("error", {})
                yield sse.event("refused", escape(str(error.get("message", ""))))
                yield sse.event("end", "refused")
                return
            elif frame.name == "end":
                for sent in output(lines.rest()):
                    yield sent
                status = escape(str(json.loads(frame.data).get("status", "")))
                yield sse.event("end", status, lines.offset)
                return
            else:
                yield sse.KEEPALIVE

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )


def _decoded(data: str) -> bytes:
    try:
        return base64.b64decode(json.loads(data)["data"], validate=True)
    except (ValueError, KeyError, binascii.Error):
        return b""


@router.get("/commands/{command_id}/search")
async def search(
    request: Request,
    command_id: str,
    caller: Annotated[Caller, Depends(authorize("GetCommandInvocation"))],
    pattern: str = "",
    regex: bool = False,
    stream: Literal["stdout", "stderr", ""] = "",
) -> Response:
    """Lines of this command's stored output that hold the words of `pattern` (or match
    it as a regex), newest first, on the nodes the caller may read."""
    found = await output_api.search_output(
        request, caller, pattern=pattern, regex=regex, command=command_id, node=None,
        tag=None, group=None, stream=stream or None, since=None, until=None, context=0,
        limit=SEARCH_LIMIT, cursor=None,
    )  # fmt: skip
    context = {
        "command_id": command_id,
        "hits": found.items,
        "pattern": pattern,
        "more": found.next_cursor is not None,
    }
    return page(request, "output_search.html", caller, context)
