"""`fleetrun nodes ...` and `fleetrun activations ...`."""

from __future__ import annotations

import click

from fleetrun.cli import completion, render
from fleetrun.cli.base import api_options, confirm, options, yes_option
from fleetrun.core.durations import parse_duration
from fleetrun.core.errors import ValidationError
from fleetrun.core.tags import parse_tags
from fleetrun.schemas.activations import MAX_EXPIRES_S
from fleetrun.schemas.nodes import Node


@click.group("nodes")
@api_options
def nodes() -> None:
    """Managed nodes: list them, show one, tag them."""


@nodes.command("list")
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="Only nodes with this tag.")
@click.option(
    "--status", type=click.Choice(["Online", "ConnectionLost"]), help="Only this ping status."
)
@click.option("--wide", is_flag=True, help="Every column, nothing cut (platform, agent, tags).")
@api_options
@click.pass_context
def list_nodes(ctx: click.Context, tags: tuple[str, ...], status: str | None, wide: bool) -> None:
    """List nodes (a table that fits 100 columns; --wide for everything)."""
    opts = options(ctx)
    found = opts.client().list_nodes(tags=parse_tags(tags), ping_status=status)
    if opts.json:
        return render.emit_json(found)
    columns = ["ID", "NAME", "STATUS", "TAGS", "LAST SEEN"]
    if wide:
        columns[3:3] = ["PLATFORM", "AGENT"]
    rows = []
    for n in found:
        row = [
            n.id,
            n.name if wide else render.cut(n.name, 14),
            render.ping_status(n.ping_status, n.last_ping_at),
            render.tags(n.tags) if wide else render.cut(render.tags(n.tags), 20),
            render.when(n.last_ping_at),
        ]
        if wide:
            row[3:3] = [n.platform_version or n.platform or "-", n.agent_version or "-"]
        rows.append(row)
    render.table(
        columns,
        rows,
        empty="No nodes yet: enrol one with `fleetrun activations create` and "
        "`fleetrun-agent register`.",
    )


@nodes.command("show")
@click.argument("node", metavar="ID|NAME", shell_complete=completion.nodes)
@api_options
@click.pass_context
def show_node(ctx: click.Context, node: str) -> None:
    """Show one node, by id or by name."""
    from fleetrun.cli.targeting import node_id

    opts = options(ctx)
    client = opts.client()
    found = client.get_node(node_id(client, node))
    if opts.json:
        return render.emit_json(found)
    render.block(
        [
            ("ID", found.id),
            ("Name", found.name),
            ("Status", render.ping_status(found.ping_status, found.last_ping_at)),
            ("Last seen", render.when(found.last_ping_at)),
            ("Hostname", found.hostname),
            ("Platform", f"{found.platform or '-'} {found.platform_version or ''}".strip()),
            ("Architecture", found.architecture),
            ("Agent", found.agent_version),
            ("Registered", render.when(found.registered_at)),
            ("Tags", render.tags(found.tags)),
        ]
    )
    if found.local_config:
        render.out.print("\nLocal configuration (set on the node, read-only here):", style="bold")
        render.block([(k, v) for k, v in sorted(found.local_config.items())])


@nodes.command("tag")
@click.argument("node", metavar="ID|NAME", shell_complete=completion.nodes)
@click.argument("tags", nargs=-1, required=True, metavar="KEY=VALUE...")
@api_options
@click.pass_context
def tag_node(ctx: click.Context, node: str, tags: tuple[str, ...]) -> None:
    """Set tags on a node (add or change them); its other tags stay."""
    from fleetrun.cli.targeting import node_id

    opts = options(ctx)
    client = opts.client()
    changed = client.tag_node(node_id(client, node), set=parse_tags(tags))
    _tagged(opts.json, changed)


