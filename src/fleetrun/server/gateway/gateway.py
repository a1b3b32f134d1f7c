"""Sessions of agents: the signed handshake, the receive loop, group commit.

Every session's reader puts frames in one inbox. A single applier stores whatever
has gathered, from all sessions, in one transaction, recounts each command touched
once, and then acknowledges: while one batch is being stored the next one gathers,
so a busy fleet costs fewer transactions per frame, not more. Frames of one session
keep their order (the inbox is FIFO), and none is acknowledged before it is stored.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import math
import re
import secrets
import time
from functools import partial
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from starlette.websockets import WebSocket, WebSocketDisconnect

from fleetrun.core import logs, protocol
from fleetrun.server.batches import Batches
from fleetrun.server.db import Tx
from fleetrun.server.engine import invocations as engine_invocations
from fleetrun.server.gateway.session import AgentSession
from fleetrun.server.output import output_key
from fleetrun.server.store import nodes as node_store
from fleetrun.server.store import replicas as replica_store
from fleetrun.server.store.tables import utcnow

if TYPE_CHECKING:
    from fleetrun.server.state import ServerState

log = logging.getLogger(__name__)

HELLO_TIMEOUT_S = 10.0
MAX_CLOCK_SKEW_S = 300.0
MAX_BATCH = 2000  # frames stored in one transaction, at most
MAX_BATCH_BYTES = 8 * 1024 * 1024  # and about this much output
# A NUL escaped in a JSON string: "\u0000" after an even run of backslashes (after an odd
# run, the backslash before "u0000" is itself escaped, and the letters are text).
_NUL = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")
MAX_HELLOS = 500  # agents marked online in one transaction, at most
STOP_CLOSE_S = 5.0  # at shutdown, how long closing the sessions may take


class HandshakeError(Exception):
    def __init__(self, code: int, reason: str, node_id: str | None = None) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.node_id = node_id


def _too_old(agent_protocol: int) -> str:
    """The close reason (at most 123 bytes) an agent too old for this server gets; the
    number it sent is the agent's to choose, so it is cut short."""
    return (
        f"agent protocol {str(agent_protocol)[:12]} is older than the oldest this server supports "
        f"({protocol.MIN_PROTOCOL_VERSION}): upgrade the agent"
    )


