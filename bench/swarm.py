"""Swarm: K simulated agents speaking the real agent protocol to one real server.

    python bench/swarm.py [--agents 1000] [--processes 1|2] [--runs 3] [--json]
                          [--database-url postgresql+psycopg://USER@HOST/DB]
                          [--server-workers N]

Starts a real server (SQLite, or PostgreSQL with --database-url or
FLEETRUN_TEST_DATABASE_URL: a fresh database is made under that URL and dropped after)
and K simulated agents in one or two swarm processes, each one asyncio event loop
holding its share of the agents. Every simulated agent is a real client of the server:

- it registers through the real /v1/agent/register route with an activation made
  through the SDK, with an Ed25519 identity key (and an X25519 sealing key) of its own;
- it holds one WebSocket to /v1/agent/connect, opened with the agent's own handshake
  (`fleetrun.agent.channel.handshake`: signed challenge, hello with facts, local
  configuration and running invocations), and pings every heartbeat as the agent does;
- it answers each `invoke` with the frames the real agent sends for `echo hi`: `ack`
  accepted, then numbered `state` InProgress (invocation), `state` InProgress (step),
  `output` "hi\\n", `state` Success exit 0 (step), `state` Success exit 0 (invocation),
  at most the agent's WINDOW unacknowledged at a time, all of them sent again on a new
  session until `received`; a repeated `invoke` is acknowledged and not run again
  (the journal), and `cancel` ends a running one as Cancelled. No script is run.

It prints: the time to register and to connect K agents (all Online as the server
reports it), the server's idle CPU and RSS with K sessions, send -> done for one
`send --all` (`echo hi`) at the default rate control and at 100 % concurrency, the
invoke frames received again for an invocation already received, and how long a
SIGTERM takes to stop the server with K sessions (and whether its log holds a
traceback). See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import queue
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import _common  # noqa: F401  (puts the repository on sys.path)
import httpx
from _common import SERVER_ENV, rss_mb
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from tests.harness import PG_ENV, ServerProcess, spawned_children
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from fleetrun import __version__
from fleetrun.agent import facts
from fleetrun.agent.channel import Backoff, connect_to, handshake
from fleetrun.agent.config import LocalConfig
from fleetrun.agent.daemon import WINDOW
from fleetrun.agent.state import Identity, StateDir, public_key_b64
from fleetrun.core import protocol, sealing
from fleetrun.core.statuses import InvocationStatus, StatusDetail, StepStatus
from fleetrun.schemas.agent import RegisterRequest
from fleetrun.sdk import Client

MAX_PER_ACTIVATION = 1000  # the API's registration limit of one activation
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------
# The swarm: one process, one event loop, many simulated agents
# ---------------------------------------------------------------------------------


class Stats:
    """Counters of one swarm process, summed over its agents."""

    def __init__(self) -> None:
        self.invokes = 0  # invoke frames received
        self.duplicate_invokes = 0  # ... for an invocation id this agent had received
        self.acks = 0
        self.frames_sent = 0  # output and state frames sent
        self.frames_resent = 0  # ... of which sent before (a new session re-sends them)
        self.received = 0  # received frames from the server
        self.cancels = 0  # cancel frames received
        self.cancelled = 0  # ... that ended a running invocation
        self.pings = 0
        self.sessions = 0  # sessions opened (welcomes received)
        self.reconnects = 0  # ... by an agent that had held one before
        self.connect_errors = 0  # failed connection attempts (then retried with backoff)
        self.unreadable = 0  # frames from the server that did not parse
        self.agent_errors = 0  # failures inside the swarm itself (see its log)

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


class SimOutbox:
    """The frames of one invocation not yet acknowledged: the agent's spool
    (fleetrun.agent.journal.Outbox) kept in memory, with the same numbering, window,
    cumulative acknowledgement and re-send on a new session."""

    __slots__ = (
        "acked_seq",
        "final_seq",
        "frames",
        "high_sent",
        "invocation_id",
        "next_seq",
        "sent_seq",
    )

    def __init__(self, invocation_id: str) -> None:
        self.invocation_id = invocation_id
        self.frames: deque[tuple[int, str]] = deque()  # (seq, text) not yet acknowledged
        self.next_seq = 1
        self.acked_seq = 0
        self.sent_seq = 0  # sent on this session
        self.high_sent = 0  # highest ever sent: sending it again is a re-send
        self.final_seq: int | None = None

    def state(self, **fields: Any) -> None:

        frame = protocol.State(invocation_id=self.invocation_id, seq=self.next_seq, **fields)
        self.frames.append((frame.seq, protocol.dump(frame)))
        self.next_seq += 1
        if frame.step is None and frame.status not in ("InProgress", "Pending"):
            self.final_seq = frame.seq

    def output(self, step: int, data: bytes) -> None:

        frame = protocol.Output(
            invocation_id=self.invocation_id,
            seq=self.next_seq,
            step=step,
            stream="stdout",
            data=protocol.encode(data),
        )
        self.frames.append((frame.seq, protocol.dump(frame)))
        self.next_seq += 1

    def rewind(self) -> None:
        """A new session: everything not acknowledged goes out again."""
        self.sent_seq = self.acked_seq

    def take(self, window: int) -> list[tuple[int, str]]:
        """The frames after the last one sent, keeping at most `window` unacknowledged."""
        room = window - (self.sent_seq - self.acked_seq)
        taken = [(seq, text) for seq, text in self.frames if seq > self.sent_seq][: max(room, 0)]
        if taken:
            self.sent_seq = taken[-1][0]
        return taken

    def ack(self, seq: int) -> None:
        if seq <= self.acked_seq:
            return
        self.acked_seq = min(seq, self.next_seq - 1)
        self.sent_seq = max(self.sent_seq, self.acked_seq)
        while self.frames and self.frames[0][0] <= self.acked_seq:
            self.frames.popleft()

    @property
    def done(self) -> bool:
        return self.final_seq is not None and self.acked_seq >= self.final_seq


class SimAgent:
    """One simulated node: its identity, its journal of invocation ids, its outboxes,
    and at most one live session."""

    def __init__(self, swarm: Swarm, index: int) -> None:
        self.swarm = swarm
        self.index = index
        self.name = f"swarm{index:05d}"
        self.key: Any = None  # Ed25519 identity key, made at registration; never sent
        self.identity: Any = None  # fleetrun.agent.state.Identity, after registration
        self.journal: set[str] = set()  # every invocation id ever accepted
        self.outboxes: dict[str, SimOutbox] = {}  # invocations not fully acknowledged
        self.running: dict[str, asyncio.Event] = {}  # invocation id -> its cancel
        self.ws: Any = None
        self.lock = asyncio.Lock()  # one sender at a time, as the agent's send lock
        self.last_frame = 0.0
        self.held_session = False
        self.task: asyncio.Task[None] | None = None

    # -- the connection, as fleetrun.agent.channel.Channel does it --------------------

    async def run_forever(self, gate: asyncio.Semaphore | None) -> None:

        backoff = Backoff(cap_s=self.swarm.reconnect_max_s)
        while True:
            started = time.monotonic()
            try:
                if gate is not None:  # the first connection: in bounded batches
                    async with gate:
                        ws, welcome = await self._open()
                    gate = None
                else:
                    ws, welcome = await self._open()
            except (OSError, TimeoutError, ConnectionClosed, InvalidHandshake) as exc:
                self.swarm.stats.connect_errors += 1
                self.swarm.log(f"{self.name}: connection failed: {exc!r}")
            except protocol.ProtocolError as exc:
                self.swarm.stats.connect_errors += 1
                self.swarm.log(f"{self.name}: handshake failed: {exc}")
            else:
                backoff.reset()
                try:
                    await self._session(ws, welcome)
                except (OSError, TimeoutError, ConnectionClosed) as exc:
                    self.swarm.log(f"{self.name}: session ended: {exc!r}")
                except Exception:
                    self.swarm.stats.agent_errors += 1
                    self.swarm.log(f"{self.name}: session failed:\n{traceback.format_exc()}")
                if ws.close_code == protocol.CLOSE_NODE_UNKNOWN:
                    self.swarm.log(f"{self.name}: the server does not know this node; stopping")
                    return
            if time.monotonic() - started > 30:
                backoff.reset()
            await asyncio.sleep(backoff.next_delay())

    async def _open(self) -> tuple[Any, Any]:

        ws = await connect_to(self.swarm.state_dir, self.identity)
        try:
            welcome = await handshake(
                ws, self.identity, self.key, list(self.outboxes), self.swarm.local_config
            )
        except BaseException:
            with contextlib.suppress(Exception):
                await ws.close()
            raise
        return ws, welcome

    async def _session(self, ws: Any, welcome: Any) -> None:

        self.ws = ws
        self.last_frame = time.monotonic()
        self.swarm.stats.sessions += 1
        if self.held_session:
            self.swarm.stats.reconnects += 1
        self.held_session = True
        self.swarm.session_opened()
        heartbeat = asyncio.create_task(self._heartbeat(ws, welcome.heartbeat_s))
        try:
            # A new session: everything not acknowledged goes out again (Outbox.rewind).
            await self._flush(rewind=True)
            async for text in ws:
                self.last_frame = time.monotonic()
                try:
                    frame = protocol.parse(text)
                except protocol.ProtocolError:
                    self.swarm.stats.unreadable += 1
                    continue
                if frame is not None:
                    await self._handle(frame)
        finally:
            self.ws = None
            self.swarm.session_closed()
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

    async def _heartbeat(self, ws: Any, interval_s: float) -> None:

        while True:
            await asyncio.sleep(interval_s)
            if time.monotonic() - self.last_frame > interval_s * 3:
                self.swarm.log(f"{self.name}: the server stopped answering; reconnecting")
                await ws.close()
                return
            with contextlib.suppress(Exception):  # a closing socket: the reader sees it
                async with self.lock:
                    await ws.send(protocol.dump(protocol.Ping(time=time.time())))
                self.swarm.stats.pings += 1

    # -- frames from the server, as fleetrun.agent.daemon.Agent.handle ------------------

    async def _handle(self, frame: Any) -> None:

        if isinstance(frame, protocol.Invoke):
            await self._invoke(frame)
        elif isinstance(frame, protocol.Received):
            self.swarm.stats.received += 1
            outbox = self.outboxes.get(frame.invocation_id)
            if outbox is not None:
                outbox.ack(frame.seq)
                if outbox.done and frame.invocation_id not in self.running:
                    del self.outboxes[frame.invocation_id]  # reported: keep only the id
                await self._flush()
        elif isinstance(frame, protocol.Cancel):
            self.swarm.stats.cancels += 1
            cancel = self.running.get(frame.invocation_id)
            if cancel is not None:
                cancel.set()

    async def _invoke(self, invoke: Any) -> None:

        stats = self.swarm.stats
        stats.invokes += 1
        ack = protocol.dump(protocol.Ack(invocation_id=invoke.invocation_id, accepted=True))
        if invoke.invocation_id in self.journal:
            # Seen before: acknowledged again, never run again.
            stats.duplicate_invokes += 1
            await self._send(ack)
            return
        self.journal.add(invoke.invocation_id)
        await self._send(ack)
        stats.acks += 1
        outbox = SimOutbox(invoke.invocation_id)
        self.outboxes[invoke.invocation_id] = outbox
        started = time.time()
        outbox.state(step=None, status=InvocationStatus.IN_PROGRESS, started_at=started)
        steps = range(len(invoke.steps))
        run_s = self.swarm.run_s
        if run_s <= 0:
            # `echo hi` exits at once: every frame goes out together.
            for idx in steps:
                outbox.state(step=idx, status=StepStatus.IN_PROGRESS, started_at=started)
                outbox.output(idx, b"hi\n")
                outbox.state(
                    step=idx,
                    status=StepStatus.SUCCESS,
                    exit_code=0,
                    started_at=started,
                    ended_at=time.time(),
                )
            outbox.state(
                step=None,
                status=InvocationStatus.SUCCESS,
                detail=StatusDetail.SUCCESS,
                exit_code=0,
                started_at=started,
                ended_at=time.time(),
            )
            await self._flush()
            return
        cancel = asyncio.Event()
        self.running[invoke.invocation_id] = cancel
        task = asyncio.create_task(self._execute(outbox, steps, started, cancel))
        self.swarm.tasks.add(task)
        task.add_done_callback(self.swarm.tasks.discard)
        await self._flush()

    async def _execute(
        self, outbox: SimOutbox, steps: range, started: float, cancel: asyncio.Event
    ) -> None:
        """Steps that take --run-seconds each, and a cancel that stops them (the
        agent's SIGTERM to the group: exit code 143)."""

        try:
            cancelled = False
            for idx in steps:
                if cancelled:
                    outbox.state(step=idx, status=StepStatus.SKIPPED)
                    continue
                step_started = time.time()
                outbox.state(step=idx, status=StepStatus.IN_PROGRESS, started_at=step_started)
                outbox.output(idx, b"hi\n")
                await self._flush()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(cancel.wait(), self.swarm.run_s)
                cancelled = cancel.is_set()
                outbox.state(
                    step=idx,
                    status=StepStatus.CANCELLED if cancelled else StepStatus.SUCCESS,
                    exit_code=143 if cancelled else 0,
                    started_at=step_started,
                    ended_at=time.time(),
                    message="Cancelled by an operator." if cancelled else None,
                )
            if cancelled:
                self.swarm.stats.cancelled += 1
            outbox.state(
                step=None,
                status=InvocationStatus.CANCELLED if cancelled else InvocationStatus.SUCCESS,
                detail=StatusDetail.CANCELLED if cancelled else StatusDetail.SUCCESS,
                exit_code=143 if cancelled else 0,
                started_at=started,
                ended_at=time.time(),
                message="Cancelled by an operator." if cancelled else None,
            )
        finally:
            self.running.pop(outbox.invocation_id, None)
        await self._flush()

    # -- frames to the server, as Agent.uplink ------------------------------------------

    async def _send(self, text: str) -> None:
        ws = self.ws
        if ws is None:
            return  # the next session re-sends what matters
        async with self.lock:
            await ws.send(text)

    async def _flush(self, rewind: bool = False) -> None:
        """Send what is unsent, at most WINDOW unacknowledged frames per invocation."""

        ws = self.ws
        if ws is None:
            return
        stats = self.swarm.stats
        try:
            async with self.lock:
                for outbox in list(self.outboxes.values()):
                    if rewind:
                        outbox.rewind()
                    for seq, text in outbox.take(WINDOW):
                        await ws.send(text)
                        stats.frames_sent += 1
                        if seq <= outbox.high_sent:
                            stats.frames_resent += 1
                        outbox.high_sent = max(outbox.high_sent, seq)
        except ConnectionClosed:
            return  # the reader ends the session; the next one re-sends


class Swarm:
    """The simulated agents of one process and what they share."""

    def __init__(self, args: dict[str, Any], workdir: Path) -> None:

        self.server: str = args["server"]
        self.indexes: list[int] = args["indexes"]
        self.run_s: float = args["run_s"]
        self.reconnect_max_s: float = args["reconnect_max_s"]
        # The agents are plain-http clients of a loopback server: no CA file is read.
        self.state_dir = StateDir(workdir)
        self.local_config = LocalConfig().effective()
        self.stats = Stats()
        self.agents = [SimAgent(self, i) for i in self.indexes]
        self.tasks: set[asyncio.Task[None]] = set()
        self.live = 0
        self.all_live = asyncio.Event()
        self.log_file = (workdir / f"swarm-{os.getpid()}.log").open("a", buffering=1)

    def log(self, line: str) -> None:
        self.log_file.write(f"{time.strftime('%H:%M:%S')} {line}\n")

    def session_opened(self) -> None:
        self.live += 1
        if self.live >= len(self.agents):
            self.all_live.set()

    def session_closed(self) -> None:
        self.live -= 1
        self.all_live.clear()

    async def register(self, activations: list[list[str]], concurrency: int) -> dict[str, Any]:
        """Each agent trades the activation for a node id over the real route."""
        node_facts = facts.collect()
        gate = asyncio.Semaphore(concurrency)
        errors: list[str] = []
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

        async def one(client: httpx.AsyncClient, agent: SimAgent) -> None:
            activation_id, code = activations[agent.index // MAX_PER_ACTIVATION]
            agent.key = Ed25519PrivateKey.generate()  # made on the node, as the agent does
            body = RegisterRequest(
                activation_id=activation_id,
                activation_code=code,
                public_key=public_key_b64(agent.key),
                seal_public_key=sealing.public_key_b64(X25519PrivateKey.generate()),
                name=agent.name,
                tags={},
                facts=node_facts,
                agent_version=__version__,
            )
            async with gate:
                for attempt in range(5):
                    try:
                        response = await client.post(
                            "/v1/agent/register",
                            json=body.model_dump(),
                            headers={"user-agent": f"fleetrun-agent/{__version__}"},
                        )
                    except httpx.TransportError as exc:
                        if attempt == 4:
                            errors.append(f"{agent.name}: {exc!r}")
                            return
                        await asyncio.sleep(0.5 * (attempt + 1))
                        continue
                    if response.status_code != 201:
                        errors.append(f"{agent.name}: {response.status_code} {response.text}")
                        return
                    answer = response.json()
                    agent.identity = Identity(
                        node_id=answer["node_id"], server=self.server, name=answer["name"]
                    )
                    return

        started = time.perf_counter()
        async with httpx.AsyncClient(base_url=self.server, limits=limits, timeout=120) as client:
            await asyncio.gather(*(one(client, a) for a in self.agents))
        return {
            "registered": sum(a.identity is not None for a in self.agents),
            "seconds": time.perf_counter() - started,
            "errors": errors[:5],
            "error_count": len(errors),
        }

    async def connect(self, concurrency: int, timeout_s: float) -> dict[str, Any]:
        """Every agent connects, at most `concurrency` handshakes at a time; done when
        every agent holds a session (or the time is up)."""
        gate = asyncio.Semaphore(concurrency)
        started = time.perf_counter()
        for agent in self.agents:
            if agent.identity is not None:
                agent.task = asyncio.create_task(agent.run_forever(gate))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.all_live.wait(), timeout_s)
        return {"live": self.live, "seconds": time.perf_counter() - started}

    async def stop(self) -> None:
        running = [a.task for a in self.agents if a.task is not None] + list(self.tasks)
        for task in running:
            task.cancel()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*running, return_exceptions=True), 10)
        self.log_file.close()


