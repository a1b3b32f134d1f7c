"""The in-process layer itself: the real app, SDK and CLI through the transport seam."""

from __future__ import annotations

import json

import pytest

from fleetrun.core.errors import AuthenticationError


def test_sdk_reaches_the_app_in_process(app):
    assert app.client.whoami().principal == "admin"


def test_a_client_without_token_is_refused(app):
    with pytest.raises(AuthenticationError):
        app.client_for(None).list_nodes()


def test_enrolled_nodes_exist_without_an_agent(app):
    nodes = app.enrol(2, tags={"env": "dev"}, prefix="web")
    listed = {n.id: n for n in app.client.list_nodes()}
    assert {n.node_id for n in nodes} <= set(listed)
    assert all(listed[n.node_id].tags == {"env": "dev"} for n in nodes)


def test_cli_runs_through_its_entry_point(app):
    app.enrol(1)
    result = app.cli("nodes", "list", "--json")
    assert result.exit_code == 0, result.stderr
    assert len(json.loads(result.stdout)) == 1
    denied = app.cli("nodes", "list", token="not-a-token")
    assert denied.exit_code == 3
    assert "fleetrun:" in denied.stderr
