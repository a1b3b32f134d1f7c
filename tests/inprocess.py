"""The real app in this process, driven by the real SDK and CLI through the SDK's
transport seam.

`App` builds the server exactly as `fleetrun server` does (`create_app(settings)` with its
lifespan: migrations, the administrator's token, the dispatcher, the gateway, the outbox)
on real SQLite in a temp dir, or on a fresh PostgreSQL database when
FLEETRUN_TEST_DATABASE_URL is set. Requests go through Starlette's `TestClient`, an
`httpx.Client` whose transport calls the app in a thread of its own, so the SDK and the
CLI run unchanged. Time is a `SettableClock`: the system's time until a test moves it
forward with `App.advance(seconds)`, so deadlines pass without waiting. Nodes that only need to exist are enrolled through the real
registration route with a key made for them; no agent process is started.

Use it for tests whose subject is the API (shape, validation, authorization, paging);
keep `tests.harness` (real server and agent processes) where the process boundary is
the point.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import contextlib
import io
import os
import queue
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from fleetrun.core import protocol
from fleetrun.core.statuses import InvocationStatus, StatusDetail, StepStatus
from fleetrun.sdk import Client
from fleetrun.server.app import create_app
from fleetrun.server.db import Database
from fleetrun.server.settings import Settings
from tests.harness import TestDatabase

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient, _TestClientTransport

OUTPUT_CHUNK = 64 * 1024  # bytes of output per frame, as the agent sends them
BASE_URL = "http://127.0.0.1"  # loopback: the SDK sends a token over plain http only there


class SettableClock:
    """The system's time plus an offset the test moves forward: until it does, the
    server runs on real time; `advance(s)` makes `s` seconds pass at once, for the wall
    clock (deadlines, expiry, backoff) and the monotonic one (resend intervals) alike."""

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()

    def advance(self, seconds: float) -> None:
        assert seconds >= 0, "time does not go back"
        with self._lock:
            self._offset += seconds

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self._offset)

    def monotonic(self) -> float:
        return time.monotonic() + self._offset


def _raw_public(key: Ed25519PrivateKey | X25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(raw).decode()


@dataclass
class Node:
    """A node enrolled through the registration route, with no agent behind it."""

    node_id: str
    name: str
    key: Ed25519PrivateKey
    seal_key: X25519PrivateKey


class NodeSession:
    """A node's session with the real gateway over the in-process WebSocket: the real
    handshake (challenge, hello signed with the node's key, welcome) and real frames,
    with the test speaking for the node. Nothing is run: this is for what the server
    sends and decides, not for what an agent does with it (that needs an agent process).
    """

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.frames: queue.Queue[Any] = queue.Queue()
        self.received: list[Any] = []  # every frame, in order, once taken
        self.welcome: protocol.Welcome | None = None
        self._reader = threading.Thread(target=self._read, daemon=True)

    def _read(self) -> None:
        try:
            while True:
                self.frames.put(protocol.parse(self.ws.receive_text()))
        except Exception as exc:  # closed
            self.frames.put(exc)

    def open(self, node: Node, *, running: Sequence[str] = ()) -> protocol.Welcome:
        challenge = protocol.parse(self.ws.receive_text())
        assert isinstance(challenge, protocol.Challenge), challenge
        time_ms = int(time.time() * 1000)
        signed = node.key.sign(protocol.hello_message(challenge.nonce, node.node_id, time_ms))
        self.send(
            protocol.Hello(
                node_id=node.node_id,
                time_ms=time_ms,
                signature=base64.b64encode(signed).decode(),
                agent_version="0.0.0-test",
                running=list(running),
            )
        )
        self._reader.start()
        welcome = self.next()
        assert isinstance(welcome, protocol.Welcome), welcome
        self.welcome = welcome
        return welcome

    def send(self, frame: Any) -> None:
        self.ws.send_text(protocol.dump(frame))

    def next(self, timeout_s: float = 30.0) -> Any:
        """The next frame from the server (fails after `timeout_s` without one)."""
        try:
            frame = self.frames.get(timeout=timeout_s)
        except queue.Empty:
            raise AssertionError(f"no frame from the server in {timeout_s}s") from None
        if isinstance(frame, Exception):
            raise AssertionError(f"the session closed: {frame!r}")
        self.received.append(frame)
        return frame

    def next_invoke(self, timeout_s: float = 30.0) -> protocol.Invoke:
        """The next `invoke` (pongs and the like in between are kept in `received`)."""
        deadline = time.monotonic() + timeout_s
        while True:
            frame = self.next(max(0.01, deadline - time.monotonic()))
            if isinstance(frame, protocol.Invoke):
                return frame

    def start(self, command_id: str | None = None) -> str:
        """Take the next invoke and start it as an agent does (ack, InProgress); its
        invocation id."""
        invoke = self.next_invoke()
        if command_id is not None:
            assert invoke.command_id == command_id
        iid = invoke.invocation_id
        self.send(protocol.Ack(invocation_id=iid, accepted=True))
        self.send(protocol.State(invocation_id=iid, seq=1, status=InvocationStatus.IN_PROGRESS))
        return iid

    def finish(
        self, iid: str, seq: int, exit_code: int, started_at: float, message: str | None = None
    ) -> None:
        """End a started invocation as the agent does: Success for 0, Failed otherwise."""
        ok = exit_code == 0
        self.send(
            protocol.State(
                invocation_id=iid,
                seq=seq,
                status=InvocationStatus.SUCCESS if ok else InvocationStatus.FAILED,
                detail=StatusDetail.SUCCESS if ok else StatusDetail.FAILED,
                exit_code=exit_code,
                started_at=started_at,
                ended_at=time.time(),
                message=message,
            )
        )

    def answer(
        self,
        outputs: Sequence[bytes] = (b"",),
        exit_code: int = 0,
        command_id: str | None = None,
    ) -> None:
        """Speak for the node as an agent does for a run of len(outputs) steps, step i
        writing outputs[i] to stdout in the agent's chunks: every step but the last exits
        0, the last `exit_code`."""
        iid = self.start(command_id)
        seq, started = 1, time.time()
        for index, output in enumerate(outputs):
            code = exit_code if index == len(outputs) - 1 else 0
            seq += 1
            self.send(
                protocol.State(
                    invocation_id=iid, seq=seq, step=index, status=StepStatus.IN_PROGRESS
                )
            )
            for at in range(0, len(output), OUTPUT_CHUNK):
                seq += 1
                data = protocol.encode(output[at : at + OUTPUT_CHUNK])
                self.send(
                    protocol.Output(
                        invocation_id=iid, seq=seq, step=index, stream="stdout", data=data
                    )
                )
            seq += 1
            step = StepStatus.SUCCESS if code == 0 else StepStatus.FAILED
            self.send(
                protocol.State(invocation_id=iid, seq=seq, step=index, status=step, exit_code=code)
            )
        self.finish(iid, seq + 1, exit_code, started)


class AppTransport(httpx.AsyncBaseTransport):
    """The in-process app behind an `httpx.AsyncClient` (the `AsyncClient`'s seam):
    each request goes through the app's `TestClient` from a worker thread, so the async
    SDK drives the very app, lifespan and event loop the sync SDK and the CLI do. The
    answer is read whole (as `TestClient` reads it), then handed back."""

    def __init__(self, http: TestClient) -> None:
        self._http = http

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        content = await request.aread()

        def send() -> httpx.Response:
            built = self._http.build_request(
                request.method, str(request.url), headers=request.headers, content=content
            )
            return self._http.send(built)

        answer = await asyncio.to_thread(send)
        drop = {"content-encoding", "content-length", "transfer-encoding"}
        headers = [(k, v) for k, v in answer.headers.multi_items() if k.lower() not in drop]
        return httpx.Response(
            answer.status_code, headers=headers, content=answer.content, request=request
        )


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def returncode(self) -> int:  # the name subprocess.run uses
        return self.exit_code


_TEMPLATE: TestDatabase | None = None


def _migrated() -> TestDatabase:
    """A database with every migration applied, made once per test process: each app
    starts from a copy of it (the lifespan still runs `migrate`, which finds it at the
    head). Server processes (tests/harness.py) still migrate from empty every time."""
    global _TEMPLATE
    if _TEMPLATE is None:
        root = Path(tempfile.mkdtemp(prefix="fleetrun-template-"))
        template = TestDatabase(root)
        db = Database(template.url)
        try:
            db.migrate()
        finally:
            asyncio.run(db.close())
        atexit.register(template.drop)
        atexit.register(shutil.rmtree, root, True)
        _TEMPLATE = template
    return _TEMPLATE


class App:
    """One server, in this process; `client` is the administrator's SDK client."""

    def __init__(self, root: Path, *, clock: SettableClock | None = None, **settings: Any) -> None:
        self.root = root
        self.clock = clock or SettableClock()
        self.data_dir = root / "server"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.db = TestDatabase(self.data_dir, template=_migrated())
        defaults: dict[str, Any] = {
            # The test speaks for the node and sends no pings: a session is closed for
            # silence only after 3 heartbeats, long enough for a machine under load.
            "heartbeat_s": 10.0,
            "rate_limit_per_s": 0.0,
            # the tests' receivers listen on loopback (as tests/harness.py allows)
            "allow_destination_cidrs": "127.0.0.0/8",
        }
        self.settings = Settings(
            data_dir=self.data_dir, database_url=self.db.url, **{**defaults, **settings}
        )
        self.url = BASE_URL
        self.http: TestClient | None = None
        self._clients: list[Client] = []
        self._client: Client | None = None
        self.nodes: list[Node] = []

    def start(self) -> App:
        http = TestClient(
            create_app(self.settings, clock=self.clock),
            base_url=BASE_URL,
            raise_server_exceptions=False,  # a 500 is an answer, as over the network
            client=("127.0.0.1", 50000),
        )
        http.__enter__()  # runs the lifespan: migrations, admin token, background services
        self.http = http
        return self

    def stop(self) -> None:
        """Shut the app down as the server would (its lifespan ends); the database stays."""
        for client in self._clients:
            client.close()
        self._clients.clear()
        self._client = None
        if self.http is not None:
            self.http.__exit__(None, None, None)
            self.http = None

    def restart(self) -> App:
        """Stop, then start again on the same data dir and database."""
        self.stop()
        return self.start()

    def close(self) -> None:
        self.stop()
        self.db.drop()

    @contextlib.contextmanager
    def connect(self, node: Node, *, running: Sequence[str] = ()) -> Iterator[NodeSession]:
        """A session of `node` with the gateway, open (handshake done) until the block ends."""
        assert self.http is not None, "start() the app first"
        with self.http.websocket_connect("/v1/agent/connect") as ws:
            session = NodeSession(ws)
            session.open(node, running=running)
            yield session

    def advance(self, seconds: float) -> None:
        """Let `seconds` pass on the server's clock, and have the dispatcher and the
        outbox look at once (as their next pass would) rather than after their interval;
        so does the audit log's sweep of unauthenticated failure windows."""
        assert self.http is not None, "start() the app first"
        self.clock.advance(seconds)
        state = self.http.app.state.fleet  # type: ignore[attr-defined]

        def wake() -> None:  # on the app's event loop
            state.dispatcher.wake()
            state.outbox.wake()
            state.audit.close_windows()  # failure windows that have ended are summed up

        self.http.portal.call(wake)

    @property
    def token(self) -> str:
        return self.settings.admin_token_path.read_text().strip()

    def client_for(self, token: str | None) -> Client:
        """An SDK client with `token` (None: no credentials at all)."""
        assert self.http is not None, "start() the app first"
        client = Client(BASE_URL, token, http=self.http)
        self._clients.append(client)
        return client

    def http_from(self, address: str) -> httpx.Client:
        """A plain `httpx.Client` to this app whose requests come from `address` (the
        others come from 127.0.0.1); the caller closes it."""
        assert self.http is not None, "start() the app first"
        transport = _TestClientTransport(
            self.http.app,
            portal_factory=self.http._portal_factory,
            raise_server_exceptions=False,
            root_path="",
            app_state=self.http.app_state,
            client=(address, 50000),
        )
        return httpx.Client(transport=transport, base_url=BASE_URL)

    def async_http(self) -> httpx.AsyncClient:
        """An `httpx.AsyncClient` to this app (for `AsyncClient(..., http=...)`); the
        caller closes it."""
        assert self.http is not None, "start() the app first"
        return httpx.AsyncClient(transport=AppTransport(self.http), base_url=BASE_URL)

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = self.client_for(self.token)
        return self._client

    def enrol(
        self,
        count: int = 1,
        *,
        tags: Mapping[str, str] | None = None,
        prefix: str = "node",
        facts: Mapping[str, str] | None = None,
    ) -> list[Node]:
        """`count` nodes registered through the real route, with keys made here."""
        activation = self.client.create_activation(registration_limit=count, tags=dict(tags or {}))
        made = []
        for _ in range(count):
            key, seal_key = Ed25519PrivateKey.generate(), X25519PrivateKey.generate()
            name = f"{prefix}{len(self.nodes) + 1:02d}"
            answer = self.client.request(
                "POST",
                "/v1/agent/register",
                json={
                    "activation_id": activation.id,
                    "activation_code": activation.code,
                    "public_key": _raw_public(key),
                    "seal_public_key": _raw_public(seal_key),
                    "name": name,
                    "tags": {},
                    "facts": dict(facts or {"platform": "Linux", "hostname": name}),
                    "agent_version": "0.0.0-test",
                },
            )
            node = Node(answer["node_id"], answer["name"], key, seal_key)
            self.nodes.append(node)
            made.append(node)
        return made

    def cli(
        self,
        *args: str,
        token: str | bool | None = True,
        env: Mapping[str, str] | None = None,
        input: str | None = None,
    ) -> CliResult:
        """`fleetrun ARGS` through its real entry point, in this process.

        token=True: the administrator's; a string: that token; None/False: none."""
        assert self.http is not None, "start() the app first"
        chosen = self.token if token is True else (token or None)
        overrides = {"FLEETRUN_SERVER": BASE_URL, **(env or {})}
        if chosen:
            overrides["FLEETRUN_TOKEN"] = chosen
        return run_cli(*args, env=overrides, input=input, http=self.http)


OFFLINE = {"FLEETRUN_CONFIG": os.devnull, "FLEETRUN_SERVER": "http://127.0.0.1:9"}


def run_cli(
    *args: str,
    env: Mapping[str, str] | None = None,
    input: str | None = None,
    http: TestClient | None = None,
) -> CliResult:
    """`fleetrun ARGS` through its real entry point, in this process. Without `http`,
    with no server: by default no token, no login file and nothing listening at the
    server address (a command that must work offline must not ask)."""
    from fleetrun.cli import main as cli_main

    overrides = {**OFFLINE, **(env or {})} if http is None else dict(env or {})
    with _captured(overrides, input) as (out, err):
        try:
            cli_main.main(list(args), http=http)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return CliResult(code, out.getvalue(), err.getvalue())


class _Captured(io.TextIOWrapper):
    """Captured output with the `buffer` of bytes a real stdout has (`invocations show
    --full` writes the stored bytes to it as they are)."""

    def __init__(self) -> None:
        super().__init__(io.BytesIO(), encoding="utf-8", newline="\n", write_through=True)

    def getvalue(self) -> str:
        self.flush()
        raw = self.buffer
        assert isinstance(raw, io.BytesIO)
        return raw.getvalue().decode("utf-8", errors="replace")


@contextlib.contextmanager
def _captured(env: Mapping[str, str], input: str | None) -> Iterator[tuple[_Captured, _Captured]]:
    """Run with these environment variables, standard input and captured output (the
    CLI's rich consoles write to whatever sys.stdout/sys.stderr are at print time)."""
    import sys

    # the operator's own output format and profile are not the test's
    unset = ("FLEETRUN_TOKEN", "FLEETRUN_OUTPUT", "FLEETRUN_PROFILE")
    saved_env = {k: os.environ.get(k) for k in (*env, *unset, "FLEETRUN_CONFIG")}
    for key in unset:
        os.environ.pop(key, None)
    os.environ.update(env)
    out, err = _Captured(), _Captured()
    saved = sys.stdin, sys.stdout, sys.stderr
    sys.stdin = io.StringIO(input or "")
    sys.stdout, sys.stderr = out, err
    try:
        yield out, err
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def node_ids(nodes: Sequence[Node]) -> list[str]:
    return [n.node_id for n in nodes]


__all__ = [
    "App",
    "AppTransport",
    "CliResult",
    "Node",
    "NodeSession",
    "SettableClock",
    "node_ids",
    "run_cli",
]