async def worker_main(workdir: Path) -> None:
    """A swarm process: commands from the bench on stdin, one JSON answer per line."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    swarm: Swarm | None = None

    def answer(**fields: Any) -> None:
        sys.stdout.write(json.dumps(fields) + "\n")
        sys.stdout.flush()

    async def commands() -> None:
        nonlocal swarm
        while True:
            line = await reader.readline()
            if not line:
                return  # the bench is gone: so is the swarm
            request = json.loads(line)
            op = request["op"]
            if op == "start":
                swarm = Swarm(request, workdir)
                answer(op=op, pid=os.getpid())
            elif op == "register" and swarm is not None:
                result = await swarm.register(request["activations"], request["concurrency"])
                answer(op=op, **result)
            elif op == "connect" and swarm is not None:
                result = await swarm.connect(request["concurrency"], request["timeout_s"])
                answer(op=op, **result)
            elif op == "stats" and swarm is not None:
                answer(op=op, live=swarm.live, **swarm.stats.as_dict())
            elif op == "stop":
                return

    task = asyncio.create_task(commands())
    stop = asyncio.create_task(stopping.wait())
    await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
    for pending in (task, stop):
        pending.cancel()
    if swarm is not None:
        await swarm.stop()
    answer(op="stopped")


# ---------------------------------------------------------------------------------
# The bench: server, swarm processes, measurements
# ---------------------------------------------------------------------------------


class Worker:
    """A swarm process, spoken to over its stdin and stdout."""

    def __init__(self, number: int, workdir: Path) -> None:
        self.number = number
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", str(workdir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=(workdir / f"swarm-{number}.stderr").open("ab"),
            text=True,
            bufsize=1,
        )
        self.answers: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with contextlib.suppress(ValueError):
                self.answers.put(json.loads(line))
        self.answers.put(None)

    def send(self, **request: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()

    def answer(self, op: str, timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                got = self.answers.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                raise RuntimeError(
                    f"swarm process {self.number} did not answer {op!r} in {timeout_s:.0f} s"
                ) from None
            if got is None:
                raise RuntimeError(
                    f"swarm process {self.number} exited ({self.proc.poll()}); see its log"
                )
            if got.get("op") == op:
                return got

    def close(self, timeout_s: float = 15.0) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                self.send(op="stop")
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()


def ask(workers: list[Worker], wait_s: float, **request: Any) -> list[dict[str, Any]]:
    """Send `request` to every swarm process; their answers, waiting up to `wait_s`."""
    for worker in workers:
        worker.send(**request)
    return [worker.answer(request["op"], wait_s) for worker in workers]


def raise_fd_limit(agents: int, processes: int) -> dict[str, Any]:
    """The soft RLIMIT_NOFILE up to the hard limit (the server and the swarm processes
    inherit it); a warning when even the hard limit is short of what K sessions need."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # The server holds one socket per agent; each swarm process one per its agents.
    needed = agents + 512
    target = hard if hard != resource.RLIM_INFINITY else max(soft, needed)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    warning = None
    if soft < needed:
        warning = (
            f"RLIMIT_NOFILE is {soft} (hard limit {hard}): {agents} sessions need about "
            f"{needed} descriptors in the server process; raise the hard limit "
            "(ulimit -Hn, or LimitNOFILE in a unit) or run fewer agents."
        )
    return {"soft": soft, "hard": hard, "needed": needed, "warning": warning}


