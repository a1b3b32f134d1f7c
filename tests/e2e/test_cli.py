"""The `fleetrun` command line, run as an operator would run it."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest


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
    assert "Failed on 3 node(s)" in done.stdout


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


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["send", "--node", "n-00000000000000000", "--script", "x"],
            "No node n-00000000000000000 exists",
        ),
        (["send", "--tag", "envprod", "--script", "x"], "Tag 'envprod' is malformed"),
        (["send", "--all", "--script", "   "], "The script is empty"),
        (["send", "--script", "x"], "Say where to run"),
        (["send", "--target", "tag:env", "--script", "x"], "is malformed"),
        (["nodes", "show", "n-123"], "No node n-123 exists"),
        (["commands", "show", "nope"], "No command nope exists"),
        (["activations", "create", "--expires", "40d"], "out of range"),
        (["activations", "create", "--expires", "soon"], "Duration 'soon' is malformed"),
    ],
)
def test_bad_input_gets_one_sentence_and_a_non_zero_exit(shared_fleet, args, message):
    before = len(shared_fleet.client.list_commands(limit=1000))
    done = cli(shared_fleet, *args)
    assert done.returncode == 1, done
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fleetrun: ") and message in lines[0]
    assert len(shared_fleet.client.list_commands(limit=1000)) == before


def test_an_unreachable_server_and_a_wrong_token_are_explained(shared_fleet):
    done = cli(shared_fleet, "nodes", "list", "--server", "http://127.0.0.1:9")
    assert (
        done.returncode == 1
        and "Cannot reach the fleetrun server at http://127.0.0.1:9" in done.stderr
    )
    done = cli(shared_fleet, "nodes", "list", "--token", "frt_wrong")
    assert done.returncode == 1 and "API token is not valid" in done.stderr
    done = cli(shared_fleet, "nodes", "list", token=False)
    assert done.returncode == 1 and "needs an API token" in done.stderr
    done = cli(shared_fleet, "nodes", "list", "--server", "ftp://x")
    assert done.returncode == 1 and "must start with http://" in done.stderr
    done = cli(shared_fleet, "send", "--bogus")
    assert done.returncode == 2 and "No such option" in done.stderr


def test_login_saves_server_and_token_for_later_commands(shared_fleet, tmp_path):
    config = tmp_path / "config.toml"
    env = {"FLEETRUN_CONFIG": str(config)}
    bad = cli(
        shared_fleet, "login", "--server", shared_fleet.server.url, "--token", "frt_no", env=env
    )
    assert bad.returncode == 1 and not config.exists()
    good = cli(
        shared_fleet,
        "login",
        "--server",
        shared_fleet.server.url,
        "--token",
        shared_fleet.server.token,
        env=env,
    )
    assert good.returncode == 0, good.stderr
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    plain = {k: v for k, v in os.environ.items() if not k.startswith("FLEETRUN_")}
    plain["FLEETRUN_CONFIG"] = str(config)
    done = subprocess.run(
        [sys.executable, "-m", "fleetrun", "nodes", "list", "--json"],
        capture_output=True,
        text=True,
        env=plain,
        timeout=60,
    )
    assert done.returncode == 0 and len(json.loads(done.stdout)) == 3


def test_documents_from_the_command_line(shared_fleet, tmp_path):
    doc = tmp_path / "doc.yaml"
    doc.write_text(
        "description: Say something\n"
        "parameters: {words: {type: StringList}}\n"
        'mainSteps: [{name: say, action: runShellScript, inputs: {runCommand: \'echo "$words" "$@"\'}}]\n'
    )
    made = cli(shared_fleet, "documents", "create", "cli-doc", "--file", str(doc), "--json")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["version"] == "1"
    listed = cli(shared_fleet, "documents", "list")
    assert "cli-doc" in listed.stdout and "RunShellScript (built-in)" in listed.stdout
    shown = cli(shared_fleet, "documents", "show", "cli-doc:1")
    assert "words" in shown.stdout and "StringList" in shown.stdout and "mainSteps" in shown.stdout
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
    doc.write_text(doc.read_text().replace("Say something", "Say more"))
    updated = cli(shared_fleet, "documents", "update", "cli-doc", "--file", str(doc))
    assert "version 2 (default version 1)" in updated.stdout
    assert cli(shared_fleet, "documents", "set-default", "cli-doc", "2").returncode == 0
    assert cli(shared_fleet, "documents", "delete", "cli-doc").returncode == 0


def test_groups_and_rate_control_from_the_command_line(shared_fleet):
    made = cli(shared_fleet, "groups", "create", "cli-webs", "--tag", "role=web")
    assert made.returncode == 0 and "2 node(s)" in made.stdout
    assert "cli-webs" in cli(shared_fleet, "groups", "list").stdout
    sent = cli(
        shared_fleet,
        "send",
        "--group",
        "cli-webs",
        "--script",
        "true",
        "--max-concurrency",
        "1",
        "--max-errors",
        "50%",
        "--wait",
        "--json",
    )
    assert sent.returncode == 0
    command = json.loads(sent.stdout)["command"]
    assert (command["target_count"], command["concurrency_limit"], command["error_threshold"]) == (
        2,
        1,
        1,
    )
    shown = cli(shared_fleet, "commands", "show", command["id"])
    assert "max concurrency 1 (1), max errors 50% (1)" in shown.stdout
    assert cli(shared_fleet, "groups", "delete", "cli-webs").returncode == 0


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
    assert sent["id"] in [c["id"] for c in listed["items"]]
    mine = json.loads(
        cli(shared_fleet, "invocations", "list", "--node", node, "--since", "1h", "--json").stdout
    )
    assert all(i["node_id"] == node for i in mine["items"]) and mine["items"]
    bad = cli(shared_fleet, "commands", "list", "--since", "yesterday-ish")
    assert bad.returncode == 1 and "is not a time" in bad.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["send", "--all", "--script", "x", "--max-concurrency", "12x"],
            "Max concurrency '12x' is malformed",
        ),
        (["send", "--all", "--document", "Nope"], "No document 'Nope'"),
        (["send", "--all", "--document", "RunShellScript:7"], "only version 1"),
        (
            ["send", "--all", "--script", "x", "--document", "RunShellScript"],
            "either --script or --document",
        ),
        (
            ["send", "--all", "--document", "RunShellScript", "--param", "oops"],
            "Parameter 'oops' is malformed",
        ),
        (
            ["send", "--all", "--script", "x", "--delivery-timeout", "5"],
            "Delivery timeout 5s is out of range",
        ),
        (["groups", "create", "g"], "Give either --tag"),
    ],
)
def test_bad_input_for_commands_at_scale(shared_fleet, args, message):
    before = len(shared_fleet.client.list_commands(limit=1000))
    done = cli(shared_fleet, *args)
    assert done.returncode == 1, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
    assert len(shared_fleet.client.list_commands(limit=1000)) == before


def test_every_command_but_the_server_itself_takes_json():
    import click

    from fleetrun.cli.main import cli as root

    ctx = click.Context(root)

    def leaves(command, path):
        if isinstance(command, click.Group):
            for name in command.list_commands(ctx):  # the root imports its commands lazily
                yield from leaves(command.get_command(ctx, name), [*path, name])
        else:
            yield " ".join(path), {o for p in command.params for o in getattr(p, "opts", [])}

    found = list(leaves(root, []))
    assert len(found) > 60, found  # every leaf was reached
    without = [path for path, opts in found if "--json" not in opts]
    # `server` is a group now (it runs the server, or `server reset-admin-token`, which
    # takes --json): no leaf is left without it.
    assert without == [], without
