"""`fleetrun documents ...`: named, versioned script templates."""

from __future__ import annotations

from pathlib import Path

import click
import yaml

from fleetrun.cli import completion, render
from fleetrun.cli.base import api_options, confirm, options, read_text, yes_option
from fleetrun.cli.keys import load_key
from fleetrun.core import signing
from fleetrun.schemas.documents import Document


def _read(path: Path) -> str:
    return read_text(path, "document file")


def _created(ctx: click.Context, doc: Document, verb: str) -> None:
    if options(ctx).json:
        return render.emit_json(doc)
    render.out.print(
        f"{verb} {doc.name} version {doc.version} (default version {doc.default_version})."
    )


@click.group("documents")
@api_options
def documents() -> None:
    """Documents: typed, versioned scripts to send by name."""


@documents.command("create")
@click.argument("name")
@click.option(
    "--file",
    "path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The document, YAML or JSON.",
)
@api_options
@click.pass_context
def create(ctx: click.Context, name: str, path: Path) -> None:
    """Create a document (version 1)."""
    _created(ctx, options(ctx).client().create_document(name, _read(path)), "Created")


@documents.command("update")
@click.argument("name", shell_complete=completion.documents)
@click.option(
    "--file",
    "path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The new content, YAML or JSON.",
)
@api_options
@click.pass_context
def update(ctx: click.Context, name: str, path: Path) -> None:
    """Add a version (the default version stays until `set-default`)."""
    _created(ctx, options(ctx).client().update_document(name, _read(path)), "Added")


@documents.command("list")
@api_options
@click.pass_context
def list_documents(ctx: click.Context) -> None:
    """List documents, built-in ones first."""
    opts = options(ctx)
    found = opts.client().list_documents()
    if opts.json:
        return render.emit_json(found)
    render.table(
        ["NAME", "DEFAULT", "LATEST", "UPDATED", "DESCRIPTION"],
        (
            [
                d.name + (" (built-in)" if d.builtin else ""),
                d.default_version,
                d.latest_version,
                render.when(d.updated_at),
                d.description or "",
            ]
            for d in found
        ),
        empty="No documents.",
    )


@documents.command("show")
@click.argument("ref", metavar="NAME[:VERSION]", shell_complete=completion.documents)
@api_options
@click.pass_context
def show(ctx: click.Context, ref: str) -> None:
    """Show a document (its default version, or VERSION: a number or $LATEST)."""
    opts = options(ctx)
    name, _, version = ref.partition(":")
    doc = opts.client().get_document(name, version or None)
    if opts.json:
        return render.emit_json(doc)
    render.block(
        [
            ("Name", doc.name + (" (built-in)" if doc.builtin else "")),
            (
                "Version",
                f"{doc.version} (default {doc.default_version}, latest {doc.latest_version})",
            ),
            ("Description", doc.description),
            ("Steps", ", ".join(doc.steps)),
            ("Hash", f"sha256:{doc.hash}"),
            ("Signed by", ", ".join(s.publisher for s in doc.signatures) or "nobody"),
            ("Created", f"{render.when(doc.created_at)} by {doc.created_by or '-'}"),
        ]
    )
    if doc.parameters:
        render.out.print()
        render.table(
            ["PARAMETER", "TYPE", "REQUIRED", "DEFAULT", "ALLOWED", "DESCRIPTION"],
            (
                [
                    p.name,
                    p.type,
                    "yes" if p.required else "",
                    "" if p.default is None else p.default,
                    ", ".join(p.allowed_values or []),
                    p.description or "",
                ]
                for p in doc.parameters
            ),
            empty="",
        )
    render.out.print()
    render.raw(yaml.safe_dump(doc.content, sort_keys=False, allow_unicode=True))


@documents.command("set-default")
@click.argument("name", shell_complete=completion.documents)
@click.argument("version")
@api_options
@click.pass_context
def set_default(ctx: click.Context, name: str, version: str) -> None:
    """Make VERSION the one commands run when they name no version."""
    doc = options(ctx).client().set_default_version(name, version)
    if options(ctx).json:
        return render.emit_json(doc)
    render.out.print(f"The default version of {doc.name} is now {doc.default_version}.")


@documents.command("sign")
@click.argument("ref", metavar="NAME[:VERSION]", shell_complete=completion.documents)
@click.option(
    "--key",
    "key_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The publisher's private key (from `fleetrun keys create`).",
)
@click.option(
    "--publisher", default=None, help="The publisher's name (default: the key file's name)."
)
@api_options
@click.pass_context
def sign(ctx: click.Context, ref: str, key_file: Path, publisher: str | None) -> None:
    """Sign a version (its default version, or VERSION) here, with the publisher's key,
    and attach the signature. The private key never leaves this machine."""
    opts = options(ctx)
    name, _, version = ref.partition(":")
    client = opts.client()
    current = client.get_document(name, version or None)
    key = load_key(key_file)
    signed = client.sign_document(
        name,
        current.version,
        publisher=publisher or key_file.stem,
        public_key=signing.public_key_b64(key),
        signature=signing.sign(key, current.content),
    )
    if opts.json:
        return render.emit_json(signed)
    render.out.print(
        f"Signed {signed.name} version {signed.version} as {publisher or key_file.stem}."
    )


@documents.command("delete")
@click.argument("name", shell_complete=completion.documents)
@yes_option
@api_options
@click.pass_context
def delete(ctx: click.Context, name: str, yes: bool) -> None:
    """Delete a document and all its versions (commands already sent keep their steps)."""
    confirm(ctx, f"Delete document {name} and all its versions?", yes=yes)
    options(ctx).client().delete_document(name)
    if options(ctx).json:
        return render.emit_json({"deleted": name})
    render.out.print(f"Deleted document {name}.")
