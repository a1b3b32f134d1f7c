"""`fleetrun keys create PUBLISHER`: a publisher's signing key, kept by the operator."""

from __future__ import annotations

import os
from pathlib import Path

import click
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fleetrun.cli import render
from fleetrun.cli.base import json_option, options
from fleetrun.core.errors import ValidationError
from fleetrun.core.signing import public_key_b64


def load_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise ValidationError(f"Cannot read the signing key {path}: {exc}.") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValidationError(
            f"{path} is not an Ed25519 key: make one with `fleetrun keys create`."
        )
    return key


@click.group("keys")
def keys() -> None:
    """Publisher keys: sign documents that nodes may require signatures on."""


@keys.command("create")
@click.argument("publisher")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=".",
    show_default=True,
    help="Where to write PUBLISHER.key and PUBLISHER.pub.",
)
@json_option
@click.pass_context
def create(ctx: click.Context, publisher: str, directory: Path) -> None:
    """Make an Ed25519 key pair: PUBLISHER.key (private, 0600) and PUBLISHER.pub."""
    if not publisher or "/" in publisher or publisher.startswith("."):
        raise ValidationError(f"Publisher name {publisher!r} is not valid: use a simple name.")
    directory.mkdir(parents=True, exist_ok=True)
    private, public = directory / f"{publisher}.key", directory / f"{publisher}.pub"
    if private.exists():
        raise ValidationError(f"{private} exists already: keep it, or remove it first.")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    public.write_text(public_key_b64(key) + "\n")
    if options(ctx).json:
        return render.emit_json(
            {"publisher": publisher, "public_key": public_key_b64(key), "key_file": str(private)}
        )
    render.out.print(f"Wrote {private} (keep it secret) and {public}.", markup=False)
    render.out.print(f"Public key: {public_key_b64(key)}", markup=False)
    render.err.print(
        "\nOn each node that must run only your signed documents:\n"
        f"  fleetrun-agent config set security.trusted_publishers {public_key_b64(key)} --add\n"
        "  fleetrun-agent config set security.require_signed_documents true",
        markup=False,
    )