@nodes.command("untag")
@click.argument("node", metavar="ID|NAME", shell_complete=completion.nodes)
@click.argument("keys", nargs=-1, required=True, metavar="KEY...")
@api_options
@click.pass_context
def untag_node(ctx: click.Context, node: str, keys: tuple[str, ...]) -> None:
    """Remove tags from a node, by key."""
    from fleetrun.cli.targeting import node_id

    opts = options(ctx)
    client = opts.client()
    changed = client.tag_node(node_id(client, node), remove=list(keys))
    _tagged(opts.json, changed)


def _tagged(json: bool, node: Node) -> None:
    if json:
        return render.emit_json(node)
    render.out.print(
        render.shown(f"{node.name} ({node.id}) now has the tags: {render.tags(node.tags)}")
    )


@nodes.command("delete")
@click.argument("node_id", shell_complete=completion.nodes)
@yes_option
@api_options
@click.pass_context
def delete_node(ctx: click.Context, node_id: str, yes: bool) -> None:
    """Deregister a node: its agent can no longer connect, unfinished work ends
    Undeliverable; its history stays."""
    opts = options(ctx)
    confirm(
        ctx,
        f"Deregister node {node_id}? Its agent can no longer connect; re-enrolling it "
        "needs a new activation.",
        yes=yes,
    )
    opts.client().delete_node(node_id)
    if opts.json:
        return render.emit_json({"deleted": node_id})
    render.out.print(f"Deleted node {node_id}.")


@click.group("activations")
@api_options
def activations() -> None:
    """Activations: one-time grants that enrol nodes."""


@activations.command("create")
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="Tag every node enrolled.")
@click.option(
    "--limit",
    type=click.IntRange(1, 1000),
    default=1,
    show_default=True,
    help="How many nodes may register with it.",
)
@click.option("--expires", default="24h", show_default=True, help="Lifetime, e.g. 1h, 24h, 30d.")
@click.option("--name", default=None, help="Default name of the nodes.")
@click.option("--description", default=None)
@api_options
@click.pass_context
def create_activation(
    ctx: click.Context,
    tags: tuple[str, ...],
    limit: int,
    expires: str,
    name: str | None,
    description: str | None,
) -> None:
    """Create an activation and print its id and code (the code is shown once)."""
    opts = options(ctx)
    expires_s = parse_duration(expires)
    if not 0 < expires_s <= MAX_EXPIRES_S:
        raise ValidationError(f"Expiry {expires} is out of range: give at most 30d.")
    created = opts.client().create_activation(
        name=name,
        tags=parse_tags(tags),
        registration_limit=limit,
        expires_in_s=expires_s,
        description=description,
    )
    if opts.json:
        return render.emit_json(created)
    render.block(
        [
            ("Activation ID", created.id),
            ("Activation code", created.code),
            ("Registrations", f"up to {created.registration_limit}"),
            ("Expires", render.when(created.expires_at)),
            ("Tags", render.tags(created.tags)),
        ]
    )
    render.err.print(
        "\nOn each node, as root:\n"
        f"  fleetrun-agent register --server {opts.client().server} "
        f"--activation-id {created.id} --activation-code {created.code}\n"
        "  fleetrun-agent run",
        markup=False,
    )


@activations.command("list")
@api_options
@click.pass_context
def list_activations(ctx: click.Context) -> None:
    """List activations."""
    opts = options(ctx)
    found = opts.client().list_activations()
    if opts.json:
        return render.emit_json(found)
    render.table(
        ["ID", "NAME", "USED", "EXPIRES", "TAGS"],
        (
            [
                a.id,
                a.name or "-",
                f"{a.registrations_count}/{a.registration_limit}",
                "expired" if a.expired else render.when(a.expires_at),
                render.tags(a.tags),
            ]
            for a in found
        ),
        empty="No activations: create one with `fleetrun activations create`.",
    )


@activations.command("delete")
@click.argument("activation_id")
@api_options
@click.pass_context
def delete_activation(ctx: click.Context, activation_id: str) -> None:
    """Delete an activation (nodes enrolled with it stay)."""
    opts = options(ctx)
    opts.client().delete_activation(activation_id)
    if opts.json:
        return render.emit_json({"deleted": activation_id})
    render.out.print(f"Deleted activation {activation_id}.")
