"""Registration: trade an activation for a node identity.

The key pair is made here and the private key never leaves the node; the server
gets the public key and the platform facts, and answers with the node id.
Uses only the standard library's HTTP client, to keep the agent small.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from typing import Any

from fleetrun import __version__
from fleetrun.agent import facts
from fleetrun.agent.state import Identity, StateDir, public_key_b64
from fleetrun.core import sealing


class RegistrationError(Exception):
    """Registration failed; the message is for the person at the terminal."""


def post_json(
    url: str, body: dict[str, Any], context: ssl.SSLContext | None = None
) -> dict[str, Any]:
    # The scheme was checked to be http or https by `register`.
    request = urllib.request.Request(  # noqa: S310
        url,
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", "user-agent": f"fleetrun-agent/{__version__}"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as response:  # noqa: S310
            data: dict[str, Any] = json.loads(response.read())
            return data
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read())["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = f"the server answered {exc.code} {exc.reason}"
        raise RegistrationError(message) from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RegistrationError(
            f"Cannot reach the server at {url.split('/v1/')[0]} ({reason}): check the URL and "
            "that the server is running."
        ) from exc


def register(
    state: StateDir,
    server: str,
    activation_id: str,
    activation_code: str,
    *,
    name: str | None,
    tags: dict[str, str],
    force: bool = False,
) -> Identity:
    if not server.startswith(("http://", "https://")):
        raise RegistrationError(f"The server URL {server!r} must start with http:// or https://.")
    if state.is_registered() and not force:
        current = state.load_identity()
        raise RegistrationError(
            f"This state directory already holds node {current.node_id}: pass --force to "
            "register again (the old identity is replaced), or use another --state-dir."
        )
    state.prepare()
    key = state.new_key()
    seal_key = state.new_seal_key()
    answer = post_json(
        server.rstrip("/") + "/v1/agent/register",
        {
            "activation_id": activation_id,
            "activation_code": activation_code,
            "public_key": public_key_b64(key),
            "seal_public_key": sealing.public_key_b64(seal_key),
            "name": name,
            "tags": tags,
            "facts": facts.collect(),
            "agent_version": __version__,
        },
    )
    identity = Identity(node_id=answer["node_id"], server=server.rstrip("/"), name=answer["name"])
    state.save_identity(identity)
    return identity
