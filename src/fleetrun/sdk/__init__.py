"""The Python SDK: a thin client over the REST API.

    from fleetrun.sdk import Client

    client = Client("http://127.0.0.1:8470", token)
    command = client.send_command(script="uptime", tags={"env": "prod"})
    command = client.wait(command.id)
    for inv in client.list_invocations(command.id):
        print(inv.node_name, inv.status, inv.exit_code)

Errors are the classes of `fleetrun.core.errors`, whichever side raised them.
"""

from fleetrun.sdk.client import Client

__all__ = ["Client"]
