"""One agent's live session: a WebSocket with a send lock and what was sent on it."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque

from starlette.websockets import WebSocket, WebSocketState

from fleetrun.core import protocol

log = logging.getLogger(__name__)

# How long an answered invoke stays marked answered after its answer is stored: a
# delivery pass that read the invocation before the answer was stored may still be
# on its way to it (passes over thousands of invocations take seconds).
ANSWERED_KEEP_S = 60.0


class AgentSession:
    def __init__(self, ws: WebSocket, node_id: str, session_id: str, running: list[str]) -> None:
        self.ws = ws
        self.node_id = node_id
        self.session_id = session_id
        self.running_at_hello = set(running)
        self.sent_invokes: dict[str, float] = {}  # invocation id -> monotonic time sent
        self.sent_cancels: dict[str, float] = {}  # the same for cancels
        self._answered: deque[tuple[float, str]] = deque()  # (when stored, invocation id)
        self.last_frame_at = time.monotonic()
        self.closed = asyncio.Event()
        # Set once the welcome is sent (or the session closed): the agent reads the
        # welcome first, so every other frame waits for it, though the session is
        # registered (and the dispatcher may find it) while the handshake still runs.
        self.ready = asyncio.Event()
        self.agent_version: str | None = None
        self.protocol: int | None = None
        self.close_reason: str | None = None  # why the server closed it, for the audit log
        self._send_lock = asyncio.Lock()

    def answered(self, invocation_id: str, now: float) -> None:
        """The agent answered this invoke (accepted or refused) and the answer was stored
        at `now` (the clock `sent_invokes` is kept by): it is never sent again on this
        session. Answers stored more than ANSWERED_KEEP_S before `now` are forgotten."""
        self.sent_invokes[invocation_id] = math.inf
        self._answered.append((now, invocation_id))
        while self._answered and self._answered[0][0] < now - ANSWERED_KEEP_S:
            self.sent_invokes.pop(self._answered.popleft()[1], None)

    async def send(self, frame: protocol._Frame, *, text: str | None = None) -> bool:
        """Send a frame (`text`: already encoded); False if the session is gone (the
        caller moves on)."""
        if not isinstance(frame, protocol.Welcome):
            await self.ready.wait()
        if self.closed.is_set():
            return False
        try:
            async with self._send_lock:
                await self.ws.send_text(text if text is not None else protocol.dump(frame))
            if isinstance(frame, protocol.Welcome):
                self.ready.set()
            return True
        except Exception as exc:  # a dying socket raises many kinds of errors
            log.info("session %s of %s: send failed: %s", self.session_id, self.node_id, exc)
            self.closed.set()
            self.ready.set()
            return False

    async def close(self, code: int, reason: str) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        self.ready.set()  # nothing waits to send on a closed session
        self.close_reason = reason
        if self.ws.application_state == WebSocketState.CONNECTED:
            try:
                await self.ws.close(code, reason)
            except Exception as exc:
                log.debug("close of %s failed: %s", self.node_id, exc)
