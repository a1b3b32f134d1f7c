"""`send --wait` and `commands wait` always end: offline nodes are reported unreachable
after --unreachable-after, and --wait-timeout bounds the whole wait; neither cancels
anything. The CLI runs through its real entry point against the real app in process;
its nodes are enrolled but have no agent, so they stay offline (Delayed). A real agent
next to an offline node, the progress display on a terminal and Ctrl-C are in
tests/e2e/test_cli_wait.py."""

from __future__ import annotations

import json
import time

from fleetrun.cli.exits import Exit
from tests.harness import wait_for


def test_offline_nodes_are_reported_unreachable_and_keep_their_invocations(app):
    nodes = app.enrol(2, prefix="off")
    started = time.monotonic()
    done = app.cli("send", "--all", "--script", "true", "--wait", "--unreachable-after", "1s")
    assert time.monotonic() - started < 20  # not the hour of the delivery timeout
    assert done.exit_code == Exit.NODES_UNREACHABLE, done
    assert "Unreachable on 2 of 2 node(s): Delayed 2" in done.stdout
    unreachable_line = next(x for x in done.stdout.splitlines() if "Unreachable (offline" in x)
    assert all(f"{n.name} ({n.node_id})" in unreachable_line for n in nodes)
    command = app.client.list_commands(limit=1)[0]
    assert command.status == "InProgress"  # nothing was cancelled
    assert command.counts == {"Delayed": 2}
    assert f"fleetrun commands wait {command.id}" in done.stderr


def test_wait_timeout_ends_the_wait_and_says_so_in_the_exit_code(app):
    app.enrol(1)
    done = app.cli(
        "send",
        "--all",
        "--script",
        "true",
        "--wait",
        "--wait-timeout",
        "1s",
        "--unreachable-after",
        "1h",
        "--json",
    )
    assert done.exit_code == Exit.WAIT_TIMEOUT, done
    data = json.loads(done.stdout)
    assert data["wait"]["ended"] == "timeout" and data["wait"]["exit_code"] == 5
    assert data["wait"]["not_finished"] == [app.nodes[0].node_id]
    # as last seen by the wait: not finished (Pending until the dispatcher marks the
    # offline node Delayed, which a loaded machine may not do within the second)
    assert data["command"]["status"] in ("Pending", "InProgress")
    wait_for(  # and nothing was cancelled: the node's invocation waits for it
        lambda: app.client.get_command(data["command"]["id"]).counts == {"Delayed": 1},
        what="the offline node's invocation to be Delayed",
    )
    assert app.client.get_command(data["command"]["id"]).status == "InProgress"


def test_queued_nodes_behind_unreachable_ones_do_not_hold_the_wait(app):
    """With max-concurrency 1 the second node waits Pending for the slot the offline
    first one holds: nothing can move, so the wait ends."""
    app.enrol(2)
    done = app.cli(
        "send",
        "--all",
        "--script",
        "true",
        "--max-concurrency",
        "1",
        "--wait",
        "--unreachable-after",
        "1s",
        "--json",
    )
    assert done.exit_code == Exit.NODES_UNREACHABLE, done
    wait = json.loads(done.stdout)["wait"]
    assert (len(wait["unreachable"]), len(wait["not_finished"])) == (1, 1)


def test_wait_limits_are_durations_and_go_with_wait(app):
    app.enrol(1)
    done = app.cli("send", "--all", "--script", "true", "--unreachable-after", "5s")
    assert done.exit_code != 0 and "go with --wait" in done.stderr
    done = app.cli("send", "--all", "--script", "true", "--wait", "--wait-timeout", "soon")
    assert done.exit_code != 0 and "Wait timeout 'soon' is malformed" in done.stderr
    assert app.client.list_commands(limit=10) == []


def test_send_wait_prints_the_command_id_first_on_stderr(app):
    app.enrol(1)
    done = app.cli("send", "--all", "--script", "true", "--wait", "--unreachable-after", "0s")
    command = app.client.list_commands(limit=1)[0]
    first = done.stderr.splitlines()[0]
    assert first.startswith(f"Command {command.id} sent to 1 node(s); waiting"), done.stderr
    assert command.id not in done.stdout.splitlines()[0]  # stdout: the results only


def test_commands_wait_attaches_to_a_command_already_sent(app):
    (node,) = app.enrol(1)
    sent = app.cli("send", "--all", "--script", "true")
    command_id = sent.stdout.strip()
    done = app.cli("commands", "wait", command_id, "--unreachable-after", "1s")
    assert done.exit_code == Exit.NODES_UNREACHABLE, done
    assert f"Unreachable (offline, Delayed over 1s): {node.name} ({node.node_id})" in done.stdout
    app.client.cancel_command(command_id)
    done = app.cli("commands", "wait", command_id, "--json")
    assert done.exit_code == Exit.FAILED, done  # cancelled is not a success
    data = json.loads(done.stdout)
    assert data["wait"]["ended"] == "finished" and data["wait"]["failed"] == [node.node_id]
    missing = app.cli("commands", "wait", "c-nope")
    assert missing.exit_code != 0 and "No command c-nope exists" in missing.stderr


def test_an_undeliverable_node_is_a_failure_named_in_the_summary(app):
    """The node deleted while its invocation waited ends Undeliverable, which the
    server does not count as an error; the wait does, and a failure outranks the other
    node being unreachable."""
    kept, deleted = app.enrol(2)
    command_id = app.cli("send", "--all", "--script", "true").stdout.strip()
    app.client.delete_node(deleted.node_id)
    done = app.cli("commands", "wait", command_id, "--unreachable-after", "1s")
    assert done.exit_code == Exit.FAILED, done
    assert "Failed on 1, unreachable on 1 of 2 node(s): Undeliverable 1 · Delayed 1" in (
        done.stdout
    )
    assert f"  Undeliverable: {deleted.name} ({deleted.node_id})" in done.stdout
    assert f"{kept.name} ({kept.node_id})" in done.stdout.splitlines()[-1]
