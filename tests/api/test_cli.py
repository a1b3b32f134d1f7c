"""The `fleetrun` command line, run as an operator would run it: its real entry point in
process against the real app (argument handling, rendering, errors). What needs an
agent to run a script is in tests/e2e/test_cli.py."""

from __future__ import annotations

import json
import stat

import pytest

from tests.inprocess import run_cli


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
def test_bad_input_gets_one_sentence_and_a_non_zero_exit(app, args, message):
    app.enrol(3, tags={"env": "test"})
    before = len(app.client.list_commands(limit=1000))
    done = app.cli(*args)
    assert done.returncode == 2, done
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fleetrun: ") and message in lines[0]
    assert len(app.client.list_commands(limit=1000)) == before


def test_an_unreachable_server_and_a_wrong_token_are_explained(app):
    done = run_cli("nodes", "list", "--server", "http://127.0.0.1:9", env={"FLEETRUN_TOKEN": "x"})
    assert (
        done.returncode == 4
        and "Cannot reach the fleetrun server at http://127.0.0.1:9" in done.stderr
    )
    done = app.cli("nodes", "list", "--token", "frt_wrong")
    assert done.returncode == 3 and "API token is not valid" in done.stderr
    done = app.cli("nodes", "list", token=False)
    assert done.returncode == 3 and "needs an API token" in done.stderr
    done = app.cli("nodes", "list", "--server", "ftp://x")
    assert done.returncode == 2 and "must start with http://" in done.stderr
    done = app.cli("send", "--bogus")
    assert done.returncode == 2 and "No such option" in done.stderr


def test_login_saves_server_and_token_for_later_commands(app, tmp_path):
    app.enrol(3)
    config = tmp_path / "config.toml"
    env = {"FLEETRUN_CONFIG": str(config)}
    bad = app.cli("login", "--server", app.url, "--token", "frt_no", token=False, env=env)
    assert bad.returncode == 3 and not config.exists()
    good = app.cli("login", "--server", app.url, "--token", app.token, token=False, env=env)
    assert good.returncode == 0, good.stderr
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    done = app.cli("nodes", "list", "--json", token=False, env=env)  # server and token: saved
    assert done.returncode == 0 and len(json.loads(done.stdout)) == 3


def test_documents_from_the_command_line(app, tmp_path):
    """Create, list, show, update, set the default, delete. (Sending it with parameters
    and arguments, and its output, is tests/e2e/test_cli.py.)"""
    doc = tmp_path / "doc.yaml"
    doc.write_text(DOC)
    made = app.cli("documents", "create", "cli-doc", "--file", str(doc), "--json")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["version"] == "1"
    listed = app.cli("documents", "list")
    assert "cli-doc" in listed.stdout and "RunShellScript (built-in)" in listed.stdout
    shown = app.cli("documents", "show", "cli-doc:1")
    assert "words" in shown.stdout and "StringList" in shown.stdout and "mainSteps" in shown.stdout
    doc.write_text(doc.read_text().replace("Say something", "Say more"))
    updated = app.cli("documents", "update", "cli-doc", "--file", str(doc))
    assert "version 2 (default version 1)" in updated.stdout
    assert app.cli("documents", "set-default", "cli-doc", "2").returncode == 0
    assert app.cli("documents", "delete", "cli-doc").returncode == 0


DOC = (
    "description: Say something\n"
    "parameters: {words: {type: StringList}}\n"
    "mainSteps: [{name: say, action: runShellScript, "
    'inputs: {runCommand: \'echo "$words" "$@"\'}}]\n'
)


def test_groups_and_rate_control_from_the_command_line(app):
    """The group is made from a tag, the rate controls are resolved against its size and
    shown. (Waiting for a command to finish is tests/api/test_cli_results.py.)"""
    app.enrol(2, tags={"role": "web"}, prefix="web")
    app.enrol(1, tags={"role": "db"}, prefix="db")
    made = app.cli("groups", "create", "cli-webs", "--tag", "role=web")
    assert made.returncode == 0 and "2 node(s)" in made.stdout
    assert "cli-webs" in app.cli("groups", "list").stdout
    sent = app.cli(
        "send",
        "--group",
        "cli-webs",
        "--script",
        "true",
        "--max-concurrency",
        "1",
        "--max-errors",
        "50%",
        "--json",
    )
    assert sent.returncode == 0, sent.stderr
    command = json.loads(sent.stdout)
    assert (command["target_count"], command["concurrency_limit"], command["error_threshold"]) == (
        2,
        1,
        1,
    )
    shown = app.cli("commands", "show", command["id"])
    assert "max concurrency 1 (1), max errors 50% (1)" in shown.stdout
    assert app.cli("groups", "delete", "cli-webs").returncode == 0


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
            "Give one of --script, --script-file or --document",
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
def test_bad_input_for_commands_at_scale(app, args, message):
    app.enrol(3, tags={"env": "test"})
    before = len(app.client.list_commands(limit=1000))
    done = app.cli(*args)
    assert done.returncode == 2, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
    assert len(app.client.list_commands(limit=1000)) == before


