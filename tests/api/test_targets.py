"""Targets over the API, in process: bad targets and groups refused, no match ends the
command at once. (Where commands run, by tags and groups, needs agents:
tests/e2e/test_targets.py.)"""

from __future__ import annotations

import pytest

from fleetrun.core.errors import NotFoundError, ValidationError


@pytest.mark.parametrize(
    ("kwargs", "error", "phrase"),
    [
        ({"node_ids": ["n-00000000000000001"]}, NotFoundError, "No node n-00000000000000001"),
        ({"tags": {"k": []}}, ValidationError, "needs at least one value"),
        ({"group": "missing"}, NotFoundError, "No group 'missing'"),
    ],
)
def test_bad_targets_are_refused(app, kwargs, error, phrase):
    app.enrol(3, tags={"env": "test"})
    with pytest.raises(error, match=phrase):
        app.client.send_command(script="true", **kwargs)


def test_bad_groups_are_refused(app):
    [node] = app.enrol(1)
    client = app.client
    with pytest.raises(ValidationError, match="exactly one"):
        client.create_group("g", node_ids=[node.node_id], tags={"a": "b"})
    with pytest.raises(NotFoundError, match="No node n-00000000000000001"):
        client.create_group("g", node_ids=["n-00000000000000001"])
    with pytest.raises(ValidationError, match="Group name"):
        client.create_group("bad name", tags={"a": "b"})


def test_no_match_ends_the_command_at_once_with_a_detail(app):
    app.enrol(3, tags={"role": "web"})
    command = app.client.send_command(script="true", tags={"role": "none"})
    assert (command.status, command.status_detail, command.target_count) == (
        "Failed",
        "NoInstancesInTag",
        0,
    )
