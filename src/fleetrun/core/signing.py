"""Signed documents: a publisher's Ed25519 signature over a document's content.

The signature covers the SHA-256 of the document's canonical JSON (sorted keys,
compact), so any change to the content after signing breaks it. A node that
requires signatures verifies one from a publisher it trusts, and then makes the
steps itself from the signed content and the command's parameters: the server can
route a signed document, never alter what it runs.
"""

from __future__ import annotations

import base64
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fleetrun.core.documents import content_hash


def message(digest: str) -> bytes:
    return b"fleetrun-document-v1\n" + digest.encode()


def public_key_b64(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def sign(key: Ed25519PrivateKey, content: dict[str, Any]) -> str:
    return base64.b64encode(key.sign(message(content_hash(content)))).decode()


def valid(public_key: str, signature: str, content: dict[str, Any]) -> bool:
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key, validate=True))
        key.verify(base64.b64decode(signature, validate=True), message(content_hash(content)))
    except (InvalidSignature, ValueError):
        return False
    return True


def trusted_signer(
    signatures: list[dict[str, str]], content: dict[str, Any], trusted: list[str]
) -> str | None:
    """The publisher of the first valid signature by a trusted key, if any."""
    for sig in signatures:
        if sig.get("public_key") in trusted and valid(
            sig["public_key"], sig.get("signature", ""), content
        ):
            return sig.get("publisher") or sig["public_key"]
    return None
