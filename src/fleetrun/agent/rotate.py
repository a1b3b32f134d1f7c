"""Key rotation: replace the node's identity key without re-registering.

`fleetrun-agent rotate-key` makes a new key (key.new.pem) and asks for the swap. The
running agent (or, when none runs, the command itself) registers the new public key
over its authenticated session, proving it holds the new key; only once the server
has recorded it does key.new.pem replace key.pem. If the agent dies in between, the
next connection that the server refuses with the old key tries the pending one.
"""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fleetrun.agent.state import StateDir, public_key_b64, write_atomic
from fleetrun.core import protocol


def pending_path(state: StateDir) -> Path:
    return state.root / "key.new.pem"


def request_path(state: StateDir) -> Path:
    return state.root / "rotate.request"


def done_path(state: StateDir) -> Path:
    return state.root / "rotate.done"


def request(state: StateDir) -> str:
    """Make the new key and ask for the swap; the new public key."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    done_path(state).unlink(missing_ok=True)
    write_atomic(pending_path(state), pem, 0o600)
    write_atomic(request_path(state), b"", 0o600)
    return public_key_b64(key)


def pending_key(state: StateDir) -> Ed25519PrivateKey | None:
    try:
        key = serialization.load_pem_private_key(pending_path(state).read_bytes(), password=None)
    except (OSError, ValueError):
        return None
    return key if isinstance(key, Ed25519PrivateKey) else None


def requested(state: StateDir) -> bool:
    return request_path(state).exists() and pending_path(state).exists()


def frame(state: StateDir, node_id: str) -> protocol.Rotate | None:
    key = pending_key(state)
    if key is None:
        return None
    public = public_key_b64(key)
    proof = base64.b64encode(key.sign(protocol.rotate_message(node_id, public))).decode()
    return protocol.Rotate(public_key=public, proof=proof)


def promote(state: StateDir, public_key: str) -> bool:
    """The server recorded `public_key`: make the pending key the node's key."""
    key = pending_key(state)
    if key is None or public_key_b64(key) != public_key:
        return False
    os.replace(pending_path(state), state.key_path)
    request_path(state).unlink(missing_ok=True)
    write_atomic(
        done_path(state), json.dumps({"public_key": public_key, "at": time.time()}).encode()
    )
    return True


def wait_done(state: StateDir, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if done_path(state).exists() and not pending_path(state).exists():
            return True
        time.sleep(0.2)
    return False
