"""Secret parameters over the API, in process: they must be sealed, and for exactly the
target nodes. (Sealing, opening on the node, masking and finding the secret nowhere
else need agents: tests/e2e/test_secrets.py.)"""

from __future__ import annotations


def test_secrets_must_be_sealed_for_exactly_the_target_nodes(app):
    one, two = (n.node_id for n in app.enrol(2))
    client = app.client
    from fleetrun.core.targets import Target

    only_one = client.seal_for([Target(key="NodeIds", values=[one])], {"x": "y"}, [])
    response = app.http.post(
        "/v1/commands",
        headers={"authorization": f"Bearer {app.token}"},
        json={
            "parameters": {"commands": ["true"]},
            "targets": [{"key": "NodeIds", "values": [one, two]}],
            "secret_parameters": {k: v.model_dump() for k, v in only_one.items()},
        },
    )
    assert response.status_code == 409
    assert f"node {two} has none" in response.json()["error"]["message"]
    response = app.http.post(
        "/v1/commands",
        headers={"authorization": f"Bearer {app.token}"},
        json={
            "parameters": {"commands": ["true"]},
            "targets": [{"key": "NodeIds", "values": [one]}],
            "secret_parameters": {one: {"env": {"x": "plain text"}}},
        },
    )
    assert response.status_code == 400 and "is not sealed" in response.json()["error"]["message"]
