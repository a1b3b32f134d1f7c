"""Secrets the server itself must use later (a webhook target's signing secret),
kept in the database only sealed with the server's key.

The key is 32 random bytes: FLEETRUN_SECRET_KEY (base64), or the file secret.key in
the data dir, made on first use with mode 0600. Replicas that share one database must
share the key (set FLEETRUN_SECRET_KEY on each). The text form is `sk1.` and base64url
of nonce (12) || AES-256-GCM ciphertext with tag; `context` (the rule and target it
belongs to) is bound to it, so a sealed value cannot be moved to another target.

Other keys the server needs (the Ed25519 key that signs audit exports) are derived
from it with HKDF, one per purpose: replicas sharing the secret key share them too.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fleetrun.core.errors import ServerError, ValidationError

PREFIX = "sk1."


class SecretBox:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValidationError(
                "The secret key must be 32 bytes (base64 in FLEETRUN_SECRET_KEY)."
            )
        self._aead = AESGCM(key)
        self._key = key

    def derive(self, purpose: str) -> bytes:
        """32 bytes for one purpose, from the secret key (HKDF-SHA256)."""
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode())
        return hkdf.derive(self._key)

    @classmethod
    def load(cls, configured: str | None, path: Path) -> SecretBox:
        if configured:
            try:
                return cls(base64.b64decode(configured, validate=True))
            except (binascii.Error, ValueError) as exc:
                raise ValidationError(
                    "FLEETRUN_SECRET_KEY is not base64 of 32 bytes: make one with "
                    "`openssl rand -base64 32`."
                ) from exc
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(base64.b64encode(os.urandom(32)) + b"\n")
        return cls(base64.b64decode(path.read_bytes().strip()))

    def seal(self, value: str, context: str) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, value.encode(), context.encode())
        return PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")

    def open(self, sealed: str, context: str) -> str:
        try:
            raw = base64.urlsafe_b64decode(sealed[len(PREFIX) :] + "=" * (-len(sealed) % 4))
            return self._aead.decrypt(raw[:12], raw[12:], context.encode()).decode()
        except (InvalidTag, ValueError, binascii.Error) as exc:
            raise ServerError(
                "A stored target secret cannot be opened: the server's secret key changed "
                "(replicas must share FLEETRUN_SECRET_KEY); set the secret again."
            ) from exc
