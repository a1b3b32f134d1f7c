"""Listings at scale, in process: a command to a thousand enrolled nodes, paged.
(Output at scale and downloads need agents: tests/e2e/test_scale.py.)"""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.harness import wait_for


def _register_many(app, count: int) -> list[str]:
    """Nodes registered through the real route, each with a key of its own."""
    activation = app.client.create_activation(registration_limit=count, tags={"scale": "k"})
    ids = []
    for n in range(count):
        key = (
            Ed25519PrivateKey.generate()
            .public_key()
            .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        )
        answer = app.http.post(
            "/v1/agent/register",
            json={
                "activation_id": activation.id,
                "activation_code": activation.code,
                "public_key": base64.b64encode(key).decode(),
                "name": f"bulk{n:04d}",
                "agent_version": "0",
                "facts": {},
                "tags": {},
            },
        )
        answer.raise_for_status()
        ids.append(answer.json()["node_id"])
    return ids


def test_a_command_to_a_thousand_nodes_lists_page_by_page_without_output(app):
    ids = _register_many(app, 1000)
    client = app.client
    command = client.send_command(script="echo hi", tags={"scale": "k"}, max_concurrency="100%")
    assert command.target_count == 1000
    shown = client.get_command(command.id)
    assert shown.target_count == 1000 and "steps" not in shown.model_dump()
    seen, cursor, pages = [], None, 0
    while True:
        page = client.list_invocations_page(command_id=command.id, limit=300, cursor=cursor)
        seen += [i.node_id for i in page.items]
        assert all(i.stdout == "" and i.steps == [] for i in page.items)
        pages += 1
        cursor = page.next_cursor
        if not cursor:
            break
    assert pages == 4 and sorted(seen) == sorted(ids)
    # no agent runs: every node is offline, so every invocation waits as Delayed
    wait_for(
        lambda: (
            len(
                client.list_invocations_page(
                    command_id=command.id, status="Delayed", limit=1000
                ).items
            )
            == 1000
        ),
        what="all 1000 invocations Delayed",
    )
    filtered = client.list_commands_page(node_id=ids[5])
    assert [c.id for c in filtered.items] == [command.id]
    assert client.list_commands_page(tags={"scale": "k"}).items[0].id == command.id