def server_pids(server: ServerProcess) -> list[int]:
    """The server's process and, with --server-workers, its workers."""
    assert server.proc is not None
    return [server.proc.pid, *spawned_children(server.proc.pid)]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def idle_cpu(pids: list[int], seconds: float) -> list[float]:
    """Percent of one core each process used over `seconds`."""
    before = [cpu_seconds(p) for p in pids]
    started = time.monotonic()
    time.sleep(seconds)
    after = [cpu_seconds(p) for p in pids]
    elapsed = time.monotonic() - started
    return [(a - b) / elapsed * 100 for a, b in zip(after, before, strict=True)]


def online_count(client: Any) -> int:
    return len(client.list_nodes(ping_status="Online"))


def send_all(
    client: Client,
    max_concurrency: str | None,
    timeout_s: float,
    pids: list[int],
    server_n: int = 1,
) -> dict[str, Any]:
    """One `send --all` of `echo hi`, timed from the request to every invocation done;
    with the CPU the server (the first `server_n` pids: its processes) and the swarm
    (the rest) spent meanwhile."""
    cpu = [cpu_seconds(pid) for pid in pids]
    started = time.perf_counter()
    command = client.send_command(script="echo hi", all_nodes=True, max_concurrency=max_concurrency)
    done = client.wait(command.id, timeout_s=timeout_s)
    elapsed = time.perf_counter() - started
    cpu = [cpu_seconds(pid) - before for pid, before in zip(pids, cpu, strict=True)]
    result = {
        "server_cpu_s": sum(cpu[:server_n]),
        "swarm_cpu_s": sum(cpu[server_n:]),
        "seconds": elapsed if done.done else None,
        "status": done.status,
        "targets": done.target_count,
        "completed": done.completed_count,
        "errors": done.error_count,
        "concurrency_limit": command.concurrency_limit,
    }
    if not done.done:
        with contextlib.suppress(Exception):
            client.cancel_command(command.id)
    return result


