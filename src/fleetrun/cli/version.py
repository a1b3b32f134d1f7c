"""`fleetrun version`: this CLI's release, the agent protocol it speaks, and the
server's, asked of the server the CLI is set to use (when it answers)."""

from __future__ import annotations

from typing import Any

import click

from fleetrun import __version__
from fleetrun.cli import render
from fleetrun.cli.base import api_options, options
from fleetrun.core import protocol
from fleetrun.core.errors import ConnectionError_, NotFoundError


@click.command("version")
@click.option("--local", is_flag=True, help="Do not ask the server.")
@api_options
@click.pass_context
def version(ctx: click.Context, local: bool) -> None:
    """Show the versions of this CLI, the agent protocol and the server."""
    data: dict[str, Any] = {
        "cli": __version__,
        "protocol": protocol.PROTOCOL_VERSION,
        "min_protocol": protocol.MIN_PROTOCOL_VERSION,
        "server": None,
    }
    if not local:
        client = options(ctx).client()
        try:
            data["server"] = {"url": client.server, **client.server_version().model_dump()}
        except ConnectionError_ as exc:
            data["server_error"] = exc.message
        except NotFoundError:  # a server from before GET /version
            data["server_error"] = f"{client.server} does not say its version: it is older."
    if options(ctx).json:
        render.emit_json(data)
        return
    lines = [
        f"fleetrun {data['cli']} (agent protocol {data['protocol']}, "
        f"oldest taken {data['min_protocol']})"
    ]
    server = data["server"]
    if server is not None:
        lines.append(
            f"server {server['url']}: fleetrun {server['version']} (agent protocol "
            f"{server['protocol']}, oldest taken {server['min_protocol']})"
        )
    elif "server_error" in data:
        lines.append(f"server: not reached ({data['server_error']})")
    render.out.print("\n".join(lines), markup=False, highlight=False)