def test_every_command_takes_json_output_and_query():
    """--json, --output/-o and --query on every command: all but `completion`, which
    prints a shell script."""
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
    wanted = {"--json", "--output", "-o", "--query"}
    without = [path for path, opts in found if not wanted <= opts]
    # `server` is a group now (it runs the server, or `server reset-admin-token`, which
    # takes --json): no leaf but `completion` is left without them.
    assert without == ["completion"], without


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (["--tag", "env=prodd"], "no node has env=prodd (the values of env are: dev, prod)"),
        (["--target", "tag:envv=prod"], "no node has a tag envv (the tag keys nodes have: env)"),
        (["--target", "tag-key:role"], "no node has a tag role (the tag keys nodes have: env)"),
        (
            ["--tag", "env=dev", "--target", "NodeIds=n-00000000000000000"],
            "No node n-00000000000000000 exists",
        ),
    ],
)
@pytest.mark.parametrize("wait", [[], ["--wait"]])
def test_a_target_that_matches_no_node_exits_non_zero_and_names_what_there_is(
    app, target, message, wait
):
    app.enrol(1, tags={"env": "dev"})
    app.enrol(2, tags={"env": "prod"})
    done = app.cli("send", *target, "--script", "true", *wait)
    assert done.exit_code == 2, done
    assert message in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == ""


def test_filters_that_each_match_but_not_together_are_explained(app):
    app.enrol(1, tags={"env": "dev", "role": "db"})
    app.enrol(1, tags={"env": "prod", "role": "web"})
    done = app.cli("send", "--tag", "env=dev", "--tag", "role=web", "--script", "true", "--json")
    assert done.exit_code == 2, done
    assert "no node matches all of them" in done.stderr
    assert json.loads(done.stdout)["status_detail"] == "NoInstancesInTag"


def test_the_root_help_lines_are_each_commands_own():
    """`fleetrun --help` lists commands from a table so as to import none of them; the
    table must say what each command itself says."""
    import click

    from fleetrun.cli.main import COMMANDS
    from fleetrun.cli.main import cli as root

    ctx = click.Context(root)
    for name, (_, _, line) in COMMANDS.items():
        command = root.get_command(ctx, name)
        assert command is not None and command.get_short_help_str(limit=1000) == line, name


def test_the_nodes_table_fits_100_columns_and_wide_shows_everything(app):
    long_tags = {"env": "production", "role": "webserver", "team": "payments-platform"}
    app.enrol(3, tags=long_tags, prefix="a-node-with-a-long-name-")
    narrow = app.cli("nodes", "list")
    assert narrow.exit_code == 0, narrow
    lines = narrow.stdout.splitlines()
    assert lines[0].split() == ["ID", "NAME", "STATUS", "TAGS", "LAST", "SEEN"]
    assert max(len(line) for line in lines) <= 100, lines
    assert "NeverConnected" in narrow.stdout and "ConnectionLost" not in narrow.stdout
    wide = app.cli("nodes", "list", "--wide")
    assert "PLATFORM" in wide.stdout and "team=payments-platform" in wide.stdout
    shown = app.cli("nodes", "show", app.nodes[0].node_id)
    assert "NeverConnected" in shown.stdout


def test_groups_update_replaces_the_members_and_the_new_ones_get_its_run_commands(app):
    web = app.enrol(2, tags={"role": "web"}, prefix="web")
    [db] = app.enrol(1, tags={"role": "db"}, prefix="db")
    assert app.cli("groups", "create", "cli-g", "--tag", "role=web").exit_code == 0
    app.client.put_group_run_command("cli-g", "ping", script="true", async_execution=True)
    done = app.cli("groups", "update", "cli-g", "--tag", "role=web", "--tag", "role=db")
    assert done.exit_code == 0, done
    assert "Updated group cli-g (tags: role=web|db): 3 node(s) now." in done.stdout
    instances = app.client.get_group_run_command("cli-g", "ping").instances
    assert db.node_id in {i.nodeId for i in instances}
    done = app.cli("groups", "update", "cli-g", "--node", web[0].node_id, "--json")
    assert json.loads(done.stdout)["members"] == [web[0].node_id]
    missing = app.cli("groups", "update", "nope", "--tag", "role=web")
    assert missing.exit_code == 2 and "No group 'nope' exists" in missing.stderr
    both = app.cli("groups", "update", "cli-g")
    assert both.exit_code == 2 and "Give either --tag" in both.stderr