def spread(values: list[float | None]) -> dict[str, float | None]:
    good = [v for v in values if v is not None]
    if not good:
        return {"min": None, "median": None, "max": None}
    return {"min": min(good), "median": statistics.median(good), "max": max(good)}


def tracebacks(log: Path) -> tuple[int, list[str]]:
    """How many tracebacks the server's log holds, and the kinds: the exception and
    the innermost frames of the project's own code (else the innermost ones), each
    with how many tracebacks ended that way, the most frequent first."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return 0, []
    kinds: dict[str, int] = {}
    count = 0
    for start, line in enumerate(lines):
        if not line.startswith("Traceback (most recent call last)"):
            continue
        count += 1
        frames: list[str] = []
        exception = "?"
        for follow in lines[start + 1 :]:
            if follow.startswith("  File "):
                frames.append(follow.strip())
            elif not follow.startswith(" "):
                exception = follow.strip()
                break
        own = [f for f in frames if "/fleetrun/" in f and "site-packages" not in f]
        where = " -> ".join(short_frame(f) for f in (own or frames or ["?"])[-2:])
        kind = f"{exception}  [at {where}]"
        kinds[kind] = kinds.get(kind, 0) + 1
    ranked = sorted(kinds.items(), key=lambda item: -item[1])
    return count, [f"{n} x {kind}" for kind, n in ranked[:3]]


def short_frame(line: str) -> str:
    """`File ".../src/fleetrun/x.py", line 9, in f` as `fleetrun/x.py:9 in f`."""
    frame = re.match(r'File "(.*)", line (\d+), in (.*)', line)
    if not frame:
        return line
    path = frame[1].split("/src/", 1)[-1].split("site-packages/", 1)[-1]
    return f"{path}:{frame[2]} in {frame[3]}"


def stop_server(server: ServerProcess, timeout_s: float) -> float | None:
    """SIGTERM; the seconds until the process exited, or None when it did not: then
    SIGABRT, so that Python's fault handler writes every thread's stack into the
    server's log (where it hung), and SIGKILL."""
    assert server.proc is not None
    started = time.perf_counter()
    server.proc.send_signal(signal.SIGTERM)
    try:
        server.proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        server.proc.send_signal(signal.SIGABRT)
        try:
            server.proc.wait(10)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()
        return None
    return time.perf_counter() - started


