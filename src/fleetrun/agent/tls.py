"""Transport security for the agent: which server certificates it trusts, and when
plain HTTP is allowed at all.

- `--ca-file FILE` at registration: that CA (copied to ca.pem in the state dir) is
  the only one trusted for this server.
- `--ca-fingerprint SHA256`: the agent fetches the server's CA certificate once, over
  TLS it cannot check yet, and keeps it only if its SHA-256 matches the fingerprint
  the operator read from the server; from then on it trusts that CA alone.
- Plain `http://` only to loopback, unless registered with `--insecure`.
"""

from __future__ import annotations

import hashlib
import ssl
import urllib.error
import urllib.request
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from fleetrun.core.transport import plain_http_off_host


class TransportError(Exception):
    """The connection cannot be trusted: the message says why and what to do."""


def check_transport(url: str, insecure: bool) -> None:
    if plain_http_off_host(url) and not insecure:
        raise TransportError(
            f"{url} is plain HTTP to a host that is not this machine: use https://, or pass "
            "--insecure if you really mean to send the node's traffic unencrypted."
        )


def fingerprint(pem: bytes) -> str:
    """SHA-256 of the certificate's DER form, as lowercase hex."""
    cert = x509.load_pem_x509_certificate(pem)
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def normalise(text: str) -> str:
    text = text.strip().lower()
    if text.startswith("sha256:"):
        text = text[len("sha256:") :]
    return text.replace(":", "")


def context(ca_file: Path | None) -> ssl.SSLContext:
    if ca_file is not None and ca_file.exists():
        return ssl.create_default_context(cafile=str(ca_file))
    return ssl.create_default_context()


def fetch_ca(server: str, expected: str) -> bytes:
    """The server's CA certificate, if its fingerprint is the one expected."""
    unverified = ssl.create_default_context()
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE  # checked below, against the pinned fingerprint
    try:
        with urllib.request.urlopen(  # noqa: S310 - https, checked by the caller
            server.rstrip("/") + "/v1/agent/ca", timeout=30, context=unverified
        ) as response:
            pem: bytes = response.read()
    except (urllib.error.URLError, OSError) as exc:
        raise TransportError(f"Cannot fetch the CA certificate from {server}: {exc}.") from exc
    try:
        actual = fingerprint(pem)
    except ValueError as exc:
        raise TransportError(f"{server} did not answer with a CA certificate.") from exc
    if actual != normalise(expected):
        raise TransportError(
            f"The server's CA fingerprint is sha256:{actual}, not the one given: do not trust "
            "this server (check the fingerprint the fleetrun server printed at start)."
        )
    return pem
