"""Targets: tags (values ORed, keys ANDed), tag keys, groups that follow their tags, as
the nodes that run the command. (Refusals are in tests/api/test_targets.py.)"""

from __future__ import annotations

import pytest

from fleetrun.core.errors import NotFoundError
from fleetrun.core.targets import Target


def _ran_on(client, command):
    client.wait(command.id, timeout_s=60)
    return sorted(i.node_name for i in client.list_invocations(command.id))


def test_tag_filters_tag_keys_and_their_combinations(fleet):
    fleet.add_agents(2, tags={"role": "web", "env": "prod"}, prefix="web")
    fleet.add_agents(1, tags={"role": "db", "env": "prod"}, prefix="db")
    fleet.add_agents(1, tags={"role": "web", "env": "dev", "canary": "yes"}, prefix="dev")
    client = fleet.client
    send = lambda **kw: client.send_command(script="true", **kw)  # noqa: E731
    assert _ran_on(client, send(tags={"role": ["web", "db"], "env": "prod"})) == [
        "db03",
        "web01",
        "web02",
    ]
    assert _ran_on(client, send(targets=[Target(key="tag-key", values=["canary"])])) == ["dev04"]
    assert _ran_on(
        client, send(tags={"role": "web"}, targets=[Target(key="tag:env", values=["dev"])])
    ) == ["dev04"]
    # the resolved list is kept: a node enrolled later is not added to an old command
    old = send(tags={"env": "prod"})
    fleet.add_agents(1, tags={"env": "prod"}, prefix="late")
    assert _ran_on(client, old) == ["db03", "web01", "web02"]


def test_a_tag_group_follows_its_tags_and_a_node_group_is_fixed(fleet):
    web = fleet.add_agents(2, tags={"role": "web"}, prefix="web")
    client = fleet.client
    tagged = client.create_group("webs", tags={"role": "web"}, description="all web nodes")
    assert sorted(tagged.members) == sorted(a.node_id for a in web)
    fixed = client.create_group("first", node_ids=[web[0].node_id])
    later = fleet.add_agents(1, tags={"role": "web"}, prefix="web")[0]
    assert later.node_id in client.get_group("webs").members
    assert client.get_group("first").members == [web[0].node_id]
    assert _ran_on(client, client.send_command(script="true", group="webs")) == [
        "web01",
        "web02",
        "web03",
    ]
    assert _ran_on(
        client, client.send_command(script="true", targets=[Target(key="group", values=["first"])])
    ) == ["web01"]
    assert {g.name for g in client.list_groups()} == {"webs", "first"} and fixed.node_ids
    client.delete_group("first")
    with pytest.raises(NotFoundError, match="No group 'first'"):
        client.send_command(script="true", group="first")
