"""`fleetrun channels ...`: named destinations of command notifications."""

from __future__ import annotations

import click

from fleetrun.cli import render
from fleetrun.cli.base import api_options, options
from fleetrun.cli.rule_admin import secret_for


@click.group("channels")
@api_options
def channels() -> None:
    """Notification channels: where `fleetrun send --notify` messages go."""


@channels.command("create")
@click.argument("name")
@click.option("--target", required=True, help="webhook:URL, email:ADDRESS, nats:, redis:, ...")
@click.option("--secret-env", default=None, metavar="VAR", help="Webhook secret from $VAR.")
@click.option("--description", default=None)
@api_options
@click.pass_context
def create(
    ctx: click.Context, name: str, target: str, secret_env: str | None, description: str | None
) -> None:
    """Create a channel. A webhook's signing secret comes from --secret-env, or is made
    here and printed once (the server never shows it)."""
    secret, made = secret_for([target], secret_env)
    channel = (
        options(ctx)
        .client()
        .create_channel(name, target=target, secret=secret, description=description)
    )
    if options(ctx).json:
        return render.emit_json(
            {**channel.model_dump(mode="json"), **({"secret": secret} if made else {})}
        )
    render.out.print(f"Created channel {channel.name} ({channel.target}).")
    if made:
        render.out.print(f"Signing secret (shown once, keep it for the receiver): {secret}")


@channels.command("list")
@api_options
@click.pass_context
def list_channels(ctx: click.Context) -> None:
    """List channels."""
    opts = options(ctx)
    found = opts.client().list_channels()
    if opts.json:
        return render.emit_json(found)
    render.table(
        ["NAME", "TARGET", "SIGNED", "DESCRIPTION"],
        ([c.name, c.target, "yes" if c.has_secret else "-", c.description or ""] for c in found),
        empty="No channels: create one with `fleetrun channels create`.",
    )


@channels.command("show")
@click.argument("name")
@api_options
@click.pass_context
def show(ctx: click.Context, name: str) -> None:
    """Show a channel and the notifications it sent lately."""
    opts = options(ctx)
    client = opts.client()
    channel = client.get_channel(name)
    sent = client.list_channel_deliveries(name, limit=20)
    if opts.json:
        return render.emit_json({"channel": channel, "deliveries": sent})
    render.block(
        [
            ("Channel", channel.name),
            ("Target", channel.target),
            ("Signed", "yes" if channel.has_secret else "no"),
            ("Description", channel.description),
        ]
    )
    for d in sent:
        render.out.print(f"  {render.when(d.created_at)}  {d.state:<9}  {d.attempts} attempt(s)")


@channels.command("delete")
@click.argument("name")
@api_options
@click.pass_context
def delete(ctx: click.Context, name: str) -> None:
    """Delete a channel (commands that name it stop notifying)."""
    options(ctx).client().delete_channel(name)
    if options(ctx).json:
        return render.emit_json({"deleted": name})
    render.out.print(f"Deleted channel {name}.")
