"""`fleetrun groups ...`: named sets of nodes."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

import click

from fleetrun.cli import completion, render
from fleetrun.cli.base import api_options, options
from fleetrun.core.errors import ValidationError
from fleetrun.core.tags import parse_tag
from fleetrun.schemas.groups import Group


def _definition(group: Group) -> str:
    if group.node_ids is not None:
        return f"nodes: {', '.join(group.node_ids)}"
    return "tags: " + ", ".join(f"{k}={'|'.join(v)}" for k, v in sorted((group.tags or {}).items()))


@click.group("groups")
@api_options
def groups() -> None:
    """Node groups: a list of nodes, or every node with some tags (now and later)."""


def _members(
    tags: tuple[str, ...], node_ids: tuple[str, ...]
) -> tuple[list[str] | None, dict[str, list[str]] | None]:
    if bool(tags) == bool(node_ids):
        raise ValidationError("Give either --tag KEY=VALUE or --node ID (one kind) for a group.")
    filters: dict[str, list[str]] = defaultdict(list)
    for text in tags:
        key, value = parse_tag(text)
        filters[key].append(value)
    return (list(node_ids) if node_ids else None), (dict(filters) if tags else None)


def _member_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--tag and --node, for create and update alike."""
    command = click.option(
        "--node",
        "node_ids",
        multiple=True,
        metavar="ID",
        help="A member (repeatable).",
        shell_complete=completion.nodes,
    )(command)
    return click.option(
        "--tag",
        "tags",
        multiple=True,
        metavar="KEY=VALUE",
        help="Members have this tag (repeatable; a key twice means either value).",
    )(command)


def _report(ctx: click.Context, group: Group, done: str) -> None:
    if options(ctx).json:
        return render.emit_json(group)
    render.out.print(
        f"{done} group {group.name} ({_definition(group)}): {len(group.members)} node(s) now."
    )


@groups.command("update")
@click.argument("name")
@_member_options
@click.option("--description", default=None, help="A new description (default: kept).")
@api_options
@click.pass_context
def update(
    ctx: click.Context,
    name: str,
    tags: tuple[str, ...],
    node_ids: tuple[str, ...],
    description: str | None,
) -> None:
    """Give a group new members (tags or node ids, replacing the old ones); its run
    commands go to the nodes that join."""
    members, filters = _members(tags, node_ids)
    group = (
        options(ctx)
        .client()
        .update_group(name, node_ids=members, tags=filters, description=description)
    )
    _report(ctx, group, "Updated")


@groups.command("create")
@click.argument("name")
@_member_options
@click.option("--description", default=None)
@api_options
@click.pass_context
def create(
    ctx: click.Context,
    name: str,
    tags: tuple[str, ...],
    node_ids: tuple[str, ...],
    description: str | None,
) -> None:
    """Create a group from tags (it follows them) or from node ids."""
    members, filters = _members(tags, node_ids)
    group = (
        options(ctx)
        .client()
        .create_group(name, node_ids=members, tags=filters, description=description)
    )
    _report(ctx, group, "Created")


@groups.command("list")
@api_options
@click.pass_context
def list_groups(ctx: click.Context) -> None:
    """List groups."""
    opts = options(ctx)
    found = opts.client().list_groups()
    if opts.json:
        return render.emit_json(found)
    render.table(
        ["NAME", "MEMBERS", "DEFINED BY", "DESCRIPTION"],
        ([g.name, len(g.members), _definition(g), g.description or ""] for g in found),
        empty="No groups: create one with `fleetrun groups create`.",
    )


@groups.command("show")
@click.argument("name")
@api_options
@click.pass_context
def show(ctx: click.Context, name: str) -> None:
    """Show a group and its members now."""
    opts = options(ctx)
    group = opts.client().get_group(name)
    if opts.json:
        return render.emit_json(group)
    render.block(
        [
            ("Group", group.name),
            ("Defined by", _definition(group)),
            ("Description", group.description),
            ("Members", len(group.members)),
        ]
    )
    for node_id in group.members:
        render.out.print(f"  {node_id}")


@groups.command("delete")
@click.argument("name")
@api_options
@click.pass_context
def delete(ctx: click.Context, name: str) -> None:
    """Delete a group (its nodes stay)."""
    options(ctx).client().delete_group(name)
    if options(ctx).json:
        return render.emit_json({"deleted": name})
    render.out.print(f"Deleted group {name}.")
