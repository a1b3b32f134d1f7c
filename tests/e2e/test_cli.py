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
