"""The request body limit, for every route: an ASGI middleware that counts the bytes of
the body as they arrive (a declared Content-Length, or a chunked body with none) and
answers 413 once they pass `max_bytes`, before the route has stored anything.

A declared length over the limit is refused before a byte is read. A body that grows
past the limit while it streams stops the request: the route never sees the rest, and
whatever it would have answered is replaced by the 413.
"""

from __future__ import annotations

import contextlib
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fleetrun.core.errors import PayloadTooLargeError
from fleetrun.core.protocol import mib


class BodyTooLargeError(Exception):
    """Raised into the app from `receive`: the body passed the limit."""


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(send, declared)
            return
        seen = 0
        over = False
        started = False

        async def counting_receive() -> Message:
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    over = True
                    raise BodyTooLargeError
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if over:
                return  # the app's own answer to a cut-off body is replaced below
            started = started or message["type"] == "http.response.start"
            await send(message)

        with contextlib.suppress(BodyTooLargeError):
            await self.app(scope, counting_receive, guarded_send)
        if over and not started:
            await self._refuse(send, None)

    async def _refuse(self, send: Send, size: int | None) -> None:
        said = f" ({mib(size)})" if size is not None else ""
        error = PayloadTooLargeError(
            f"The request body{said} is over the {mib(self.max_bytes)} this server accepts: "
            "send less (a script over its own limit is better fetched by the node with "
            "scriptUri)."
        )
        body = json.dumps({"error": {"type": error.type, "message": error.message}}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": error.status_code,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
