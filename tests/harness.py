"""Real servers and agents on loopback, for the tests and the benchmarks.

Every process is a real `python -m fleetrun ...` child: nothing of the project is
mocked. With FLEETRUN_TEST_DATABASE_URL set, each server gets a fresh PostgreSQL
database made for it (and dropped after); otherwise SQLite in its data dir.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from fleetrun.sdk import Client

T = TypeVar("T")
PYTHON = sys.executable
PG_ENV = "FLEETRUN_TEST_DATABASE_URL"


def spawned_children(parent: int) -> list[int]:
    """The processes `parent` started with multiprocessing's spawn (`fleetrun server
    --workers N`'s workers), not its resource tracker."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(
    probe: Callable[[], T | None],
    *,
    timeout_s: float = 30.0,
    interval_s: float = 0.05,
    what: str = "condition",
) -> T:
    """Poll until `probe` returns something truthy; fail with `what` after the timeout."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = probe()
            if value:
                return value
        except Exception as exc:  # the thing may not be up yet
            last_error = exc
        time.sleep(interval_s)
    raise AssertionError(
        f"timed out after {timeout_s}s waiting for {what}; last error: {last_error!r}"
    )


def wait_for_pid(pidfile: Path, *, timeout_s: float = 30.0) -> int:
    """The pid a script wrote with `echo $$ > pidfile`, once the whole line is there:
    the shell creates the file before `echo` writes to it."""

    def read() -> int | None:
        text = pidfile.read_text() if pidfile.exists() else ""
        return int(text) if text.endswith("\n") else None

    return wait_for(read, timeout_s=timeout_s, what=f"the script to write its pid to {pidfile}")


def _pg_admin_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


class TestDatabase:
    """A database for one server: SQLite in the data dir, or a fresh PostgreSQL one."""

    def __init__(self, data_dir: Path, *, template: TestDatabase | None = None) -> None:
        """`template`: start as a copy of that (migrated) database instead of empty."""
        base = os.environ.get(PG_ENV)
        self.pg_name: str | None = None
        self.base = base
        if base:
            import psycopg

            self.pg_name = "fleetrun_t_" + uuid.uuid4().hex[:12]
            copy = f' TEMPLATE "{template.pg_name}"' if template and template.pg_name else ""
            with psycopg.connect(_pg_admin_url(base), autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{self.pg_name}"{copy}')
            head, _, _ = base.rpartition("/")
            self.url = f"{head}/{self.pg_name}"
        else:
            path = data_dir / "fleetrun.db"
            if template is not None:
                shutil.copyfile(template.url.removeprefix("sqlite:///"), path)
            self.url = f"sqlite:///{path}"

    @property
    def kind(self) -> str:
        return "postgresql" if self.pg_name else "sqlite"

    def drop(self) -> None:
        if self.pg_name and self.base:
            import psycopg

            with psycopg.connect(_pg_admin_url(self.base), autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.pg_name}" WITH (FORCE)')


@dataclass
class ServerProcess:
    root: Path
    port: int = field(default_factory=free_port)
    env: dict[str, str] = field(default_factory=dict)
    extra_args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    db: TestDatabase | None = None
    tls: bool = False  # serve HTTPS with a private CA made by the server

    @property
    def data_dir(self) -> Path:
        return self.root / "server"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> Path:
        return self.data_dir / "tls" / "ca.pem"

    @property
    def verify(self) -> ssl.SSLContext | bool:
        return ssl.create_default_context(cafile=str(self.ca_file)) if self.tls else True

    @property
    def log_path(self) -> Path:
        return self.root / "server.log"

    @property
    def token(self) -> str:
        return (self.data_dir / "admin.token").read_text().strip()

    def start(self, timeout_s: float = 60.0) -> ServerProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.db is None:
            self.db = TestDatabase(self.data_dir)
        env = {
            **os.environ,
            "FLEETRUN_HEARTBEAT_S": "1",
            # The tests' receivers (webhooks, output destinations) listen on loopback,
            # which a server refuses to send to unless allowed.
            "FLEETRUN_ALLOW_DESTINATION_CIDRS": "127.0.0.0/8",
            **self.env,
        }
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                PYTHON,
                "-m",
                "fleetrun",
                "server",
                "--port",
                str(self.port),
                "--data-dir",
                str(self.data_dir),
                "--database-url",
                self.db.url,
                *(["--tls-self-signed"] if self.tls else []),
                *self.extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        log.close()

        def up() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"server exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            response = httpx.get(f"{self.url}/healthz", timeout=1, verify=self.verify)
            return response.status_code == 200

        try:
            wait_for(up, timeout_s=timeout_s, what="the server to answer")
        except BaseException:
            self.kill()  # a server that never answered is not left running (and loading
            raise  # the machine) after its test has failed
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 20.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> ServerProcess:
        self.stop()
        return self.start()

    def close(self) -> None:
        self.stop()
        if self.db is not None:
            self.db.drop()

    def client(self, token: str | None = None) -> Client:
        return Client(self.url, token if token is not None else self.token, verify=self.verify)

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class AgentProcess:
    server: ServerProcess
    state_dir: Path
    name: str
    node_id: str | None = None
    proc: subprocess.Popen[bytes] | None = None
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    # The URLs it registers with, in order (several: replicas it fails over between);
    # the server's own by default.
    servers: list[str] = field(default_factory=list)
    # How `fleetrun-agent` is started: the checkout's by default; an installed agent's
    # script or the single-file agent for the packaging tests.
    command: list[str] = field(default_factory=lambda: [PYTHON, "-m", "fleetrun.agent"])

    @property
    def log_path(self) -> Path:
        return self.state_dir.parent / f"{self.state_dir.name}.log"

    def register(self, activation_id: str, code: str, tags: dict[str, str] | None = None) -> str:
        return self.finish_register(self.begin_register(activation_id, code, tags))

    def begin_register(
        self, activation_id: str, code: str, tags: dict[str, str] | None = None
    ) -> subprocess.Popen[str]:
        cmd = [
            *self.command,
            "register",
            "--state-dir",
            str(self.state_dir),
            *[arg for url in self.servers or [self.server.url] for arg in ("--server", url)],
            "--activation-id",
            activation_id,
            "--activation-code",
            code,
            "--name",
            self.name,
            "--json",
        ]
        for key, value in (tags or {}).items():
            cmd += ["--tag", f"{key}={value}"]
        if self.server.tls:
            cmd += ["--ca-file", str(self.server.ca_file)]
        return subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **self.env},
        )

    def finish_register(self, proc: subprocess.Popen[str]) -> str:
        out, err = proc.communicate(timeout=120)
        if proc.returncode != 0:
            raise AssertionError(f"register failed: {err}")
        self.node_id = json.loads(out)["node_id"]
        return self.node_id

    def start(self) -> AgentProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                *self.command,
                "run",
                "--state-dir",
                str(self.state_dir),
                "--reconnect-max",
                "2",
                "--stop-grace",
                "1",
                *self.args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **self.env},
        )
        log.close()
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 20.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> AgentProcess:
        self.stop()
        return self.start()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Fleet:
    """A server and the agents enrolled with it, all under one directory."""

    def __init__(self, root: Path, **server_kwargs: Any) -> None:
        self.root = root
        self.server = ServerProcess(root, **server_kwargs)
        self.agents: list[AgentProcess] = []
        self._client: Client | None = None

    def start(self) -> Fleet:
        self.server.start()
        return self

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = self.server.client()
        return self._client

    def add_agents(
        self,
        count: int,
        *,
        tags: dict[str, str] | None = None,
        start: bool = True,
        prefix: str = "node",
    ) -> list[AgentProcess]:
        activation = self.client.create_activation(registration_limit=count, tags=tags or {})
        agents = []
        for _ in range(count):
            index = len(self.agents) + 1
            agent = AgentProcess(self.server, self.root / f"agent{index}", f"{prefix}{index:02d}")
            self.agents.append(agent)
            agents.append(agent)
        for start_at in range(0, len(agents), 8):  # a few at a time: 2 cores
            group = agents[start_at : start_at + 8]
            running = [a.begin_register(activation.id, activation.code) for a in group]
            for agent, proc in zip(group, running, strict=True):
                agent.finish_register(proc)
        if start:
            for agent in agents:
                agent.start()
            self.wait_online(agents)
        return agents

    def add_agent(self, **kwargs: Any) -> AgentProcess:
        return self.add_agents(1, **kwargs)[0]

    def wait_online(self, agents: list[AgentProcess], timeout_s: float = 60.0) -> None:
        """Wait until every one of `agents` (at least one) is Online."""
        if not agents:
            raise ValueError("wait_online needs the agents to wait for (all of none is at once)")
        ids = {a.node_id for a in agents}

        def online() -> bool:
            nodes = {n.id: n.ping_status for n in self.client.list_nodes()}
            return all(nodes.get(i) == "Online" for i in ids)

        wait_for(online, timeout_s=timeout_s, what=f"{len(ids)} agent(s) online")

    def ping_status(self, agent: AgentProcess) -> str:
        assert agent.node_id is not None
        return self.client.get_node(agent.node_id).ping_status

    def close(self) -> None:
        for agent in self.agents:
            agent.stop()
        if self._client is not None:
            self._client.close()
        self.server.close()

    def logs(self) -> str:
        parts = [
            f"--- server ({self.server.db.kind if self.server.db else '?'}) ---",
            self.server.log_tail(),
        ]
        for agent in self.agents:
            parts += [f"--- {agent.name} ---", agent.log_tail()]
        return "\n".join(parts)


@contextlib.contextmanager
def fleet(root: Path, **kwargs: Any) -> Iterator[Fleet]:
    f = Fleet(root, **kwargs).start()
    try:
        yield f
    finally:
        f.close()


def debian_binary(
    name: str, packages: tuple[str, ...], ready: Callable[[], bool] = lambda: True
) -> str:
    """The path of `name` (in PATH or /usr/sbin), installed from Debian's packages when
    missing or not `ready` (tests run as root in CI); skipped where installing cannot
    work."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin")
    if found and ready():
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip(f"{name} is not installed, and installing it needs root and apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages]
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=True, capture_output=True)
        subprocess.run(install, env=env, check=True, capture_output=True)
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin")
    assert found, f"{name} was installed but is not on the PATH"
    return found


@contextlib.contextmanager
def two_replicas(root: Path, env: dict[str, str]) -> Iterator[tuple[Fleet, ServerProcess]]:
    """A fleet's server and a second replica on its database (PostgreSQL), both with
    `env` (they share FLEETRUN_SECRET_KEY through it)."""
    fleet = Fleet(root, env=env).start()
    second = ServerProcess(root / "b", env=env, db=fleet.server.db)
    try:
        second.start()
        yield fleet, second
    finally:
        second.stop()
        fleet.close()
