"""Wire shapes of output search and of the live output stream."""

from __future__ import annotations

from datetime import datetime

from fleetrun.schemas.base import Response


class SearchHit(Response):
    """One line that matched, where it is, and the lines around it."""

    command_id: str
    node_id: str
    node_name: str | None = None
    step: int
    stream: str
    line_no: int  # from 1, within the step's stream
    at: datetime  # when the server stored it
    line: str
    before: list[str] = []
    after: list[str] = []


class SearchPage(Response):
    items: list[SearchHit]
    next_cursor: int | None = None  # pass as `cursor` to go on to older lines


class OutputChunk(Response):
    """Bytes of a stream as the live stream sends them: `data` starts at byte `offset`."""

    offset: int
    data: bytes

    @property
    def end(self) -> int:
        return self.offset + len(self.data)
