"""Server-sent events for the console's live views: reading the API's own streams
(which the console re-sends as HTML) and writing the console's frames."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

KEEPALIVE = ": keep-alive\n\n"


@dataclass(frozen=True)
class Frame:
    name: str  # "" for a comment (a keep-alive)
    data: str
    id: str | None = None


def event(name: str, data: str, id: object = None) -> str:
    """One frame: each line of `data` on a data line of its own."""
    head = f"id: {id}\n" if id is not None else ""
    lines = "".join(f"data: {line}\n" for line in data.splitlines() or [""])
    return f"{head}event: {name}\n{lines}\n"


async def frames(body: AsyncIterable[str | bytes | memoryview]) -> AsyncIterator[Frame]:
    """An API stream's frames, however its bytes are cut into chunks."""
    buffer = ""
    async for chunk in body:
        buffer += chunk if isinstance(chunk, str) else bytes(chunk).decode()
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            name, id, data = "", None, []
            for line in block.split("\n"):
                if line.startswith("event: "):
                    name = line[len("event: ") :]
                elif line.startswith("data: "):
                    data.append(line[len("data: ") :])
                elif line.startswith("id: "):
                    id = line[len("id: ") :]
            yield Frame(name, "\n".join(data), id)
