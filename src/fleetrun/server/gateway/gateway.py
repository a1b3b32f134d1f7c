"""Sessions of agents: the signed handshake, the receive loop, frame batches.

Frames of one session are applied in order. While one batch is being stored, the
next frames queue up, and they are then stored together in one transaction, so a
busy agent costs fewer transactions instead of more.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
import time
from functools import partial
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from starlette.websockets import WebSocket, WebSocketDisconnect

from fleetrun.core import protocol
from fleetrun.core.statuses import InvocationStatus, StatusDetail
from fleetrun.server.db import Tx
from fleetrun.server.gateway.session import AgentSession
from fleetrun.server.store import invocations as invocation_store
from fleetrun.server.store import nodes as node_store
from fleetrun.server.store.tables import Node, utcnow

if TYPE_CHECKING:
    from fleetrun.server.state import ServerState

log = logging.getLogger(__name__)

HELLO_TIMEOUT_S = 10.0
MAX_CLOCK_SKEW_S = 300.0
MAX_BATCH = 256


class HandshakeError(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Gateway:
    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.sessions: dict[str, AgentSession] = {}

    def session_for(self, node_id: str) -> AgentSession | None:
        session = self.sessions.get(node_id)
        return session if session is not None and not session.closed.is_set() else None

    async def serve(self, ws: WebSocket) -> None:
        await ws.accept()
        try:
            session = await self._handshake(ws)
        except HandshakeError as exc:
            log.info("agent handshake refused: %s", exc.reason)
            await ws.close(exc.code, exc.reason)
            return
        except (WebSocketDisconnect, TimeoutError, protocol.ProtocolError) as exc:
            log.info("agent handshake failed: %r", exc)
            await _close_quietly(ws, protocol.CLOSE_PROTOCOL, "handshake failed")
            return
        try:
            await self._run(session)
        finally:
            await self._end(session)

    async def _handshake(self, ws: WebSocket) -> AgentSession:
        nonce = secrets.token_urlsafe(32)
        await ws.send_text(protocol.dump(protocol.Challenge(nonce=nonce, server_time=time.time())))
        hello = protocol.parse(await asyncio.wait_for(ws.receive_text(), HELLO_TIMEOUT_S))
        if not isinstance(hello, protocol.Hello):
            raise HandshakeError(protocol.CLOSE_PROTOCOL, "expected hello")
        node = await self.state.db.read(lambda s: s.get(Node, hello.node_id))
        if node is None or node.deleted_at is not None:
            raise HandshakeError(protocol.CLOSE_NODE_UNKNOWN, "node unknown or deregistered")
        if abs(hello.time_ms / 1000 - time.time()) > MAX_CLOCK_SKEW_S:
            raise HandshakeError(protocol.CLOSE_AUTH_FAILED, "clock skew too large")
        try:
            key = Ed25519PublicKey.from_public_bytes(base64.b64decode(node.public_key))
            key.verify(
                base64.b64decode(hello.signature),
                protocol.hello_message(nonce, hello.node_id, hello.time_ms),
            )
        except (InvalidSignature, ValueError) as exc:
            raise HandshakeError(protocol.CLOSE_AUTH_FAILED, "bad signature") from exc
        session = AgentSession(ws, node.id, secrets.token_hex(8), hello.running)
        old = self.sessions.get(node.id)
        self.sessions[node.id] = session
        if old is not None:
            await old.close(protocol.CLOSE_REPLACED, "replaced by a newer session")
        await self._online(session, hello)
        await session.send(
            protocol.Welcome(
                session_id=session.session_id, heartbeat_s=self.state.settings.heartbeat_s
            )
        )
        log.info("node %s connected (session %s)", node.id, session.session_id)
        self.state.dispatcher.node_connected(node.id)
        return session

    async def _online(self, session: AgentSession, hello: protocol.Hello) -> None:
        """Mark the node online, and close out what it ran but no longer knows of."""

        def online(tx: Tx) -> None:
            node_store.set_online(
                tx.session,
                session.node_id,
                session.session_id,
                agent_version=hello.agent_version,
                facts=hello.facts,
                local_config=hello.local_config,
            )
            changed = set()
            for inv in invocation_store.running_on(tx.session, session.node_id):
                if inv.id in session.running_at_hello:
                    continue
                invocation_store.transition(
                    tx.session,
                    inv,
                    InvocationStatus.FAILED,
                    StatusDetail.AGENT_RESTARTED,
                    ended_at=utcnow(),
                    message="The agent restarted and no longer knows this invocation; "
                    "it was not run again.",
                )
                changed.add(inv.command_id)
            self.state.refresh_commands(tx, changed)

        await self.state.db.write(online)

    async def _run(self, session: AgentSession) -> None:
        queue: asyncio.Queue[protocol.Frame | None] = asyncio.Queue()
        reader = asyncio.create_task(self._read(session, queue))
        try:
            while True:
                frame = await queue.get()
                if frame is None:
                    return
                batch = [frame]
                while not queue.empty() and len(batch) < MAX_BATCH:
                    nxt = queue.get_nowait()
                    if nxt is None:
                        queue.put_nowait(None)
                        break
                    batch.append(nxt)
                if not await self._apply(session, batch):
                    return
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    async def _read(
        self, session: AgentSession, queue: asyncio.Queue[protocol.Frame | None]
    ) -> None:
        timeout = self.state.settings.heartbeat_s * 3
        try:
            while True:
                text = await asyncio.wait_for(session.ws.receive_text(), timeout)
                session.last_frame_at = time.monotonic()
                frame = protocol.parse(text)
                if isinstance(frame, protocol.Ping):
                    await session.send(protocol.Pong(time=frame.time))
                elif frame is not None:
                    queue.put_nowait(frame)
        except TimeoutError:
            log.info("node %s missed its heartbeats: session closed", session.node_id)
            await session.close(1001, "heartbeat missed")
        except protocol.ProtocolError as exc:
            log.warning("node %s sent an unreadable frame: %s", session.node_id, exc)
            await session.close(protocol.CLOSE_PROTOCOL, "unreadable frame")
        except (WebSocketDisconnect, RuntimeError):
            session.closed.set()
        finally:
            queue.put_nowait(None)

    async def _apply(self, session: AgentSession, batch: list[protocol.Frame]) -> bool:
        def apply(tx: Tx) -> invocation_store.Applied:
            applier = invocation_store.FrameApplier(tx.session, session.node_id, self.state.output)
            for frame in batch:
                if isinstance(frame, protocol.Ack):
                    applier.ack(frame)
                elif isinstance(frame, protocol.Output | protocol.State):
                    applier.numbered(frame)
            self.state.refresh_commands(tx, applier.applied.commands)
            return applier.applied

        try:
            applied = await self.state.db.write(apply)
        except Exception:
            # Nothing was acknowledged: the agent sends it all again after reconnecting.
            log.exception("storing frames of node %s failed; closing its session", session.node_id)
            await session.close(1011, "server error")
            return False
        for invocation_id, seq in applied.received.items():
            await session.send(protocol.Received(invocation_id=invocation_id, seq=seq))
        for frame in batch:
            if isinstance(frame, protocol.Ack):
                session.sent_invokes.pop(frame.invocation_id, None)
        return True

    async def _end(self, session: AgentSession) -> None:
        await session.close(1000, "bye")
        if self.sessions.get(session.node_id) is session:
            del self.sessions[session.node_id]
        try:
            lost = await self.state.db.write(
                lambda tx: node_store.set_connection_lost(
                    tx.session, session.node_id, session.session_id
                )
            )
        except Exception:
            log.exception("could not mark node %s lost", session.node_id)
            return
        if lost:
            log.info("node %s disconnected", session.node_id)

    async def touch_loop(self) -> None:
        """Record when each live session last spoke, in one statement per interval."""
        interval = max(self.state.settings.heartbeat_s * 2, 1.0)
        while True:
            await asyncio.sleep(interval)
            since = time.monotonic() - interval
            live = [s.node_id for s in self.sessions.values() if s.last_frame_at >= since]
            if not live:
                continue
            try:
                await self.state.db.write(partial(_mark_pinged, live))
            except Exception:
                log.exception("could not record pings")

    async def close_all(self) -> None:
        for session in list(self.sessions.values()):
            await session.close(protocol.CLOSE_SHUTDOWN, "server shutting down")


def _mark_pinged(node_ids: list[str], tx: Tx) -> None:
    node_store.mark_pinged(tx.session, node_ids, utcnow())


async def _close_quietly(ws: WebSocket, code: int, reason: str) -> None:
    try:
        await ws.close(code, reason)
    except Exception as exc:
        log.debug("close failed: %s", exc)
