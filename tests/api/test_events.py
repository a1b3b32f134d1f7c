"""Events over the API and the CLI, in process: a denied API call is an event, and
events are listed and filtered from the command line. (Events of running commands and
agents, and the live stream, need real processes: tests/e2e/test_events.py.)"""

from __future__ import annotations

import json

import pytest

from fleetrun.core.errors import AccessDeniedError
from tests.harness import wait_for

COMMAND = "Command Status-change Notification"


def _events(client, detail_type, **match):
    return [
        e
        for e in reversed(client.list_events(detail_type=detail_type, limit=1000))
        if all(e.detail.get(k) == v for k, v in match.items())
    ]


def test_a_denied_api_call_is_an_event(app):
    admin = app.client
    admin.create_principal("nosy")
    token = admin.create_token("nosy").token
    nosy = app.client_for(token)
    with pytest.raises(AccessDeniedError):
        nosy.list_rules()
    denied = wait_for(
        lambda: _events(admin, "API Call Denied", principal="nosy"), what="the denial event"
    )
    assert denied[0].detail["action"] == "fleetrun:ListRules"
    assert denied[0].detail["path"] == "/v1/rules"


def test_events_list_on_the_command_line_filters_and_prints_json(app):
    """The command's first status event (Pending) is written with the command itself."""
    [node] = app.enrol(1)
    command = app.client.send_command(script="true", node_ids=[node.node_id])
    done = app.cli("events", "list", "--detail-type", COMMAND, "--json")
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    assert listed and all(e["detail-type"] == COMMAND for e in listed)
    assert any(e["detail"]["command-id"] == command.id for e in listed)
    seqs = [e["seq"] for e in listed]  # what events tail --after takes
    assert seqs == sorted(seqs, reverse=True) and seqs[-1] > 0
    table = app.cli("events", "list", "--since", "10m")
    assert table.returncode == 0 and "Command Status-change" in table.stdout
    assert f"\n{seqs[0]} " in table.stdout or table.stdout.startswith(f"{seqs[0]} ")
    bad = app.cli("events", "list", "--since", "yesterday-ish")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "--since" in bad.stderr
