"""Group run commands over the API, in process: an unknown group, and a group run
command that outlives its node group. (Members running it need agents:
tests/e2e/test_group_run_commands.py.)"""

from __future__ import annotations


def test_unknown_group_is_404_and_stores_nothing(app):
    response = app.http.put(
        "/v1/groups/nope/run-commands/x",
        json={"source": {"script": "true"}},
        headers={"authorization": f"Bearer {app.token}"},
    )
    assert response.status_code == 404
    assert response.json()["error"]["message"] == (
        "No group 'nope' exists; see `fleetrun groups list`."
    )


def test_a_group_run_command_outlives_its_node_group_and_can_still_be_removed(app):
    client = app.client
    [node] = app.enrol(1, tags={"tier": "gone"}, prefix="gone")
    client.create_group("gone", node_ids=[node.node_id])
    client.put_group_run_command("gone", "stay", script="true")
    client.delete_group("gone")
    assert [rc.name for rc in client.list_run_commands(node.node_id)] == ["stay"]
    client.delete_group_run_command("gone", "stay")
    assert client.list_run_commands(node.node_id) == []
