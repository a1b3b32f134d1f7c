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