class Gateway:
    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.sessions: dict[str, AgentSession] = {}
        self._inbox: asyncio.Queue[tuple[AgentSession, protocol.Frame]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        # Sessions that ended (node id -> session id), marked lost together: a thousand
        # agents dropping at once (a shutdown, a partition) cost one statement, not a
        # thousand transactions queued behind each other.
        self._lost: dict[str, str] = {}
        self._lost_wake = asyncio.Event()
        # Handshakes waiting for their node to be marked online: stored together, as
        # frames are (ten thousand agents connecting at once are a few dozen
        # transactions, not ten thousand).
        self._keys: Batches[str, Any] = Batches(
            self._identities, limit=MAX_HELLOS, what="keys read"
        )
        self._hellos: Batches[tuple[AgentSession, protocol.Hello], list[str]] = Batches(
            self._online_many, limit=MAX_HELLOS, what="nodes marked online"
        )

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._apply_loop(), name="gateway-apply"),
            asyncio.create_task(self._touch_loop(), name="gateway-pings"),
            asyncio.create_task(self._lost_loop(), name="gateway-lost"),
            asyncio.create_task(self._lease_loop(), name="gateway-lease"),
        ]
        self._keys.start()
        self._hellos.start()

    async def stop(self) -> None:
        """Close every session at once (bounded: a peer that does not answer is not
        waited for), stop the loops, and mark every node this server held lost in one
        transaction."""
        sessions = list(self.sessions.values())
        for session in sessions:
            self._lost[session.node_id] = session.session_id
        if sessions:
            closing = [s.close(protocol.CLOSE_SHUTDOWN, "server shutting down") for s in sessions]
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STOP_CLOSE_S):
                    await asyncio.gather(*closing, return_exceptions=True)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._keys.stop()  # handshakes still waiting end here
        await self._hellos.stop()
        await self._flush_lost()
        with contextlib.suppress(Exception):  # else its lease runs out
            await self.state.db.write(partial(_leave, self.state.replica_id))

    def session_for(self, node_id: str) -> AgentSession | None:
        session = self.sessions.get(node_id)
        return session if session is not None and not session.closed.is_set() else None

    async def serve(self, ws: WebSocket) -> None:
        await ws.accept()
        address = ws.client.host if ws.client else None
        try:
            session = await self._handshake(ws)
        except HandshakeError as exc:
            log.info("agent handshake refused: %s", exc.reason)
            self.state.audit.agent(
                "agent:Connect", exc.node_id, source_ip=address, decision="deny", reason=exc.reason
            )
            await ws.close(exc.code, exc.reason)
            return
        except (WebSocketDisconnect, TimeoutError, protocol.ProtocolError) as exc:
            log.info("agent handshake failed: %r", exc)
            await _close_quietly(ws, protocol.CLOSE_PROTOCOL, "handshake failed")
            return
        except Exception:
            # The agent retries with backoff; the server keeps the traceback.
            log.exception("agent handshake failed on the server side")
            await _close_quietly(ws, 1011, "server error")
            return
        self.state.audit.agent(
            "agent:Connect",
            session.node_id,
            source_ip=address,
            session_id=session.session_id,
            agent_version=session.agent_version,
            protocol=session.protocol,
        )
        try:
            await self._run(session)
        finally:
            await self._end(session)
            self.state.audit.agent(
                "agent:Disconnect",
                session.node_id,
                source_ip=address,
                session_id=session.session_id,
                reason=session.close_reason,
            )

    async def _handshake(self, ws: WebSocket) -> AgentSession:
        nonce = secrets.token_urlsafe(32)
        await ws.send_text(protocol.dump(protocol.Challenge(nonce=nonce, server_time=time.time())))
        text = await asyncio.wait_for(ws.receive_text(), HELLO_TIMEOUT_S)
        hello = protocol.parse(_holdable(text))
        if not isinstance(hello, protocol.Hello):
            raise HandshakeError(protocol.CLOSE_PROTOCOL, "expected hello")
        if hello.protocol < protocol.MIN_PROTOCOL_VERSION:
            raise HandshakeError(
                protocol.CLOSE_PROTOCOL_TOO_OLD, _too_old(hello.protocol), hello.node_id
            )
        node = await self._keys(hello.node_id)
        if node is not None:
            logs.bind(node_id=node.id)  # this connection's lines name its node, from here
        if node is None or node.deleted_at is not None:
            raise HandshakeError(
                protocol.CLOSE_NODE_UNKNOWN, "node unknown or deregistered", hello.node_id
            )
        if abs(hello.time_ms / 1000 - time.time()) > MAX_CLOCK_SKEW_S:
            raise HandshakeError(protocol.CLOSE_AUTH_FAILED, "clock skew too large", node.id)
        try:
            key = Ed25519PublicKey.from_public_bytes(base64.b64decode(node.public_key))
            key.verify(
                base64.b64decode(hello.signature),
                protocol.hello_message(nonce, hello.node_id, hello.time_ms),
            )
        except (InvalidSignature, ValueError) as exc:
            raise HandshakeError(protocol.CLOSE_AUTH_FAILED, "bad signature", node.id) from exc
        session = AgentSession(ws, node.id, secrets.token_hex(8), hello.running)
        session.agent_version = hello.agent_version
        session.protocol = hello.protocol
        old = self.sessions.get(node.id)
        self.sessions[node.id] = session
        try:
            if old is not None:
                await old.close(protocol.CLOSE_REPLACED, "replaced by a newer session")
            stop = await self._online(session, hello)
            await session.send(
                protocol.Welcome(
                    session_id=session.session_id, heartbeat_s=self.state.settings.heartbeat_s
                )
            )
        except BaseException:
            # Registered but never welcomed: nothing may wait on it, nor find it.
            await session.close(1011, "handshake failed")
            if self.sessions.get(node.id) is session:
                del self.sessions[node.id]
            self._lost[node.id] = session.session_id  # if it was marked online
            self._lost_wake.set()
            raise
        for invocation_id in stop:  # after the welcome, which the agent reads first
            await session.send(protocol.Cancel(invocation_id=invocation_id))
        log.info("node %s connected (session %s)", node.id, session.session_id)
        self.state.dispatcher.node_connected(node.id)
        return session

    async def _identities(self, node_ids: list[str]) -> list[Any]:
        """What the handshakes of these nodes check (`node_store.identities_of`), read
        in one transaction."""
        found = await self.state.db.read(partial(node_store.identities_of, node_ids=node_ids))
        return [found.get(node_id) for node_id in node_ids]

    async def _online(self, session: AgentSession, hello: protocol.Hello) -> list[str]:
        """Mark the node online, and close out what it ran but no longer knows of; the
        invocations it runs that it must be told to stop. Stored together with the
        other handshakes waiting (a handshake given up meanwhile is left out: its node
        was already told lost)."""
        return await self._hellos((session, hello))

    async def _online_many(
        self, batch: list[tuple[AgentSession, protocol.Hello]]
    ) -> list[list[str]]:
        return await self.state.db.write(partial(self._mark_online, batch))

    def _mark_online(
        self, batch: list[tuple[AgentSession, protocol.Hello]], tx: Tx
    ) -> list[list[str]]:
        node_store.set_many_online(
            tx.session,
            [
                node_store.Online(
                    session.node_id,
                    session.session_id,
                    hello.agent_version,
                    hello.facts,
                    hello.local_config,
                )
                for session, hello in batch
            ],
            replica_id=self.state.replica_id,
        )
        stops, changed = engine_invocations.agents_hello(
            tx.session, [(session.node_id, session.running_at_hello) for session, _ in batch]
        )
        self.state.refresh_commands(tx, changed)
        return stops

    async def _run(self, session: AgentSession) -> None:
        """Read the session's frames into the shared inbox until it closes."""
        timeout = self.state.settings.heartbeat_s * 3
        try:
            while True:
                async with asyncio.timeout(timeout):  # not wait_for: see changes.py
                    text = await session.ws.receive_text()
                session.last_frame_at = time.monotonic()
                frame = protocol.parse(_holdable(text))
                if isinstance(frame, protocol.Ping):
                    await session.send(protocol.Pong(time=frame.time))
                elif isinstance(frame, protocol.Rotate):
                    await self._rotate(session, frame)
                elif isinstance(frame, protocol.Config):
                    await self.state.db.write(
                        partial(_set_local_config, session.node_id, frame.local_config)
                    )
                elif frame is not None:
                    if isinstance(frame, protocol.Ack):
                        # Answered: never sent again while the answer waits to be
                        # stored (under a burst that can take longer than the resend
                        # interval); stored, it is forgotten below.
                        session.sent_invokes[frame.invocation_id] = math.inf
                    self._inbox.put_nowait((session, frame))
        except TimeoutError:
            log.info("node %s missed its heartbeats: session closed", session.node_id)
            await session.close(1001, "heartbeat missed")
        except protocol.ProtocolError as exc:
            log.warning("node %s sent an unreadable frame: %s", session.node_id, exc)
            await session.close(protocol.CLOSE_PROTOCOL, "unreadable frame")
        except (WebSocketDisconnect, RuntimeError):
            session.closed.set()

    async def _rotate(self, session: AgentSession, frame: protocol.Rotate) -> None:
        """Replace the node's identity key; the session already proved the old one."""
        try:
            key = Ed25519PublicKey.from_public_bytes(
                base64.b64decode(frame.public_key, validate=True)
            )
            key.verify(
                base64.b64decode(frame.proof),
                protocol.rotate_message(session.node_id, frame.public_key),
            )
        except (InvalidSignature, ValueError):
            log.warning("node %s sent a key rotation without a valid proof", session.node_id)
            self.state.audit.agent(
                "agent:RotateKey",
                session.node_id,
                source_ip=None,
                decision="deny",
                session_id=session.session_id,
                reason="no valid proof of the new key",
            )
            return
        await self.state.db.write(partial(_set_public_key, session.node_id, frame.public_key))
        log.info("node %s rotated its identity key", session.node_id)
        self.state.audit.agent(
            "agent:RotateKey", session.node_id, source_ip=None, session_id=session.session_id
        )
        await session.send(protocol.Rotated(public_key=frame.public_key))

    async def _apply_loop(self) -> None:
        """Group commit: store every frame that arrived meanwhile, from all sessions, in
        one transaction, then acknowledge. Order per session is the inbox's order."""
        while True:
            batch = [await self._inbox.get()]
            size = 0
            while not self._inbox.empty() and len(batch) < MAX_BATCH and size < MAX_BATCH_BYTES:
                item = self._inbox.get_nowait()
                batch.append(item)
                if isinstance(item[1], protocol.Output):
                    size += len(item[1].data)
            groups: dict[AgentSession, list[protocol.Frame]] = {}
            for session, frame in batch:
                groups.setdefault(session, []).append(frame)
            try:
                results = await self.state.db.write(partial(self._apply_groups, groups))
            except Exception:
                log.exception("storing %d frames failed; storing each session's alone", len(batch))
                results = await self._apply_one_by_one(groups)
            for session, applied in results.items():
                self.state.metrics.frames_stored(groups[session], applied.output_bytes)
                self.state.output_stored(applied.grown)
                for invocation_id in applied.outputs:
                    self.state.changes.publish(output_key(invocation_id))
                for invocation_id, seq in applied.received.items():
                    await session.send(protocol.Received(invocation_id=invocation_id, seq=seq))
                for invocation_id in applied.stop:
                    await session.send(protocol.Cancel(invocation_id=invocation_id))
            # Stored: still never sent again while a delivery pass that read the
            # invocation before this commit may reach it (the session forgets later).
            stored_at = self.state.clock.monotonic()
            for session, frames in groups.items():
                for frame in frames:
                    if isinstance(frame, protocol.Ack):
                        session.answered(frame.invocation_id, stored_at)

    async def _apply_one_by_one(
        self, groups: dict[AgentSession, list[protocol.Frame]]
    ) -> dict[AgentSession, engine_invocations.Applied]:
        results = {}
        for session, frames in groups.items():
            try:
                results.update(
                    await self.state.db.write(partial(self._apply_groups, {session: frames}))
                )
            except Exception:
                # Nothing of it was acknowledged: the agent sends it again after reconnecting.
                log.exception(
                    "storing frames of node %s failed; closing its session", session.node_id
                )
                await session.close(1011, "server error")
        return results

    def _apply_groups(
        self, groups: dict[AgentSession, list[protocol.Frame]], tx: Tx
    ) -> dict[AgentSession, engine_invocations.Applied]:
        results = {}
        changed: set[str] = set()
        stored: list[engine_invocations.StoredOutput] = []
        # The commands locked first, in one order (another replica's transaction may
        # change invocations of the same commands), then every row the frames need,
        # read in a few statements rather than one per frame.
        loaded = engine_invocations.load_batch(
            tx.session,
            {
                f.invocation_id
                for frames in groups.values()
                for f in frames
                if isinstance(f, protocol.Ack | protocol.Output | protocol.State)
            },
        )
        for session, frames in groups.items():
            applier = engine_invocations.FrameApplier(
                tx.session, session.node_id, self.state.output, loaded
            )
            for frame in frames:
                if isinstance(frame, protocol.Ack):
                    applier.ack(frame)
                elif isinstance(frame, protocol.Output | protocol.State):
                    applier.numbered(frame)
            stored += applier.applied.stored
            # A reader following this output may wait on another replica.
            tx.publish("changed", *(output_key(i) for i in applier.applied.outputs))
            results[session] = applier.applied
            changed |= applier.applied.commands
        # Last of the rows this writes, after the invocations: noting may wait for
        # another replica's noting transaction to end (outputlog: numbers in commit order).
        self.state.output_log.note(tx.session, stored)
        self.state.refresh_commands(tx, changed)
        return results

    async def cancel(self, targets: list[tuple[str, str]]) -> None:
        """Tell the agents held here to stop these (node id, invocation id); the others
        are told by the replica that holds them (the cancel published itself:
        `engine.commands.cancel_command`), an agent that is offline when it connects."""
        for node_id, invocation_id in targets:
            session = self.session_for(node_id)
            if session is not None and await session.send(
                protocol.Cancel(invocation_id=invocation_id)
            ):
                session.sent_cancels[invocation_id] = self.state.clock.monotonic()

    async def node_deleted(self, node_id: str) -> None:
        """The node was deleted (committed): its agent goes if held here (the deletion
        told the other replicas: `engine.invocations.node_deleted`)."""
        await self.disconnect(node_id, protocol.CLOSE_NODE_UNKNOWN, "node deleted")

    async def disconnect(self, node_id: str, code: int, reason: str) -> None:
        session = self.sessions.get(node_id)
        if session is not None:
            await session.close(code, reason)

    async def _end(self, session: AgentSession) -> None:
        await session.close(1000, "bye")
        if self.sessions.get(session.node_id) is session:
            del self.sessions[session.node_id]
        self._lost[session.node_id] = session.session_id
        self._lost_wake.set()

    async def _lost_loop(self) -> None:
        """Mark the nodes whose sessions ended lost; those that end while one batch is
        being written go in the next."""
        while True:
            await self._lost_wake.wait()
            self._lost_wake.clear()
            if not await self._flush_lost():
                await asyncio.sleep(1.0)
                self._lost_wake.set()

    async def _flush_lost(self) -> bool:
        if not self._lost:
            return True
        ended, self._lost = self._lost, {}
        try:
            lost = await self.state.db.write(
                lambda tx: node_store.set_connections_lost(tx.session, ended)
            )
        except Exception:
            log.exception("could not mark %d node(s) lost; trying again", len(ended))
            for node_id, session_id in ended.items():
                self._lost.setdefault(node_id, session_id)  # unless it ended again since
            return False
        for node_id in lost:
            log.info("node %s disconnected", node_id, extra={"node_id": node_id})
        return True

    async def _touch_loop(self) -> None:
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

    async def _lease_loop(self) -> None:
        """Renew this replica's hold on its sessions (one statement for all of them) a
        third of a lease apart, mark lost the nodes of replicas whose lease ran out, and
        close the sessions of nodes deleted through another replica."""
        lease_s = self.state.settings.replica_lease_s
        while True:
            await asyncio.sleep(lease_s / 3)
            held = {node_id: s.session_id for node_id, s in self.sessions.items()}
            asked = time.monotonic()
            try:
                deleted, leader = await self.state.db.write(partial(self._renew, held))
            except Exception:
                log.exception("could not renew this replica's lease")
                continue
            self.state.lead(leader == self.state.replica_id, asked)
            for node_id in deleted:  # through another replica: its agent goes now
                await self.disconnect(node_id, protocol.CLOSE_NODE_UNKNOWN, "node deleted")

    def _renew(self, held: dict[str, str], tx: Tx) -> tuple[list[str], str | None]:
        now, replica_id = utcnow(), self.state.replica_id
        if replica_store.renew(tx.session, replica_id, now, self.state.settings.replica_lease_s):
            back = node_store.reclaim(tx.session, held, replica_id)
            log.warning(
                "this replica's lease had run out (the database was out of reach?); "
                "%d nodes it still holds are online again",
                len(back),
            )
        lost = replica_store.sweep(tx.session, now)
        if lost:
            log.info("%d nodes held by a replica whose lease ran out are lost", len(lost))
        return node_store.deleted_but_held(tx.session, replica_id), replica_store.leader(
            tx.session, now
        )


def _leave(replica_id: str, tx: Tx) -> None:
    replica_store.leave(tx.session, replica_id)


def _set_public_key(node_id: str, public_key: str, tx: Tx) -> None:
    node_store.set_public_key(tx.session, node_id, public_key)


def _set_local_config(node_id: str, config: dict[str, Any], tx: Tx) -> None:
    node_store.set_local_config(tx.session, node_id, config)


def _mark_pinged(node_ids: list[str], tx: Tx) -> None:
    node_store.mark_pinged(tx.session, node_ids, utcnow())


async def _close_quietly(ws: WebSocket, code: int, reason: str) -> None:
    try:
        await ws.close(code, reason)
    except Exception as exc:
        log.debug("close failed: %s", exc)


def _holdable(text: str) -> str:
    """An agent's frame with every NUL in its strings as U+FFFD: PostgreSQL's text holds
    no NUL (a state's message with one would fail every batch it is in, and the agent
    would send it again for ever), and SQLite is kept alike. Output is base64: its bytes
    are kept as they came."""
    if "\\u0000" not in text:
        return text
    return _NUL.sub(lambda m: m.group(1) + "\\ufffd", text)
