"""Sealed values: secrets encrypted on the operator's machine to one node's key.

Each node has an X25519 key pair, made at registration; the private key never leaves
the node, the server keeps the public key. `seal` encrypts a value to it (an
ephemeral X25519 key, HKDF-SHA256, ChaCha20-Poly1305); only that node can `unseal`
it. `context` is bound to the ciphertext (authenticated, not secret), so a sealed
value cannot be moved to another parameter or another node unnoticed.

    sealed = seal(node.seal_public_key, b"s3cret", context=b"n-...:password")
    value = unseal(node_private_key, sealed, context=b"n-...:password")

The text form is `fs1.` followed by unpadded base64url of
ephemeral public key (32) || nonce (12) || ciphertext with tag.
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PREFIX = "fs1."
_INFO = b"fleetrun-seal-v1"


class SealError(ValueError):
    """A sealed value that cannot be opened: wrong key, wrong context, or altered."""


def _raw(key: X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_key_b64(private_key: X25519PrivateKey) -> str:
    return base64.b64encode(_raw(private_key.public_key())).decode()


def _key(shared: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO + ephemeral + recipient
    ).derive(shared)


def load_public_key(text: str) -> X25519PublicKey:
    try:
        raw = base64.b64decode(text, validate=True)
        return X25519PublicKey.from_public_bytes(raw)
    except ValueError as exc:
        raise SealError("The sealing key must be a base64 raw X25519 key of 32 bytes.") from exc


def seal(public_key: str, plaintext: bytes, *, context: bytes = b"") -> str:
    recipient = load_public_key(public_key)
    ephemeral = X25519PrivateKey.generate()
    ephemeral_raw = _raw(ephemeral.public_key())
    key = _key(ephemeral.exchange(recipient), ephemeral_raw, _raw(recipient))
    nonce = os.urandom(12)
    sealed = ephemeral_raw + nonce + ChaCha20Poly1305(key).encrypt(nonce, plaintext, context)
    return PREFIX + base64.urlsafe_b64encode(sealed).decode().rstrip("=")


def unseal(private_key: X25519PrivateKey, sealed: str, *, context: bytes = b"") -> bytes:
    if not sealed.startswith(PREFIX):
        raise SealError("This is not a sealed value (it does not start with fs1.).")
    body = sealed[len(PREFIX) :]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except ValueError as exc:
        raise SealError("The sealed value is not valid base64.") from exc
    if len(raw) < 32 + 12 + 16:
        raise SealError("The sealed value is too short.")
    ephemeral_raw, nonce, ciphertext = raw[:32], raw[32:44], raw[44:]
    ephemeral = X25519PublicKey.from_public_bytes(ephemeral_raw)
    key = _key(private_key.exchange(ephemeral), ephemeral_raw, _raw(private_key.public_key()))
    try:
        return ChaCha20Poly1305(key).decrypt(nonce, ciphertext, context)
    except InvalidTag as exc:
        raise SealError("The sealed value does not open with this node's key and context.") from exc


def is_sealed(value: str) -> bool:
    return value.startswith(PREFIX)
