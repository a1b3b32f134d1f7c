"""Targets: tags (values ORed, keys ANDed), tag keys, groups that follow their tags, as
the nodes that run the command. (Refusals are in tests/api/test_targets.py.)"""

from __future__ import annotations

import pytest

from fleetrun.core.errors import NotFoundError
from fleetrun.core.targets import Target
from tests.harness import Fleet


@pytest.fixture(scope="module")
def targets_fleet(tmp_path_factory):
    """One server for the module. Each test enrolls its own nodes under tags no other
    test uses, so a target matches that test's nodes only; the nodes' names are the
    ones their agents were given (numbered in order of enrolment)."""
    f = Fleet(tmp_path_factory.mktemp("targets")).start()
    try:
        yield f
    finally:
        f.close()


def _names(*agents):
    return sorted(a.name for a in agents)


def _ran_on(client, command):
    client.wait(command.id, timeout_s=60)
    return sorted(i.node_name for i in client.list_invocations(command.id))


def test_tag_filters_tag_keys_and_their_combinations(targets_fleet):
    fleet = targets_fleet
    web = fleet.add_agents(2, tags={"role": "web", "env": "prod"}, prefix="web")
    db = fleet.add_agents(1, tags={"role": "db", "env": "prod"}, prefix="db")
    dev = fleet.add_agents(1, tags={"role": "web", "env": "dev", "canary": "yes"}, prefix="dev")
    client = fleet.client
    send = lambda **kw: client.send_command(script="true", **kw)  # noqa: E731
    assert _ran_on(client, send(tags={"role": ["web", "db"], "env": "prod"})) == _names(*db, *web)
    assert _ran_on(client, send(targets=[Target(key="tag-key", values=["canary"])])) == _names(*dev)
    assert _ran_on(
        client, send(tags={"role": "web"}, targets=[Target(key="tag:env", values=["dev"])])
    ) == _names(*dev)
    # the resolved list is kept: a node enrolled later is not added to an old command
    old = send(tags={"env": "prod"})
    fleet.add_agents(1, tags={"env": "prod"}, prefix="late")
    assert _ran_on(client, old) == _names(*db, *web)


def test_a_tag_group_follows_its_tags_and_a_node_group_is_fixed(targets_fleet):
    fleet = targets_fleet
    # a tag of this test's own: the other test's nodes have role=web too
    web = fleet.add_agents(2, tags={"tier": "front"}, prefix="front")
    client = fleet.client
    tagged = client.create_group("webs", tags={"tier": "front"}, description="all web nodes")
    assert sorted(tagged.members) == sorted(a.node_id for a in web)
    fixed = client.create_group("first", node_ids=[web[0].node_id])
    later = fleet.add_agents(1, tags={"tier": "front"}, prefix="front")[0]
    assert later.node_id in client.get_group("webs").members
    assert client.get_group("first").members == [web[0].node_id]
    assert _ran_on(client, client.send_command(script="true", group="webs")) == _names(*web, later)
    assert _ran_on(
        client, client.send_command(script="true", targets=[Target(key="group", values=["first"])])
    ) == [web[0].name]
    assert {g.name for g in client.list_groups()} == {"webs", "first"} and fixed.node_ids
    client.delete_group("first")
    with pytest.raises(NotFoundError, match="No group 'first'"):
        client.send_command(script="true", group="first")
