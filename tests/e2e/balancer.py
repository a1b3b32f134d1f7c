"""HAProxy in front of server replicas, with the configuration the project ships
(packaging/haproxy/fleetrun.cfg): its listening address and its servers replaced by the
test's. Installed from Debian's packages when missing (tests run as root in CI)."""

from __future__ import annotations

import csv
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.harness import debian_binary, free_port, wait_for

SHIPPED = Path(__file__).resolve().parents[2] / "packaging" / "haproxy" / "fleetrun.cfg"


def haproxy() -> str:
    """The haproxy binary, installed from Debian's packages if it is missing."""
    return debian_binary("haproxy", ("haproxy",))


def configuration(port: int, backends: list[str], stats: Path | None = None) -> str:
    """The shipped configuration, listening on `port` of loopback, for these replicas
    (host:port each), with a stats socket at `stats` (for the test to ask which
    replicas HAProxy takes for up)."""
    lines = []
    for line in SHIPPED.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("server "):
            continue
        if stripped.startswith("bind "):
            line = f"    bind 127.0.0.1:{port}"
        lines.append(line)
        if stripped == "global" and stats is not None:
            lines.append(f"    stats socket {stats} mode 600")
    lines += [f"    server replica{i} {address} check" for i, address in enumerate(backends, 1)]
    return "\n".join(lines) + "\n"


@dataclass
class HAProxy:
    root: Path
    backends: list[str]  # host:port of each replica
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HAProxy:
        binary = haproxy()
        self.root.mkdir(parents=True, exist_ok=True)
        config = self.root / "haproxy.cfg"
        config.write_text(configuration(self.port, self.backends, self.root / "stats.sock"))
        subprocess.run([binary, "-c", "-q", "-f", str(config)], check=True)
        log = (self.root / "haproxy.log").open("ab")
        self.process = subprocess.Popen(
            [binary, "-db", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        wait_for(self._ready, timeout_s=30, what="HAProxy to pass requests on")
        return self

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            log = (self.root / "haproxy.log").read_text(errors="replace")
            raise AssertionError(f"haproxy exited with {self.process.returncode}:\n{log}")
        try:
            return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def up(self, backend: int) -> bool:
        """Whether HAProxy's health checks take replica `backend` (from 1) for up: a
        replica back from the dead takes two checks, 2 s apart, to be used again."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(str(self.root / "stats.sock"))
            sock.sendall(b"show stat\n")
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        for row in csv.reader(answer.decode().lstrip("# ").splitlines()):
            if row[:2] == ["replicas", f"replica{backend}"]:
                return row[17].startswith("UP")  # status
        return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
