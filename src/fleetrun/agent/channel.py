"""The agent's connection: connect out, prove identity, keep the session alive,
reconnect with capped, jittered exponential backoff.

Failures are classified: a refused identity (the node was deregistered) is
terminal and the agent exits with a message; anything else (the server is down, the
network dropped, a heartbeat was missed) is retried.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass, replace

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from fleetrun import __version__
from fleetrun.agent import facts, rotate, tls
from fleetrun.agent.daemon import Agent
from fleetrun.agent.journal import Journal
from fleetrun.agent.state import Identity, StateDir, public_key_b64, sign_b64
from fleetrun.agent.status import FILE_NAME, StatusFile
from fleetrun.core import delivery, protocol

log = logging.getLogger(__name__)


class TerminalError(Exception):
    """The server will never accept this agent as it is: stop retrying."""


class _Silent(Exception):
    """The server sent nothing for three heartbeats: the session is dead."""


@dataclass
class Backoff:
    """Equal-jitter exponential backoff: half fixed, half random, capped."""

    base_s: float = 0.5
    cap_s: float = 30.0
    attempt: int = 0

    def next_delay(self) -> float:
        self.attempt += 1
        return delivery.backoff_s(
            self.attempt, base_s=self.base_s, cap_s=self.cap_s, jitter=random.random()
        )

    def reset(self) -> None:
        self.attempt = 0


def ws_url(server: str) -> str:
    base = server.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base[len("https://") :]
    elif base.startswith("http://"):
        base = "ws://" + base[len("http://") :]
    return base + protocol.CONNECT_PATH


async def handshake(
    ws: ClientConnection,
    identity: Identity,
    key: Ed25519PrivateKey,
    running: list[str],
    local_config: dict[str, object],
) -> protocol.Welcome:
    """Answer the server's challenge with a signed hello; the server's welcome."""
    challenge = protocol.parse(await asyncio.wait_for(ws.recv(), 10))
    if not isinstance(challenge, protocol.Challenge):
        raise protocol.ProtocolError("expected a challenge")
    time_ms = int(time.time() * 1000)
    message = protocol.hello_message(challenge.nonce, identity.node_id, time_ms)
    hello = protocol.Hello(
        node_id=identity.node_id,
        time_ms=time_ms,
        signature=sign_b64(key, message),
        agent_version=__version__,
        facts=facts.collect(),
        local_config=local_config,
        running=running,
    )
    await ws.send(protocol.dump(hello))
    welcome = protocol.parse(await asyncio.wait_for(ws.recv(), 10))
    if not isinstance(welcome, protocol.Welcome):
        raise protocol.ProtocolError("expected a welcome")
    return welcome


def connect_to(state: StateDir, identity: Identity) -> connect:
    """A WebSocket connection to the agent channel, trusting what the node trusts."""
    url = ws_url(identity.server)
    options: dict[str, object] = {}
    if url.startswith("wss://"):
        options["ssl"] = tls.context(state.ca_path)
    return connect(
        url,
        open_timeout=10,
        ping_interval=None,
        max_size=protocol.MAX_FRAME_BYTES,
        close_timeout=2,
        compression=None,  # CPU on both ends for little: output is base64 already
        **options,  # type: ignore[arg-type]
    )


async def rotate_once(state: StateDir) -> None:
    """Rotate the identity key over a session of its own (no agent is running)."""
    identity = state.load_identity()
    running = [e.invocation_id for e in Journal(state.journal_dir).unreported()]
    request = rotate.frame(state, identity.node_id)
    if request is None:
        raise TerminalError("There is no pending key to rotate to.")
    try:
        async with connect_to(state, identity) as ws:
            await handshake(ws, identity, state.load_key(), running, {})
            await ws.send(protocol.dump(request))
            async with asyncio.timeout(30):
                async for text in ws:
                    frame = protocol.parse(text)
                    if isinstance(frame, protocol.Rotated):
                        rotate.promote(state, frame.public_key)
                        return
    except (OSError, TimeoutError, ConnectionClosed, InvalidHandshake) as exc:
        raise TerminalError(
            f"Cannot reach {identity.server} to rotate the key ({exc}); the new key stays "
            "pending and the agent uses it when it next connects."
        ) from exc


class Channel:
    def __init__(
        self,
        agent: Agent,
        identity: Identity,
        key: Ed25519PrivateKey,
        *,
        reconnect_max_s: float = 30.0,
    ) -> None:
        self.agent = agent
        self.home = identity  # every URL the node knows
        self.identity = identity  # ... and the one it tries now (`server`)
        self._turn = 0
        self.key = key
        self.backoff = Backoff(cap_s=reconnect_max_s)
        self.connected = asyncio.Event()
        self.status = StatusFile(agent.state.root / FILE_NAME, identity.server)

    async def run_forever(self) -> None:
        try:
            for url in self.home.servers:
                tls.check_transport(url, self.home.insecure)
        except tls.TransportError as exc:
            raise TerminalError(str(exc)) from exc
        self.status.trying()
        while True:
            started = time.monotonic()
            try:
                async with connect_to(self.agent.state, self.identity) as ws:
                    ended = await self._session(ws)
            except TerminalError as exc:
                self.status.disconnected(str(exc))
                raise
            except (
                OSError,
                TimeoutError,
                ConnectionClosed,
                InvalidHandshake,
                protocol.ProtocolError,
            ) as exc:
                ended = self._describe(exc)
                log.info("connection to %s ended: %s", self.identity.server, exc)
            except InvalidURI as exc:
                raise TerminalError(f"The server URL {self.identity.server} is not valid.") from exc
            finally:
                self.connected.clear()
            self.status.disconnected(ended)
            self._next_server()
            if time.monotonic() - started > 30:
                self.backoff.reset()
            delay = self.backoff.next_delay()
            log.info("reconnecting in %.1fs", delay)
            await asyncio.sleep(delay)

    def _next_server(self) -> None:
        """After a session or an attempt ends, the next URL the node knows (replicas
        fail over in turn; with one URL, the same again)."""
        servers = self.home.servers
        if len(servers) == 1:
            return
        self._turn = (self._turn + 1) % len(servers)
        self.identity = replace(self.home, server=servers[self._turn])
        self.status.server = self.identity.server
        log.info("trying %s next", self.identity.server)

    def _describe(self, exc: BaseException) -> str:
        """Why a session or an attempt ended, in one sentence (`fleetrun-agent status`)."""
        server = self.identity.server
        if isinstance(exc, ConnectionClosed):
            return f"The connection to {server} was lost ({exc})."
        if isinstance(exc, TimeoutError):
            return f"{server} did not answer in time."
        if isinstance(exc, InvalidHandshake):
            return f"{server} refused the agent's connection ({exc})."
        if isinstance(exc, protocol.ProtocolError):
            return f"{server} sent a frame this agent cannot read ({exc})."
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return f"Cannot connect to {server}: {reason or type(exc).__name__}."

    async def _session(self, ws: ClientConnection) -> str:
        """One session, from the handshake to its end; why it ended, in one sentence."""
        welcome = await self._handshake(ws)
        self.backoff.reset()
        self.connected.set()
        self.status.connected(welcome.session_id)
        self.agent.stats.sessions += 1
        log.info("connected to %s as %s", self.identity.server, self.identity.node_id)
        last_frame = time.monotonic()
        send_lock = asyncio.Lock()

        async def send(text: str) -> None:
            async with send_lock:
                await ws.send(text)
            self.agent.stats.sent(text)

        async def receive() -> None:
            nonlocal last_frame
            async for text in ws:
                last_frame = time.monotonic()
                try:
                    frame = protocol.parse(text)
                except protocol.ProtocolError as exc:
                    log.warning("unreadable frame from the server: %s", exc)
                    continue
                if isinstance(frame, protocol.Rotated):
                    self._rotated(frame.public_key)
                elif frame is not None:
                    await self.agent.handle(frame, send)

        async def rotation() -> None:
            """Swap the identity key when `fleetrun-agent rotate-key` asks for it."""
            while True:
                if rotate.requested(self.agent.state):
                    request = rotate.frame(self.agent.state, self.identity.node_id)
                    if request is not None:
                        await send(protocol.dump(request))
                        await asyncio.sleep(5)  # the answer comes as a `rotated` frame
                        continue
                await asyncio.sleep(1)

        async def heartbeat() -> None:
            while True:
                await asyncio.sleep(welcome.heartbeat_s)
                if time.monotonic() - last_frame > welcome.heartbeat_s * 3:
                    log.info("the server stopped answering; reconnecting")
                    raise _Silent
                await send(protocol.dump(protocol.Ping(time=time.time())))

        tasks = [
            asyncio.create_task(receive()),
            asyncio.create_task(self.agent.uplink(send)),
            asyncio.create_task(self.agent.watch_config(send)),
            asyncio.create_task(rotation()),
            asyncio.create_task(heartbeat()),
        ]
        ended = None
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                try:
                    task.result()  # re-raise a failure
                except _Silent:
                    ended = (
                        f"{self.identity.server} stopped answering "
                        f"(nothing for {welcome.heartbeat_s * 3:.0f} s)."
                    )
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        self._check_close(ws)
        if ended is None:
            code = ws.close_code
            reason = f" ({ws.close_reason})" if ws.close_reason else ""
            ended = f"{self.identity.server} closed the session (close code {code}){reason}."
        return ended

    async def _handshake(self, ws: ClientConnection) -> protocol.Welcome:
        try:
            return await handshake(
                ws, self.identity, self.key, self.agent.running_ids(), self.agent.config.report()
            )
        except ConnectionClosed:
            self._check_close(ws)
            raise

    def _check_close(self, ws: ClientConnection) -> None:
        code = ws.close_code
        if code == protocol.CLOSE_NODE_UNKNOWN:
            raise TerminalError(
                f"The server does not know node {self.identity.node_id} (it was deleted or "
                "deregistered): register this node again with `fleetrun-agent register`."
            )
        if code == protocol.CLOSE_PROTOCOL_TOO_OLD:
            raise TerminalError(
                f"The server refused this agent ({ws.close_reason}): install a newer "
                f"fleetrun-agent than {__version__} (protocol {protocol.PROTOCOL_VERSION})."
            )
        if code == protocol.CLOSE_AUTH_FAILED:
            log.warning("the server refused this node's signature (%s)", ws.close_reason)
            # A rotation may have reached the server just before this agent died.
            pending = rotate.pending_key(self.agent.state)
            if pending is not None and public_key_b64(pending) != public_key_b64(self.key):
                log.info("trying the pending rotated key")
                self.key = pending

    def _rotated(self, public_key: str) -> None:
        if rotate.promote(self.agent.state, public_key):
            self.key = self.agent.state.load_key()
            log.info("identity key rotated; the old key no longer works")
