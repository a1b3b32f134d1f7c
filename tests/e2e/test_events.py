"""Every state change is an event, written with the change: commands and invocations
(SSM's shapes), nodes coming, going, connecting and dropping, local-policy refusals and
denied API calls; streamed. (Denied API calls, and listing from the command line, are
in tests/api/test_events.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest

from tests.harness import Fleet, wait_for

INVOCATION = "Command Invocation Status-change Notification"
COMMAND = "Command Status-change Notification"


@pytest.fixture(scope="module")
def events_fleet(tmp_path_factory):
    """One server for the module: each test enrolls a node of its own and looks only at
    the events of its own node or command; the streams start after what came before."""
    f = Fleet(tmp_path_factory.mktemp("events")).start()
    try:
        yield f
    finally:
        f.close()


def _events(client, detail_type, **match):
    return [
        e
        for e in reversed(client.list_events(detail_type=detail_type, limit=1000))
        if all(e.detail.get(k) == v for k, v in match.items())
    ]


def test_a_command_and_its_invocations_emit_ssm_shaped_status_events(events_fleet):
    client = events_fleet.client
    agent = events_fleet.add_agent()
    command = client.send_command(script="exit 3", node_ids=[agent.node_id], comment="evt")
    assert client.wait(command.id, timeout_s=60).status == "Failed"

    def statuses(kind):
        return [e.detail["status"] for e in _events(client, kind, **{"command-id": command.id})]

    wait_for(lambda: statuses(COMMAND)[-1:] == ["Failed"], what="the command's last event")
    assert statuses(INVOCATION) == ["Pending", "InProgress", "Failed"]
    assert statuses(COMMAND) == ["Pending", "InProgress", "Failed"]
    last = _events(client, INVOCATION, **{"command-id": command.id})[-1]
    envelope = last.envelope()
    assert set(envelope) == {
        "version",
        "id",
        "detail-type",
        "source",
        "time",
        "resources",
        "detail",
    }
    assert envelope["source"] == "fleetrun" and envelope["version"] == "0"
    assert f"frn:fleetrun:node/{agent.node_id}" in envelope["resources"]
    detail = envelope["detail"]
    assert detail["node-id"] == agent.node_id
    assert detail["document-name"] == "RunShellScript"
    assert detail["exit-code"] == 3
    assert detail["requested-date-time"].endswith("Z")
    summary = _events(client, COMMAND, **{"command-id": command.id})[-1].detail
    assert summary["parameters"] == {"commands": ["exit 3"]}
    assert summary["expire-after"].endswith("Z") and summary["comment"] == "evt"


def test_nodes_registering_connecting_dropping_and_leaving_are_events(events_fleet):
    client = events_fleet.client
    agent = events_fleet.add_agent(tags={"env": "evt"})
    node = agent.node_id
    registered = _events(client, "Node Registration", **{"node-id": node})
    assert registered and registered[0].detail["tags"] == {"env": "evt"}
    wait_for(
        lambda: _events(client, "Node Status-change Notification", **{"node-id": node}),
        what="the online event",
    )
    agent.stop()
    wait_for(
        lambda: (
            [
                e.detail["ping-status"]
                for e in _events(client, "Node Status-change Notification", **{"node-id": node})
            ][-1:]
            == ["ConnectionLost"]
        ),
        what="the connection-lost event",
    )
    client.delete_node(node)
    assert _events(client, "Node Deregistration", **{"node-id": node})


def test_a_local_policy_refusal_is_an_event_naming_the_reason(events_fleet):
    agent = events_fleet.add_agent()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "fleetrun.agent",
            "config",
            "set",
            "extensions.blocklist",
            "fleetrun/runShellScript",
            "--state-dir",
            str(agent.state_dir),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    client = events_fleet.client
    command = client.send_command(script="echo no", node_ids=[agent.node_id])
    client.wait(command.id, timeout_s=60)
    refused = wait_for(
        lambda: _events(client, "Local Policy Refusal", **{"command-id": command.id}),
        what="the refusal event",
    )
    assert refused[0].detail["node-id"] == agent.node_id
    assert "runShellScript" in refused[0].detail["reason"]


def test_the_stream_delivers_matching_events_as_they_happen(events_fleet):
    client = events_fleet.client
    node = events_fleet.add_agent().node_id
    got = []
    start = client.list_events(limit=1)[0].seq

    def tail():
        with events_fleet.server.client() as streaming:
            for event in streaming.stream_events(
                after=start,
                pattern={"detail-type": [INVOCATION], "detail": {"status": ["Success"]}},
            ):
                got.append(event)
                if len(got) >= 2:
                    return

    reader = threading.Thread(target=tail, daemon=True)
    reader.start()
    for _ in range(2):
        command = client.send_command(script="true", node_ids=[node])
        client.wait(command.id, timeout_s=60)
    reader.join(30)
    assert len(got) == 2
    assert all(e.detail_type == INVOCATION and e.detail["status"] == "Success" for e in got)


def test_events_tail_on_the_command_line_prints_matching_events_as_they_happen(
    events_fleet, tmp_path
):
    pattern = tmp_path / "failed.json"
    pattern.write_text(json.dumps({"detail-type": [INVOCATION], "detail": {"status": ["Failed"]}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETRUN_")}
    env.update(FLEETRUN_SERVER=events_fleet.server.url, FLEETRUN_TOKEN=events_fleet.server.token)
    env["FLEETRUN_CONFIG"] = str(tmp_path / "none.toml")
    own = events_fleet.add_agent()
    tail = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fleetrun",
            "events",
            "tail",
            "--json",
            "--pattern-file",
            str(pattern),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines = []
    reader = threading.Thread(target=lambda: lines.append(tail.stdout.readline()), daemon=True)
    try:
        reader.start()
        node = own.node_id
        client = events_fleet.client
        # The stream starts at "now": keep failing commands coming until one is seen.
        wait_for(
            lambda: (
                client.wait(client.send_command(script="exit 1", node_ids=[node]).id, timeout_s=60)
                and lines
            ),
            timeout_s=60,
            interval_s=0.5,
            what="a line from events tail",
        )
    finally:
        tail.terminate()
        tail.wait(10)
        tail.stdout.close()
        tail.stderr.close()
    event = json.loads(lines[0])
    assert event["detail-type"] == INVOCATION and event["detail"]["status"] == "Failed"
    assert event["detail"]["node-id"] == node
