"""`fleetrun run-command ...` argument handling and errors, in process. (Creating and
running them on agents is tests/e2e/test_run_command_cli.py.)"""

from __future__ import annotations


def test_bad_input_is_one_sentence_and_a_non_zero_exit(app):
    [node] = [n.node_id for n in app.enrol(1)]
    done = app.cli("run-command", "create", "x" * 37, "--node", node, "--script", "true")
    assert done.returncode != 0
    assert "use 1 to 36 letters" in done.stderr and "Traceback" not in done.stderr
    missing = app.cli("run-command", "update", "nope", "--node", node, "--script", "x")
    assert missing.returncode != 0 and "has no run command 'nope'" in missing.stderr
    secret = app.cli("run-command", "create", "s", "--node", node, "--protected-param", "oops")
    assert secret.returncode != 0 and "NAME=VALUE" in secret.stderr


def test_an_identical_create_says_unchanged_and_runs_nothing(app):
    [node] = [n.node_id for n in app.enrol(1)]
    args = ["run-command", "create", "hello", "--node", node, "--script", "echo $G"]
    first = app.cli(*args, "--param", "G=hi", "--async")
    assert first.returncode == 0, first.stderr
    generation = app.client.get_run_command(node, "hello").generation
    again = app.cli(*args, "--param", "G=hi", "--async")
    assert again.returncode == 0, again.stderr
    assert f"Run command hello on {node} is unchanged: nothing was run" in again.stdout
    assert app.client.get_run_command(node, "hello").generation == generation
    changed = app.cli(*args, "--param", "G=hello", "--async")
    assert "unchanged" not in changed.stdout
    assert app.client.get_run_command(node, "hello").generation == generation + 1


def test_update_keeps_the_parameters_unless_told_otherwise(app, tmp_path):
    [node] = [n.node_id for n in app.enrol(1)]
    create = ["run-command", "create", "job", "--node", node, "--script", "echo $G $1"]
    assert app.cli(*create, "--param", "G=hi", "--arg", "one", "--async").returncode == 0
    script = tmp_path / "job.sh"
    script.write_text("echo changed $G $1\n")
    update = ["run-command", "update", "job", "--node", node, "--async"]
    done = app.cli(*update, "--script-file", str(script))
    assert done.returncode == 0, done.stderr
    rc = app.client.get_run_command(node, "job")
    assert rc.source.script == "echo changed $G $1\n"
    assert [(p.name, p.value) for p in rc.parameters] == [("G", "hi"), ("", "one")]
    cleared = app.cli(*update, "--script-file", str(script), "--clear-params")
    assert cleared.returncode == 0, cleared.stderr
    assert app.client.get_run_command(node, "job").parameters == []
