"""Output operations without I/O (see `fleetrun.sdk.wire`): following an invocation's
output as it is stored (server-sent events, resumable from a byte offset) and searching
stored output. `Client` and `AsyncClient` expose them as `iter_output(..., follow=True)`
and `search_output`."""

from __future__ import annotations

import base64
import json as jsonlib
from collections.abc import Sequence
from dataclasses import dataclass

from fleetrun.core.errors import ValidationError, error_for
from fleetrun.schemas.output import OutputChunk, SearchPage
from fleetrun.sdk.wire import Op, Stream, clean, model, path

RECONNECTS = 5  # a follow that loses its connection tries again this often, in a row


def check_follow(step: int | None, end: int | None) -> None:
    if step is not None or end is not None:
        raise ValidationError(
            "Following output reads the whole stream as it grows: leave out step and end "
            "(start is where to begin)."
        )


def backoff_s(failures: int) -> float:
    return float(min(0.25 * 2**failures, 5.0))


def stream_output(command_id: str, node_id: str, stream: str, offset: int) -> Stream:
    """The live stream of one invocation's `stream`, from byte `offset`."""
    return Stream(
        path("commands", command_id, "invocations", node_id, "output", "stream"),
        {"stream": stream, "offset": offset},
        read_timeout_s=None,
    )


@dataclass
class Ended:
    """The stream's last event: the invocation ended with `status`, `offset` bytes in all."""

    status: str
    offset: int


class OutputFrames:
    """The live output stream, line by line, into `OutputChunk`s and, last, `Ended`. An
    `error` event (the caller may no longer read it) is raised as the error it names."""

    def __init__(self) -> None:
        self._data: list[str] = []
        self._kind = "message"

    def feed(self, line: str) -> OutputChunk | Ended | None:
        if line.startswith("event:"):
            self._kind = line[6:].strip()
        elif line.startswith("data:"):
            self._data.append(line[5:].strip())
        elif not line and self._data:
            payload = jsonlib.loads("\n".join(self._data))
            kind, self._data, self._kind = self._kind, [], "message"
            if kind == "error":
                body = payload.get("error") or {}
                raise error_for(str(body.get("type")), 0, str(body.get("message")))
            if kind == "end":
                return Ended(str(payload["status"]), int(payload["offset"]))
            if kind == "output":
                data = base64.b64decode(payload["data"])
                return OutputChunk(offset=int(payload["offset"]), data=data)
        return None


class Follow:
    """One follow of an invocation's output, across reconnects, without I/O. The driver
    opens `request()`, feeds each line to `feed` (new bytes, each byte once, or None),
    stops reading once `ended`, and on a lost connection asks `lost()` how long to wait
    before opening `request()` again (None: too many in a row, give up). A stream the
    server ends early (it is stopping) is opened again from where it stopped."""

    def __init__(self, command_id: str, node_id: str, stream: str, offset: int) -> None:
        self.command_id, self.node_id, self.stream = command_id, node_id, stream
        self.offset = offset
        self.ended = False
        self._failures = 0
        self._frames = OutputFrames()

    def request(self) -> Stream:
        self._frames = OutputFrames()
        return stream_output(self.command_id, self.node_id, self.stream, self.offset)

    def feed(self, line: str) -> bytes | None:
        got = self._frames.feed(line)
        if isinstance(got, Ended):
            self.ended = True
        elif got is not None and got.end > self.offset:
            data = got.data[self.offset - got.offset :]
            self.offset, self._failures = got.end, 0
            return data
        return None

    def lost(self) -> float | None:
        self._failures += 1
        return None if self._failures > RECONNECTS else backoff_s(self._failures)


def search_output(
    pattern: str,
    *,
    regex: bool = False,
    command_id: str | None = None,
    node_ids: Sequence[str] | None = None,
    tags: Sequence[str] | None = None,
    group: str | None = None,
    stream: str | None = None,
    since: str | None = None,
    until: str | None = None,
    context: int = 0,
    limit: int = 100,
    cursor: int | None = None,
) -> Op[SearchPage]:
    """Lines of stored output holding the words of `pattern` in order (any case), or
    matching it as a regular expression (`regex=True`), newest first; `since`/`until`
    are ISO times or how long ago (`24h`); `tags` are `KEY=VALUE`; `context` lines
    around each. Page on with `cursor=page.next_cursor`."""
    params = clean(
        {
            "pattern": pattern,
            "regex": "true" if regex else None,
            "command": command_id,
            "node": list(node_ids) if node_ids else None,
            "tag": list(tags) if tags else None,
            "group": group,
            "stream": stream,
            "since": since,
            "until": until,
            "context": context or None,
            "limit": limit,
            "cursor": cursor,
        }
    )
    return model(SearchPage, "GET", "/v1/output/search", params=params)