def hung_stack(log: Path) -> str:
    """The main thread's stack from a fault-handler dump in the log, if there is one."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return ""
    at = text.rfind("Fatal Python error: Aborted")
    if at < 0:
        return ""
    lines = text[at:].splitlines()
    current = next((i for i, ln in enumerate(lines) if ln.startswith("Current thread")), None)
    if current is None:
        return "\n".join(lines[:20])
    stack = []
    for line in lines[current + 1 :]:
        if not line.startswith("  "):
            break
        stack.append(line.strip())
    return "\n".join(stack[:12])


def idle_and_send(
    args: argparse.Namespace,
    server: ServerProcess,
    client: Client,
    pids: list[int],
    out: dict[str, Any],
) -> None:
    """The figures that need every agent Online: idle cost, memory, send --all."""
    k = args.agents
    # Idle: K sessions pinging every heartbeat, nothing else.
    time.sleep(args.settle)
    mine = server_pids(server)
    n = len(mine)
    cpu_pids = [*mine, *pids]
    cpu = idle_cpu(cpu_pids, args.idle_seconds)
    out["idle_server_cpu_pct"] = sum(cpu[:n])
    out["idle_swarm_cpu_pct"] = sum(cpu[n:])
    out["server_rss_mb"] = sum(rss_mb(pid) for pid in mine)
    out["swarm_rss_mb"] = sum(rss_mb(pid) for pid in pids)

    # send --all, at the default rate control and at 100 % concurrency.
    for key, concurrency in (("send_default", None), ("send_100pct", "100%")):
        runs = []
        for run in range(args.runs):
            result = send_all(client, concurrency, args.send_timeout, cpu_pids, n)
            runs.append(result)
            seconds = result["seconds"]
            shown = f"{seconds:.2f} s" if seconds is not None else "did not finish"
            log(
                args,
                f"{key} run {run + 1}: {shown} ({result['completed']}/{k} completed; CPU "
                f"server {result['server_cpu_s']:.1f} s, swarm {result['swarm_cpu_s']:.1f} s)",
            )
        times = [r["seconds"] for r in runs]
        out[key] = {
            "concurrency": concurrency or "default",
            "concurrency_limit": runs[0]["concurrency_limit"],
            "runs_s": times,
            **spread(times),
            "not_finished": sum(t is None for t in times),
            "failed_invocations": sum(r["errors"] for r in runs),
            "server_cpu_s": [r["server_cpu_s"] for r in runs],
            "swarm_cpu_s": [r["swarm_cpu_s"] for r in runs],
        }


def measure(args: argparse.Namespace, root: Path, out: dict[str, Any]) -> None:

    k, p = args.agents, args.processes
    # PYTHONFAULTHANDLER: a server that does not stop is made to show where it hangs.
    env = {**SERVER_ENV, "FLEETRUN_HEARTBEAT_S": str(args.heartbeat), "PYTHONFAULTHANDLER": "1"}
    env["FLEETRUN_WORKERS"] = str(args.server_workers)
    server = ServerProcess(root, env=env)
    workers: list[Worker] = []
    try:
        server.start(timeout_s=120)
        deadline = time.monotonic() + 120  # the first worker answers, then the others start
        while len(server_pids(server)) < 1 + args.server_workers * (args.server_workers > 1):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server's {args.server_workers} workers did not start")
            time.sleep(0.2)
        out["server_workers"] = args.server_workers
        out["database"] = server.db.kind if server.db else "?"
        client = Client(server.url, server.token, timeout_s=max(120.0, args.send_timeout))
        shares = [list(range(k * w // p, k * (w + 1) // p)) for w in range(p)]
        workers = [Worker(w, root) for w in range(p)]
        for worker, share in zip(workers, shares, strict=True):
            worker.send(
                op="start",
                server=server.url,
                indexes=share,
                run_s=args.run_seconds,
                reconnect_max_s=args.reconnect_max,
            )
        pids = [w.answer("start", 120)["pid"] for w in workers]

        # Registration: activations through the SDK, then every agent over the real route.
        activations = [
            client.create_activation(
                name="swarm",
                tags={"bench": "swarm"},
                registration_limit=min(MAX_PER_ACTIVATION, k - n * MAX_PER_ACTIVATION),
            )
            for n in range(math.ceil(k / MAX_PER_ACTIVATION))
        ]
        started = time.perf_counter()
        answers = ask(
            workers,
            args.register_timeout,
            op="register",
            activations=[[a.id, a.code] for a in activations],
            concurrency=max(1, args.register_concurrency // p),
        )
        out["register_s"] = time.perf_counter() - started
        registered = sum(a["registered"] for a in answers)
        if registered != k:
            errors = [e for a in answers for e in a["errors"]]
            raise RuntimeError(f"only {registered} of {k} agents registered: {errors}")
        log(args, f"registered {k} agents in {out['register_s']:.1f} s")

        # Connection: every agent's session, until the server reports them all Online.
        started = time.perf_counter()
        answers = ask(
            workers,
            args.connect_timeout + 60,
            op="connect",
            concurrency=max(1, args.connect_concurrency // p),
            timeout_s=args.connect_timeout,
        )
        out["connect_swarm_s"] = max(a["seconds"] for a in answers)
        out["connect_swarm_live"] = sum(a["live"] for a in answers)
        deadline = started + args.connect_timeout
        online = online_count(client)
        while online < k and time.perf_counter() < deadline:
            time.sleep(0.2)
            online = online_count(client)
        out["online"] = online
        out["connect_s"] = time.perf_counter() - started if online >= k else None
        if online < k:
            # Nothing to send to: still the stop with the sessions there are.
            failure = (
                f"only {online} of {k} agents Online after {args.connect_timeout:.0f} s "
                f"(the swarm held {out['connect_swarm_live']} sessions)"
            )
            out["error"] = failure
            log(args, failure)
        else:
            log(args, f"{k} agents Online in {out['connect_s']:.1f} s")
            idle_and_send(args, server, client, pids, out)

        # What the swarm saw.
        time.sleep(1.0)  # the last received frames
        stats = ask(workers, 60, op="stats")
        totals = {key: sum(s[key] for s in stats) for key in stats[0] if key != "op"}
        out["swarm"] = totals
        out["duplicate_invokes"] = totals["duplicate_invokes"]

        # SIGTERM with K sessions connected.
        live = totals["live"]
        stopped = stop_server(server, args.stop_timeout)
        out["stop"] = {"sessions": live, "seconds": stopped, "timeout_s": args.stop_timeout}
        count, kinds = tracebacks(server.log_path)
        out["server_log_tracebacks"] = count
        out["server_log_traceback_kinds"] = kinds
        out["stop"]["hung_at"] = hung_stack(server.log_path) if stopped is None else ""
        client.close()
    finally:
        for worker in workers:
            worker.close()
        server.close()


def log(args: argparse.Namespace, line: str) -> None:
    if not args.quiet:
        print(f"  .. {line}", file=sys.stderr, flush=True)


def seconds(value: float | None) -> str:
    return f"{value:.2f} s" if value is not None else "-"


def report(out: dict[str, Any]) -> None:
    k = out["agents"]
    print(
        f"swarm: {k} agents in {out['processes']} process(es), {out.get('database', '?')}, "
        f"{out.get('server_workers', 1)} server worker(s), "
        f"heartbeat {out['heartbeat_s']:g} s, RLIMIT_NOFILE {out['nofile']['soft']}"
    )
    rows: list[tuple[str, str]] = [
        (f"register {k} agents", seconds(out.get("register_s"))),
    ]
    if out.get("connect_s") is not None:
        rows.append(
            (
                f"connect {k} agents (all Online)",
                f"{seconds(out['connect_s'])}  (swarm held every session at "
                f"{seconds(out.get('connect_swarm_s'))})",
            )
        )
    elif "online" in out:
        rows.append(
            (
                f"connect {k} agents (all Online)",
                f"not all: {out['online']} Online after {seconds(out.get('connect_swarm_s'))} "
                f"(swarm held {out['connect_swarm_live']} sessions)",
            )
        )
    if "idle_server_cpu_pct" in out:
        rows += [
            (
                f"idle server CPU ({out['idle_seconds']:g} s)",
                f"{out['idle_server_cpu_pct']:.1f} % of one core  "
                f"(swarm: {out['idle_swarm_cpu_pct']:.1f} %)",
            ),
            (
                f"server RSS, {k} sessions",
                f"{out['server_rss_mb']:.0f} MB  (swarm: {out['swarm_rss_mb']:.0f} MB)",
            ),
        ]
    for key, label in (("send_default", "default"), ("send_100pct", "100%")):
        send = out.get(key)
        if not send:
            continue
        value = (
            f"{seconds(send['min'])} / {seconds(send['median'])} / {seconds(send['max'])}"
            if send["median"] is not None
            else "did not finish"
        )
        notes = [f"{send['concurrency_limit']} at once", f"{len(send['runs_s'])} run(s)"]
        if send["not_finished"]:
            notes.append(f"{send['not_finished']} not done in time")
        if send["failed_invocations"]:
            notes.append(f"{send['failed_invocations']} failed invocations")
        rows.append((f"send --all, {label} (min/med/max)", f"{value}  ({', '.join(notes)})"))
    if "swarm" in out:
        swarm = out["swarm"]
        rows.append(
            (
                "duplicate invokes",
                f"{out['duplicate_invokes']}  (of {swarm['invokes']} invokes; "
                f"{swarm['cancels']} cancels received, {swarm['frames_resent']} frames re-sent, "
                f"{swarm['reconnects']} reconnects)",
            )
        )
    if "stop" in out:
        stop = out["stop"]
        value = (
            seconds(stop["seconds"])
            if stop["seconds"] is not None
            else f"did not stop within {stop['timeout_s']:g} s"
        )
        rows.append((f"SIGTERM -> exit, {stop['sessions']} sessions", value))
        if stop.get("hung_at"):
            hung = stop["hung_at"].splitlines()
            rows.append(("  main thread at (SIGABRT)", hung[0] if hung else ""))
            rows += [("", line) for line in hung[1:4]]
        count = out["server_log_tracebacks"]
        rows.append(("traceback in server log", f"yes ({count})" if count else "no"))
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")
    for kind in out.get("server_log_traceback_kinds", []):
        print(f"    {kind}")
    if out["nofile"]["warning"]:
        print(f"  note: {out['nofile']['warning']}")


@contextlib.contextmanager
def workdir(keep: str | None) -> Iterator[Path]:
    if keep:
        # A fresh directory for each run: a server must not find an earlier fleet.
        path = Path(keep) / time.strftime("swarm-%Y%m%d-%H%M%S")
        path.mkdir(parents=True)
        print(f"logs and data in {path}", file=sys.stderr)
        yield path
        return
    path = Path(tempfile.mkdtemp(prefix="fleetrun-swarm-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1000, help="K simulated agents")
    parser.add_argument("--processes", type=int, choices=(1, 2), default=1)
    parser.add_argument(
        "--server-workers",
        type=int,
        default=1,
        help="the server's --workers: replicas of one machine (PostgreSQL only)",
    )
    parser.add_argument("--runs", type=int, default=1, help="sends timed at each rate control")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument(
        "--database-url",
        default=None,
        help=f"PostgreSQL to make a fresh database under (default: ${PG_ENV}, else SQLite)",
    )
    parser.add_argument("--heartbeat", type=float, default=5.0, help="server heartbeat (s)")
    parser.add_argument("--register-concurrency", type=int, default=32)
    parser.add_argument("--connect-concurrency", type=int, default=100, help="handshakes at once")
    parser.add_argument("--register-timeout", type=float, default=1800.0)
    parser.add_argument("--connect-timeout", type=float, default=1800.0)
    parser.add_argument("--send-timeout", type=float, default=300.0)
    parser.add_argument("--stop-timeout", type=float, default=120.0)
    parser.add_argument("--idle-seconds", type=float, default=5.0, help="idle CPU window")
    parser.add_argument("--settle", type=float, default=2.0, help="wait before the idle window")
    parser.add_argument(
        "--run-seconds",
        type=float,
        default=0.0,
        help="how long each simulated step runs (0: exits at once, like `echo hi`)",
    )
    parser.add_argument("--reconnect-max", type=float, default=30.0, help="agent backoff cap")
    parser.add_argument(
        "--keep", metavar="DIR", help="keep logs and data in a new directory under DIR"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument("--worker", metavar="DIR", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop children


def main() -> None:
    args = parse_args()
    if args.worker:
        asyncio.run(worker_main(Path(args.worker)))
        return
    signal.signal(signal.SIGTERM, _terminate)
    if args.database_url:
        os.environ[PG_ENV] = args.database_url
    if args.server_workers > 1 and not os.environ.get(PG_ENV):
        raise SystemExit("--server-workers needs PostgreSQL: give --database-url.")
    nofile = raise_fd_limit(args.agents, args.processes)
    if nofile["warning"]:
        print(f"warning: {nofile['warning']}", file=sys.stderr)
    out: dict[str, Any] = {
        "agents": args.agents,
        "processes": args.processes,
        "heartbeat_s": args.heartbeat,
        "idle_seconds": args.idle_seconds,
        "nofile": nofile,
    }
    with workdir(args.keep) as root:
        try:
            measure(args, root, out)
        except (RuntimeError, AssertionError) as exc:
            out["error"] = str(exc)
        except KeyboardInterrupt:
            print("interrupted: the server and the swarm were stopped", file=sys.stderr)
            sys.exit(130)
    failure = out.get("error")
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        report(out)
        if failure:
            print(f"  error: {failure}")
    if failure:
        sys.exit(1)


if __name__ == "__main__":
    main()
