"""The Python SDK: a thin client over the REST API.

    from fleetrun.sdk import Client

    client = Client()  # FLEETRUN_SERVER, FLEETRUN_TOKEN, or what `fleetrun login` saved
    command = client.send_command(script="uptime", tags={"env": "prod"})
    command = client.wait(command.id)
    for inv in client.list_invocations(command.id):
        print(inv.node_name, inv.status, inv.exit_code)

`AsyncClient` has the same methods as coroutines (`async with AsyncClient() as c:
await c.send_command(...)`), and async iterators for listings and streams.

Errors are the classes of `fleetrun.core.errors`, whichever side raised them.
docs/sdk.md has an example for each resource.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fleetrun.sdk.asyncclient import AsyncClient
    from fleetrun.sdk.client import Client

__all__ = ["AsyncClient", "Client"]


def __getattr__(name: str) -> Any:
    # The client (and httpx under it) loads on first use: the CLI reads its settings
    # from fleetrun.sdk.config without paying for it (`fleetrun --help` stays fast).
    if name == "Client":
        from fleetrun.sdk.client import Client

        return Client
    if name == "AsyncClient":
        from fleetrun.sdk.asyncclient import AsyncClient

        return AsyncClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
