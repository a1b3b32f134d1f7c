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


def test_times_carry_their_zone_local_by_default_or_utc(shared_fleet):
    node = shared_fleet.agents[0].node_id
    local = cli(shared_fleet, "nodes", "show", node, env={"TZ": "Asia/Tokyo"})
    registered = next(x for x in local.stdout.splitlines() if x.startswith("Registered"))
    assert registered.endswith(" JST"), registered
    utc = cli(shared_fleet, "nodes", "show", node, "--utc", env={"TZ": "Asia/Tokyo"})
    registered = next(x for x in utc.stdout.splitlines() if x.startswith("Registered"))
    assert registered.endswith(" UTC"), registered
