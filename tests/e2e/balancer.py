"""HAProxy in front of server replicas, with the configuration the project ships
(packaging/haproxy/fleetrun.cfg): its listening address and its servers replaced by the
test's. Installed from Debian's packages when missing (tests run as root in CI)."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.harness import free_port, wait_for

SHIPPED = Path(__file__).resolve().parents[2] / "packaging" / "haproxy" / "fleetrun.cfg"


def haproxy() -> str:
    """The haproxy binary, installed from Debian's packages if it is missing."""
    found = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("HAProxy is not installed, and installing it needs root and apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "haproxy"]
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=True, capture_output=True)
        subprocess.run(install, env=env, check=True, capture_output=True)
    found = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin")
    assert found, "haproxy was installed but is not on the PATH"
    return found


def configuration(port: int, backends: list[str]) -> str:
    """The shipped configuration, listening on `port` of loopback, for these replicas
    (host:port each)."""
    lines = []
    for line in SHIPPED.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("server "):
            continue
        if stripped.startswith("bind "):
            line = f"    bind 127.0.0.1:{port}"
        lines.append(line)
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
        config.write_text(configuration(self.port, self.backends))
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

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
