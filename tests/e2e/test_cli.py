"""The `fleetrun` command line as a process, where agents run what it sends: waiting for
results, output shown, cancel. (Argument handling, rendering and errors are in
tests/api/test_cli.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys


def cli(fleet, *args, env=None, token=True):
    base = {k: v for k, v in os.environ.items() if not k.startswith("FLEETRUN_")}
    base["FLEETRUN_CONFIG"] = os.path.join(str(fleet.root), "nowhere.toml")
    if fleet is not None:
        base["FLEETRUN_SERVER"] = fleet.server.url
        if token:
            base["FLEETRUN_TOKEN"] = fleet.server.token
    base.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "fleetrun", *args],
        capture_output=True,
        text=True,
        env=base,
        timeout=120,
    )


def test_send_wait_prints_each_nodes_result_and_exits_zero_on_success(shared_fleet):
    done = cli(
        shared_fleet,
        "send",
        "--tag",
        "role=web",
        "--script",
        "echo hi from $FLEETRUN_NODE_ID",
        "--wait",
    )
    assert done.returncode == 0, done.stderr
    for agent in shared_fleet.agents[:2]:
        assert f"hi from {agent.node_id}" in done.stdout
        assert f"{agent.name} ({agent.node_id}) Success" in done.stdout
    assert "Success on 2 node(s)" in done.stdout


def test_send_wait_exits_non_zero_when_a_node_fails(shared_fleet):
    done = cli(
        shared_fleet,
        "send",
        "--all",
        "--script",
        'test "$FLEETRUN_NODE_ID" != ' + shared_fleet.agents[2].node_id,
        "--wait",
    )
    assert done.returncode == 1
    assert "Failed · exit 1" in done.stdout
    assert "Failed on 1 of 3 node(s): Success 2 · Failed 1" in done.stdout
    assert f"  Failed: {shared_fleet.agents[2].name} ({shared_fleet.agents[2].node_id})" in (
        done.stdout
    )


def test_send_wait_json(shared_fleet):
    done = cli(
        shared_fleet,
        "send",
        "--node",
        shared_fleet.agents[0].node_id,
        "--script",
        "echo j",
        "--wait",
        "--json",
    )
    assert done.returncode == 0
    data = json.loads(done.stdout)
    assert data["command"]["status"] == "Success"
    assert data["invocations"][0]["stdout"] == "j\n"


def test_every_read_command_speaks_json(shared_fleet):
    sent = json.loads(cli(shared_fleet, "send", "--all", "--script", "echo x", "--json").stdout)
    command_id = sent["id"]
    node_id = shared_fleet.agents[0].node_id
    cli(shared_fleet, "send", "--all", "--script", "true", "--wait")  # let the first one finish too
    shared_fleet.client.wait(command_id, timeout_s=30)
    for args in (
        ["nodes", "list"],
        ["nodes", "show", node_id],
        ["commands", "list"],
        ["commands", "show", command_id],
        ["invocations", "list", "--command", command_id],
        ["invocations", "show", command_id, node_id],
        ["activations", "list"],
    ):
        done = cli(shared_fleet, *args, "--json")
        assert done.returncode == 0, (args, done.stderr)
        json.loads(done.stdout)
    shown = json.loads(
        cli(shared_fleet, "invocations", "show", command_id, node_id, "--json").stdout
    )
    assert shown["stdout"] == "x\n"


def test_tables_and_blocks_read_well(shared_fleet):
    nodes = cli(shared_fleet, "nodes", "list")
    assert nodes.returncode == 0
    header = nodes.stdout.splitlines()[0]
    assert header.split()[:3] == ["ID", "NAME", "STATUS"]
    assert all(a.node_id in nodes.stdout for a in shared_fleet.agents)
    shown = cli(shared_fleet, "nodes", "show", shared_fleet.agents[0].node_id)
    assert "Status" in shown.stdout and "Online" in shown.stdout and "env=test" in shown.stdout


def test_invocations_show_prints_the_end_or_with_full_all_of_the_output(shared_fleet):
    node = shared_fleet.agents[0].node_id
    command = shared_fleet.client.send_command(script="seq 1 20000", node_ids=[node])
    shared_fleet.client.wait(command.id, timeout_s=30)
    numbers = "".join(f"{i}\n" for i in range(1, 20001))
    short = cli(shared_fleet, "invocations", "show", command.id, node)
    assert short.returncode == 0
    assert numbers[-24_000:] in short.stdout and numbers not in short.stdout
    assert "add --full" in short.stderr
    full = cli(shared_fleet, "invocations", "show", command.id, node, "--full")
    assert full.returncode == 0
    assert numbers in full.stdout  # beyond the 24,000-character inline tail


def test_a_document_sent_from_the_command_line_gets_its_parameters_and_arguments(
    shared_fleet, tmp_path
):
    doc = tmp_path / "doc.yaml"
    doc.write_text(
        "description: Say something\n"
        "parameters: {words: {type: StringList}}\n"
        'mainSteps: [{name: say, action: runShellScript, inputs: {runCommand: \'echo "$words" "$@"\'}}]\n'
    )
    made = cli(shared_fleet, "documents", "create", "cli-doc", "--file", str(doc), "--json")
    assert made.returncode == 0, made.stderr
    sent = cli(
        shared_fleet,
        "send",
        "--node",
        shared_fleet.agents[0].node_id,
        "--document",
        "cli-doc:1",
        "--param",
        "words=a b",
        "--param",
        "words=c",
        "--arg",
        "x y",
        "--wait",
    )
    assert sent.returncode == 0, sent.stderr
    assert "a b\nc x y" in sent.stdout


def test_cancel_and_filtered_listings_from_the_command_line(shared_fleet):
    node = shared_fleet.agents[2].node_id
    sent = json.loads(
        cli(shared_fleet, "send", "--node", node, "--script", "sleep 120", "--json").stdout
    )
    shared_fleet.client.wait(sent["id"], timeout_s=5)
    cancelled = cli(shared_fleet, "commands", "cancel", sent["id"])
    assert cancelled.returncode == 0 and "Cancel requested" in cancelled.stdout
    assert shared_fleet.client.wait(sent["id"], timeout_s=60).status == "Cancelled"
    listed = json.loads(
        cli(shared_fleet, "commands", "list", "--status", "Cancelled", "--json").stdout
    )
    assert sent["id"] in [c["id"] for c in listed]  # a list is an array of its items
    mine = json.loads(
        cli(shared_fleet, "invocations", "list", "--node", node, "--since", "1h", "--json").stdout
    )
    assert all(i["node_id"] == node for i in mine) and mine
    bad = cli(shared_fleet, "commands", "list", "--since", "yesterday-ish")
    assert bad.returncode == 2 and "is not a time" in bad.stderr


def test_access_denied_on_a_node_fails_the_wait_and_is_listed_by_node(shared_fleet):
    """The server counts AccessDenied as not attempted (the command is a Success on
    the nodes it could touch); the operator who waited is told it did not run
    everywhere: exit 1, and the denied node by name."""
    from tests.api.test_access import ANY_DOCUMENT, GROUPS_AND_COMMANDS, WEB_NODES_ONLY

    admin = shared_fleet.client
    admin.create_principal("cli-web-operator")
    admin.create_policy(
        "cli-web-operator",
        {"Version": "2012-10-17", "Statement": [WEB_NODES_ONLY, ANY_DOCUMENT, GROUPS_AND_COMMANDS]},
    )
    admin.attach("cli-web-operator", policy="cli-web-operator")
    token = admin.create_token("cli-web-operator").token
    done = cli(
        shared_fleet,
        "send",
        "--all",
        "--script",
        "echo ran",
        "--wait",
        env={"FLEETRUN_TOKEN": token},
    )
    db = shared_fleet.agents[2]
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Failed on 1 of 3 node(s): Success 2 · AccessDenied 1" in done.stdout
    assert f"  AccessDenied: {db.name} ({db.node_id})" in done.stdout
    command_id = done.stderr.split()[1]
    assert shared_fleet.client.get_command(command_id).status == "Success"


def test_identical_results_are_shown_once_for_all_the_nodes_that_share_them(shared_fleet):
    done = cli(shared_fleet, "send", "--all", "--script", "echo same everywhere", "--wait")
    assert done.returncode == 0, done.stderr
    names = ", ".join(a.name for a in shared_fleet.agents)
    header = next(line for line in done.stdout.splitlines() if line.startswith("── "))
    assert header.startswith("── 3 nodes: ") and header.endswith("Success · exit 0"), header
    assert all(a.name in header for a in shared_fleet.agents), (header, names)
    assert done.stdout.count("same everywhere\n") == 1


def test_only_failed_shows_the_output_of_the_nodes_that_did_not_succeed(shared_fleet):
    db = shared_fleet.agents[2]
    done = cli(
        shared_fleet,
        "send",
        "--all",
        "--script",
        f'echo "out of $FLEETRUN_NODE_ID"; test "$FLEETRUN_NODE_ID" != {db.node_id}',
        "--wait",
        "--only-failed",
    )
    assert done.returncode == 1
    assert f"out of {db.node_id}" in done.stdout
    assert all(f"out of {a.node_id}" not in done.stdout for a in shared_fleet.agents[:2])
    assert "Failed on 1 of 3 node(s): Success 2 · Failed 1" in done.stdout


def test_a_multi_step_document_shows_each_steps_output_under_a_marker(shared_fleet):
    shared_fleet.client.create_document(
        "cli-two-steps",
        "mainSteps:\n"
        "  - {name: prepare, action: runShellScript, inputs: {runCommand: 'echo prepared'}}\n"
        "  - {name: apply, action: runShellScript, inputs: {runCommand: 'echo applied'}}\n",
    )
    node = shared_fleet.agents[0]
    done = cli(shared_fleet, "send", "--node", node.name, "--document", "cli-two-steps", "--wait")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    first = lines.index("▸ step 1/2 prepare (runShellScript) Success · exit 0")
    assert lines[first + 1 : first + 4] == [
        "prepared",
        "▸ step 2/2 apply (runShellScript) Success · exit 0",
        "applied",
    ]


def test_times_carry_their_zone_local_by_default_or_utc(shared_fleet):
    node = shared_fleet.agents[0].node_id
    local = cli(shared_fleet, "nodes", "show", node, env={"TZ": "Asia/Tokyo"})
    registered = next(x for x in local.stdout.splitlines() if x.startswith("Registered"))
    assert registered.endswith(" JST"), registered
    utc = cli(shared_fleet, "nodes", "show", node, "--utc", env={"TZ": "Asia/Tokyo"})
    registered = next(x for x in utc.stdout.splitlines() if x.startswith("Registered"))
    assert registered.endswith(" UTC"), registered
