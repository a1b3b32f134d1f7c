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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fleetrun import __version__
from fleetrun.agent import facts, tls
from fleetrun.agent.state import Identity, StateDir, public_key_b64, write_atomic
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
        if isinstance(reason, ssl.SSLCertVerificationError):
            raise RegistrationError(
                f"The server's certificate is not trusted ({reason.verify_message}): give the "
                "right --ca-file or --ca-fingerprint."
            ) from exc
        raise Unreachable(
            f"Cannot reach the server at {url.split('/v1/')[0]} ({reason}): check the URL and "
            "that the server is running."
        ) from exc


def _trust(state: StateDir, server: str, ca_file: Path | None, fingerprint: str | None) -> None:
    """Keep the CA this node will trust for its server (ca.pem), if one was given."""
    if ca_file and fingerprint:
        raise RegistrationError("Give --ca-file or --ca-fingerprint, not both.")
    if ca_file:
        try:
            pem = ca_file.read_bytes()
            tls.fingerprint(pem)
        except (OSError, ValueError) as exc:
            raise RegistrationError(
                f"{ca_file} is not a readable PEM certificate: {exc}."
            ) from None
    elif fingerprint:
        pem = tls.fetch_ca(server, fingerprint)
    else:
        state.ca_path.unlink(missing_ok=True)
        return
    write_atomic(state.ca_path, pem, 0o644)


class Unreachable(RegistrationError):
    """The server did not answer at all (another URL may)."""


def register(
    state: StateDir,
    server: str | Sequence[str],
    activation_id: str,
    activation_code: str,
    *,
    name: str | None,
    tags: dict[str, str],
    force: bool = False,
    ca_file: Path | None = None,
    ca_fingerprint: str | None = None,
    insecure: bool = False,
) -> Identity:
    """Register through the first of the server URLs (several: replicas, tried in turn
    when one does not answer) and keep them all for the agent."""
    servers = [server] if isinstance(server, str) else list(server)
    if not servers:
        raise RegistrationError("Give the server's URL with --server.")
    for url in servers:
        if not url.startswith(("http://", "https://")):
            raise RegistrationError(f"The server URL {url!r} must start with http:// or https://.")
        tls.check_transport(url, insecure)
        if (ca_file or ca_fingerprint) and not url.startswith("https://"):
            raise RegistrationError("--ca-file and --ca-fingerprint need an https:// server URL.")
    servers = list(dict.fromkeys(url.rstrip("/") for url in servers))
    if state.is_registered() and not force:
        current = state.load_identity()
        raise RegistrationError(
            f"This state directory already holds node {current.node_id}: pass --force to "
            "register again (the old identity is replaced), or use another --state-dir."
        )
    state.prepare()
    _trust(state, servers[0], ca_file, ca_fingerprint)
    key = state.new_key()
    seal_key = state.new_seal_key()
    body = {
        "activation_id": activation_id,
        "activation_code": activation_code,
        "public_key": public_key_b64(key),
        "seal_public_key": sealing.public_key_b64(seal_key),
        "name": name,
        "tags": tags,
        "facts": facts.collect(),
        "agent_version": __version__,
    }
    for index, url in enumerate(servers):
        context = tls.context(state.ca_path) if url.startswith("https://") else None
        try:
            answer = post_json(url + "/v1/agent/register", body, context)
            break
        except Unreachable:
            if index == len(servers) - 1:
                raise
    identity = Identity(
        node_id=answer["node_id"],
        server=servers[0],
        name=answer["name"],
        insecure=insecure,
        fallbacks=tuple(servers[1:]),
    )
    state.save_identity(identity)
    return identity
