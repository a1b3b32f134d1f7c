"""`fleetrun run-command ...` as an operator runs it."""

from __future__ import annotations

import json

from tests.e2e.test_cli import cli


def test_create_waits_shows_the_instance_view_and_exits_non_zero_on_failure(shared_fleet, tmp_path):
    node = shared_fleet.agents[0].node_id
    script = tmp_path / "hello.sh"
    script.write_text('echo "hello $WHO $1"\n')
    done = cli(
        shared_fleet,
        "run-command",
        "create",
        "hello",
        "--node",
        node,
        "--script-file",
        str(script),
        "--param",
        "WHO=world",
        "--arg",
        "again",
        "--protected-param",
        "TOKEN=very-secret-1",
    )
    assert done.returncode == 0, done.stderr
    assert "Succeeded" in done.stdout and "hello world again" in done.stdout
    assert "very-secret-1" not in done.stdout + done.stderr
    shown = cli(shared_fleet, "run-command", "show", "hello", "--node", node, "--json")
    view = json.loads(shown.stdout)
    assert view["instanceView"]["executionState"] == "Succeeded"
    assert "protectedParameters" not in view
    listed = cli(shared_fleet, "run-command", "list", "--node", node)
    assert "hello" in listed.stdout and "Succeeded" in listed.stdout
    failed = cli(
        shared_fleet,
        "run-command",
        "update",
        "hello",
        "--node",
        node,
        "--script",
        "echo oops >&2; exit 4",
    )
    assert failed.returncode == 1
    assert "Failed" in failed.stdout and "exited with code 4" in failed.stdout
    assert "oops" in failed.stdout
    rerun = cli(shared_fleet, "run-command", "rerun", "hello", "--node", node, "--async")
    assert rerun.returncode == 0, rerun.stderr
    runs = cli(shared_fleet, "run-command", "runs", "hello", "--node", node, "--json")
    assert [r["reason"] for r in json.loads(runs.stdout)] == ["Rerun", "Update", "Create"]
    gone = cli(shared_fleet, "run-command", "delete", "hello", "--node", node)
    assert gone.returncode == 0 and "Deleted run command hello" in gone.stdout


def test_a_group_run_command_from_the_cli_waits_for_every_member(shared_fleet):
    shared_fleet.client.create_group("cli-web", tags={"role": "web"})
    done = cli(
        shared_fleet, "run-command", "create", "ping", "--group", "cli-web", "--script", "echo ok"
    )
    assert done.returncode == 0, done.stderr
    assert "2: 2 succeeded, 0 failed" in done.stdout
    shown = cli(shared_fleet, "run-command", "show", "ping", "--group", "cli-web", "--json")
    assert json.loads(shown.stdout)["summary"]["succeeded"] == 2
    failed = cli(
        shared_fleet, "run-command", "update", "ping", "--group", "cli-web", "--script", "exit 2"
    )
    assert failed.returncode == 1 and "0 succeeded, 2 failed" in failed.stdout
    again = cli(shared_fleet, "run-command", "rerun", "ping", "--group", "cli-web")
    assert again.returncode == 1 and "0 succeeded, 2 failed" in again.stdout
    listed = cli(shared_fleet, "run-command", "list", "--group", "cli-web", "--json")
    [entry] = json.loads(listed.stdout)
    assert entry["name"] == "ping" and entry["summary"]["failed"] == 2
    assert all(i["generation"] == 3 for i in entry["instances"])
    gone = cli(shared_fleet, "run-command", "delete", "ping", "--group", "cli-web")
    assert gone.returncode == 0 and "Deleted run command ping on group cli-web" in gone.stdout
    both = cli(shared_fleet, "run-command", "show", "ping", "--group", "g", "--node", "n")
    assert both.returncode != 0 and "either --node ID or --group NAME" in both.stderr
