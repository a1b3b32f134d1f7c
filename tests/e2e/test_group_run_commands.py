"""Run commands on a node group: every member, nodes that join later, a roll-up. (An
unknown group, and outliving the node group, are in tests/api/test_group_run_commands.py.)"""

from __future__ import annotations

import pytest

from fleetrun.core.errors import ConflictError, NotFoundError
from tests.harness import wait_for

FINISHED = {"Succeeded", "Failed", "TimedOut", "Canceled", "Unknown"}


def _all_done(grc) -> bool:
    return bool(grc.instances) and all(
        i.instanceView.executionState in FINISHED for i in grc.instances
    )


def test_a_group_run_command_reaches_every_member_and_later_joiners(fleet):
    client = fleet.client
    first = fleet.add_agents(2, tags={"tier": "app"}, prefix="app")
    client.create_group("apps", tags={"tier": "app"})
    put = client.put_group_run_command(
        "apps", "hello", script='echo "hi $WHO"', parameters={"WHO": "group"}
    )
    assert {i.nodeId for i in put.instances} == {a.node_id for a in first}
    assert all(i.groupName == "apps" for i in put.instances)
    wait_for(lambda: _all_done(client.get_group_run_command("apps", "hello")), what="members")
    done = client.get_group_run_command("apps", "hello")
    assert (done.summary.total, done.summary.succeeded, done.summary.failed) == (2, 2, 0)
    assert done.provisioningState == "Succeeded"
    assert all(i.instanceView.output == "hi group\n" for i in done.instances)
    # Identical body: nothing runs again on any member.
    again = client.put_group_run_command(
        "apps", "hello", script='echo "hi $WHO"', parameters={"WHO": "group"}
    )
    assert all(i.generation == 1 for i in again.instances)
    # A node with the tag joins: it gets the run command too (tag groups follow tags).
    [late] = fleet.add_agents(1, tags={"tier": "app"}, prefix="late")
    wait_for(
        lambda: any(
            i.nodeId == late.node_id and i.instanceView.executionState == "Succeeded"
            for i in client.get_group_run_command("apps", "hello").instances
        ),
        what="the late member to run it",
    )
    assert client.get_group_run_command("apps", "hello").summary.succeeded == 3
    # The member's run command belongs to the group: it is changed there, not on the node.
    with pytest.raises(ConflictError, match="put there by group apps"):
        client.put_run_command(late.node_id, "hello", script="true")
    with pytest.raises(ConflictError, match="belongs to group apps: delete it there"):
        client.delete_run_command(late.node_id, "hello")
    gone = client.delete_group_run_command("apps", "hello")
    assert gone.provisioningState == "Deleting" and gone.summary.total == 3
    for agent in [*first, late]:
        assert client.list_run_commands(agent.node_id) == []
    with pytest.raises(NotFoundError):
        client.get_group_run_command("apps", "hello")


def test_failures_roll_up_and_secrets_are_not_given_to_later_joiners(fleet):
    client = fleet.client
    fleet.add_agents(1, tags={"tier": "db"}, prefix="db")
    client.create_group("dbs", tags={"tier": "db"})
    client.put_group_run_command(
        "dbs", "check", script='test "$PW" = pw-1', protected_parameters={"PW": "pw-1"}
    )
    wait_for(lambda: _all_done(client.get_group_run_command("dbs", "check")), what="members")
    assert client.get_group_run_command("dbs", "check").summary.succeeded == 1
    [late] = fleet.add_agents(1, tags={"tier": "db"}, prefix="dblate")

    def late_view():
        found = client.get_group_run_command("dbs", "check").instances
        return next((i for i in found if i.nodeId == late.node_id), None)

    wait_for(lambda: late_view() is not None, what="the late member to get it")
    view = late_view().instanceView
    assert view.executionState == "Failed" and "put the group run command again" in (
        view.executionMessage
    )
    rolled = client.get_group_run_command("dbs", "check")
    assert (rolled.summary.succeeded, rolled.summary.failed) == (1, 1)
    assert rolled.provisioningState == "Failed"
    # Put again (changed): sealed to every member now, and both run it.
    client.put_group_run_command(
        "dbs", "check", script='test "$PW" = pw-2', protected_parameters={"PW": "pw-2"}
    )
    wait_for(
        lambda: client.get_group_run_command("dbs", "check").summary.succeeded == 2,
        what="both members to succeed",
    )
