"""The real app in this process, driven by the real SDK and CLI through the SDK's
transport seam.

`App` builds the server exactly as `fleetrun server` does (`create_app(settings)` with its
lifespan: migrations, the administrator's token, the dispatcher, the gateway, the outbox)
on real SQLite in a temp dir, or on a fresh PostgreSQL database when
FLEETRUN_TEST_DATABASE_URL is set. Requests go through Starlette's `TestClient`, an
`httpx.Client` whose transport calls the app in a thread of its own, so the SDK and the
CLI run unchanged. Nodes that only need to exist are enrolled through the real
registration route with a key made for them; no agent process is started.

Use it for tests whose subject is the API (shape, validation, authorization, paging);
keep `tests.harness` (real server and agent processes) where the process boundary is
the point.
"""

from __future__ import annotations

import base64
import contextlib
import io
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from fleetrun.sdk import Client
from fleetrun.server.app import create_app
from fleetrun.server.settings import Settings
from tests.harness import TestDatabase

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

BASE_URL = "http://testserver"


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


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def returncode(self) -> int:  # the name subprocess.run uses
        return self.exit_code


class App:
    """One server, in this process; `client` is the administrator's SDK client."""

    def __init__(self, root: Path, **settings: Any) -> None:
        self.root = root
        self.data_dir = root / "server"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.db = TestDatabase(self.data_dir)
        defaults: dict[str, Any] = {"heartbeat_s": 1.0, "rate_limit_per_s": 0.0}
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
            create_app(self.settings),
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

    @property
    def token(self) -> str:
        return self.settings.admin_token_path.read_text().strip()

    def client_for(self, token: str | None) -> Client:
        """An SDK client with `token` (None: no credentials at all)."""
        assert self.http is not None, "start() the app first"
        client = Client(BASE_URL, token, http=self.http)
        self._clients.append(client)
        return client

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


@contextlib.contextmanager
def _captured(
    env: Mapping[str, str], input: str | None
) -> Iterator[tuple[io.StringIO, io.StringIO]]:
    """Run with these environment variables, standard input and captured output (the
    CLI's rich consoles write to whatever sys.stdout/sys.stderr are at print time)."""
    import sys

    saved_env = {k: os.environ.get(k) for k in (*env, "FLEETRUN_TOKEN", "FLEETRUN_CONFIG")}
    os.environ.pop("FLEETRUN_TOKEN", None)
    os.environ.update(env)
    out, err = io.StringIO(), io.StringIO()
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


__all__ = ["App", "CliResult", "Node", "node_ids", "run_cli"]
