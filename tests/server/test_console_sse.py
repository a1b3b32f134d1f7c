"""The console's server-sent events: the API's frames read whole however its body is
cut into chunks, and the console's frames written one data line per line."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from fleetrun.server.web.sse import Frame, event, frames

BODY = (
    ": stream of fleetrun events\n\n"
    'id: 7\nevent: event\ndata: {"seq": 7}\n\n'
    'event: error\ndata: {"error": {"message": "no"}}\n\n'
)
WANT = [
    Frame("", ""),
    Frame("event", '{"seq": 7}', "7"),
    Frame("error", '{"error": {"message": "no"}}'),
]


def read(chunks: list[str | bytes]) -> list[Frame]:
    async def body() -> AsyncIterator[str | bytes]:
        for chunk in chunks:
            yield chunk

    async def collect() -> list[Frame]:
        return [frame async for frame in frames(body())]

    return asyncio.run(collect())


def test_frames_are_read_whole_however_the_body_is_cut():
    assert read([BODY]) == WANT
    assert read([BODY[i : i + 5].encode() for i in range(0, len(BODY), 5)]) == WANT
    assert read(list(BODY)) == WANT
    assert read([BODY[:-1]]) == WANT[:2]  # an unfinished frame is not read


def test_an_event_is_written_one_data_line_per_line_with_its_id_first():
    assert event("output", "a&#10;", 21) == "id: 21\nevent: output\ndata: a&#10;\n\n"
    assert event("rows", "<tr>\n</tr>") == "event: rows\ndata: <tr>\ndata: </tr>\n\n"
    assert event("done", "") == "event: done\ndata: \n\n"
