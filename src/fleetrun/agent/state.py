"""The agent's state directory: identity, key, journal, spool, work files.

STATE_DIR/
  identity.json     node id, server URL (and fallbacks), name
  key.pem           Ed25519 private key: the node's identity (0600, never leaves the node)
  seal.key          X25519 private key: opens secrets sealed to this node (0600)
  config.toml       the node's local configuration: what may run here (0600)
  audit.log         one line per execution (JSON), kept on the node
  journal/          one record per accepted invocation (fsynced before it runs)
  spool/            output and states not yet acknowledged by the server
  work/             scripts being run
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

DEFAULT_STATE_DIR = Path("/var/lib/fleetrun-agent")


class AgentStateError(Exception):
    """The state directory is missing, unreadable or not registered."""


def default_state_dir() -> Path:
    env = os.environ.get("FLEETRUN_AGENT_STATE_DIR")
    return Path(env).expanduser() if env else DEFAULT_STATE_DIR


@dataclass(frozen=True)
class Identity:
    node_id: str
    server: str  # the first URL the agent tries
    name: str
    insecure: bool = False  # plain http to a host that is not this machine was allowed
    # other replicas' URLs, tried in turn when one does not answer or ends the session
    fallbacks: tuple[str, ...] = ()

    @property
    def servers(self) -> tuple[str, ...]:
        return (self.server, *self.fallbacks)


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write, fsync, rename, fsync the directory: the file is whole or absent."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class StateDir:
    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def identity_path(self) -> Path:
        return self.root / "identity.json"

    @property
    def key_path(self) -> Path:
        return self.root / "key.pem"

    @property
    def seal_key_path(self) -> Path:
        return self.root / "seal.key"

    @property
    def ca_path(self) -> Path:
        return self.root / "ca.pem"

    @property
    def config_path(self) -> Path:
        return self.root / "config.toml"

    @property
    def audit_path(self) -> Path:
        return self.root / "audit.log"

    @property
    def journal_dir(self) -> Path:
        return self.root / "journal"

    @property
    def spool_dir(self) -> Path:
        return self.root / "spool"

    @property
    def work_dir(self) -> Path:
        return self.root / "work"

    def prepare(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            for sub in (self.journal_dir, self.spool_dir, self.work_dir):
                sub.mkdir(exist_ok=True, mode=0o700)
        except OSError as exc:
            raise AgentStateError(
                f"Cannot make the state directory {exc.filename or self.root}: "
                f"{(exc.strerror or str(exc)).lower()}; give a --state-dir this user may "
                "create and write."
            ) from exc

    def new_key(self) -> Ed25519PrivateKey:
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_atomic(self.key_path, pem, 0o600)
        return key

    def new_seal_key(self) -> X25519PrivateKey:
        key = X25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_atomic(self.seal_key_path, pem, 0o600)
        return key

    def load_seal_key(self) -> X25519PrivateKey:
        try:
            key = serialization.load_pem_private_key(self.seal_key_path.read_bytes(), password=None)
        except (OSError, ValueError) as exc:
            raise AgentStateError(
                f"Cannot read the sealing key {self.seal_key_path}: {exc}"
            ) from exc
        if not isinstance(key, X25519PrivateKey):
            raise AgentStateError(f"{self.seal_key_path} is not an X25519 key.")
        return key

    def load_key(self) -> Ed25519PrivateKey:
        try:
            key = serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)
        except (OSError, ValueError) as exc:
            raise AgentStateError(f"Cannot read the node key {self.key_path}: {exc}") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise AgentStateError(f"{self.key_path} is not an Ed25519 key.")
        return key

    def save_identity(self, identity: Identity) -> None:
        data = {
            "node_id": identity.node_id,
            "server": identity.server,
            "name": identity.name,
            "insecure": identity.insecure,
            "fallback_servers": list(identity.fallbacks),
        }
        write_atomic(self.identity_path, json.dumps(data, indent=2).encode(), 0o600)

    def load_identity(self) -> Identity:
        try:
            data: dict[str, Any] = json.loads(self.identity_path.read_text())
        except FileNotFoundError as exc:
            raise AgentStateError(
                f"This node is not registered (no {self.identity_path}): run "
                "`fleetrun-agent register` first."
            ) from exc
        except (OSError, ValueError) as exc:
            raise AgentStateError(f"Cannot read {self.identity_path}: {exc}") from exc
        return Identity(
            node_id=data["node_id"],
            server=data["server"],
            name=data["name"],
            insecure=bool(data.get("insecure", False)),
            fallbacks=tuple(data.get("fallback_servers") or ()),
        )

    def is_registered(self) -> bool:
        return self.identity_path.exists()


def public_key_b64(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def sign_b64(key: Ed25519PrivateKey, message: bytes) -> str:
    return base64.b64encode(key.sign(message)).decode()
