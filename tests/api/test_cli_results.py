"""What `fleetrun` prints and how it exits for the results the server holds: `send
--wait` and its summary, identical outputs shown once, --only-failed, step markers,
--json of every read command, tables, long output and --full, cancel and filtered
listings, AccessDenied nodes. The real entry point in process against the real app;
the nodes are enrolled through the real route and spoken for over the real gateway, the
test answering each invoke with the output and exit code it chooses. (A real agent
running a real script, and the CLI as a process, are tests/e2e/test_cli.py.)"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator

import pytest

from fleetrun.core import protocol
from fleetrun.core.statuses import InvocationStatus, StatusDetail
from tests.inprocess import App, CliResult, Node, NodeSession


class Fleet:
    """Three nodes (env=test, role=web|web|db), each with a session open."""

    def __init__(self, app: App, nodes: list[Node], sessions: list[NodeSession]) -> None:
        self.app = app
        self.nodes = nodes
        self.sessions = sessions
        self.client = app.client

    def cli(self, *args: str, **kw: object) -> CliResult:
        return self.app.cli(*args, **kw)  # type: ignore[arg-type]


@pytest.fixture
def fleet(app: App) -> Iterator[Fleet]:
    web = app.enrol(2, tags={"env": "test", "role": "web"}, prefix="web")
    db = app.enrol(1, tags={"env": "test", "role": "db"}, prefix="db")
    nodes = web + db
    with contextlib.ExitStack() as stack:
        sessions = [stack.enter_context(app.connect(node)) for node in nodes]
        yield Fleet(app, nodes, sessions)


@contextlib.contextmanager
def running(fleet: Fleet, *args: str, **kw: object) -> Iterator[list[CliResult]]:
    """`fleetrun ARGS` in a thread of its own while the block answers for the nodes; the
    result is in the list once the block ends."""
    done: list[CliResult] = []
    thread = threading.Thread(target=lambda: done.append(fleet.cli(*args, **kw)), daemon=True)
    thread.start()
    try:
        yield done
    finally:
        thread.join(60)
    assert not thread.is_alive(), "the command line did not finish"
    assert done, "the command line raised"


def test_send_wait_prints_each_nodes_result_and_exits_zero_on_success(fleet):
    web = fleet.nodes[:2]
    with running(
        fleet, "send", "--tag", "role=web", "--script", "echo hi from $NODE", "--wait"
    ) as result:
        for node, session in zip(web, fleet.sessions, strict=False):
            session.answer([f"hi from {node.node_id}\n".encode()])
    done = result[0]
    assert done.returncode == 0, done.stderr
    for node in web:
        assert f"hi from {node.node_id}" in done.stdout
        assert f"{node.name} ({node.node_id}) Success" in done.stdout
    assert "Success on 2 node(s)" in done.stdout


def test_send_wait_exits_non_zero_when_a_node_fails(fleet):
    db = fleet.nodes[2]
    with running(fleet, "send", "--all", "--script", "test $NODE != db", "--wait") as result:
        for session in fleet.sessions[:2]:
            session.answer()
        fleet.sessions[2].answer(exit_code=1)
    done = result[0]
    assert done.returncode == 1
    assert "Failed · exit 1" in done.stdout
    assert "Failed on 1 of 3 node(s): Success 2 · Failed 1" in done.stdout
    assert f"  Failed: {db.name} ({db.node_id})" in done.stdout


def test_send_wait_json(fleet):
    node = fleet.nodes[0].node_id
    with running(fleet, "send", "--node", node, "--script", "echo j", "--wait", "--json") as result:
        fleet.sessions[0].answer([b"j\n"])
    done = result[0]
    assert done.returncode == 0
    data = json.loads(done.stdout)
    assert data["command"]["status"] == "Success"
    assert data["invocations"][0]["stdout"] == "j\n"


def test_every_read_command_speaks_json(fleet):
    sent = json.loads(fleet.cli("send", "--all", "--script", "echo x", "--json").stdout)
    command_id = sent["id"]
    node_id = fleet.nodes[0].node_id
    for session in fleet.sessions:
        session.answer([b"x\n"], command_id=command_id)
    with running(fleet, "send", "--all", "--script", "true", "--wait"):
        for session in fleet.sessions:
            session.answer()
    fleet.client.wait(command_id, timeout_s=30)
    for args in (
        ["nodes", "list"],
        ["nodes", "show", node_id],
        ["commands", "list"],
        ["commands", "show", command_id],
        ["invocations", "list", "--command", command_id],
        ["invocations", "show", command_id, node_id],
        ["activations", "list"],
    ):
        done = fleet.cli(*args, "--json")
        assert done.returncode == 0, (args, done.stderr)
        json.loads(done.stdout)
    shown = json.loads(fleet.cli("invocations", "show", command_id, node_id, "--json").stdout)
    assert shown["stdout"] == "x\n"


def test_tables_and_blocks_read_well(fleet):
    nodes = fleet.cli("nodes", "list")
    assert nodes.returncode == 0
    header = nodes.stdout.splitlines()[0]
    assert header.split()[:3] == ["ID", "NAME", "STATUS"]
    assert all(n.node_id in nodes.stdout for n in fleet.nodes)
    shown = fleet.cli("nodes", "show", fleet.nodes[0].node_id)
    assert "Status" in shown.stdout and "Online" in shown.stdout and "env=test" in shown.stdout


def test_invocations_show_prints_the_end_or_with_full_all_of_the_output(fleet):
    node = fleet.nodes[0].node_id
    command = fleet.client.send_command(script="seq 1 20000", node_ids=[node])
    numbers = "".join(f"{i}\n" for i in range(1, 20001))
    fleet.sessions[0].answer([numbers.encode()], command_id=command.id)
    fleet.client.wait(command.id, timeout_s=30)
    short = fleet.cli("invocations", "show", command.id, node)
    assert short.returncode == 0
    assert numbers[-24_000:] in short.stdout and numbers not in short.stdout
    assert "add --full" in short.stderr
    full = fleet.cli("invocations", "show", command.id, node, "--full")
    assert full.returncode == 0
    assert numbers in full.stdout  # beyond the 24,000-character inline tail


def test_cancel_and_filtered_listings_from_the_command_line(fleet):
    node, session = fleet.nodes[2].node_id, fleet.sessions[2]
    sent = json.loads(fleet.cli("send", "--node", node, "--script", "sleep 120", "--json").stdout)
    iid = session.start(sent["id"])  # it runs
    cancelled = fleet.cli("commands", "cancel", sent["id"])
    assert cancelled.returncode == 0 and "Cancel requested" in cancelled.stdout
    while not isinstance(frame := session.next(), protocol.Cancel):
        pass
    assert frame.invocation_id == iid
    session.send(  # the agent ends the run it was told to cancel
        protocol.State(
            invocation_id=iid,
            seq=2,
            status=InvocationStatus.CANCELLED,
            detail=StatusDetail.CANCELLED,
            ended_at=time.time(),
        )
    )
    assert fleet.client.wait(sent["id"], timeout_s=60).status == "Cancelled"
    listed = json.loads(fleet.cli("commands", "list", "--status", "Cancelled", "--json").stdout)
    assert sent["id"] in [c["id"] for c in listed]  # a list is an array of its items
    mine = json.loads(
        fleet.cli("invocations", "list", "--node", node, "--since", "1h", "--json").stdout
    )
    assert all(i["node_id"] == node for i in mine) and mine
    bad = fleet.cli("commands", "list", "--since", "yesterday-ish")
    assert bad.returncode == 2 and "is not a time" in bad.stderr


def test_access_denied_on_a_node_fails_the_wait_and_is_listed_by_node(fleet):
    """The server counts AccessDenied as not attempted (the command is a Success on
    the nodes it could touch); the operator who waited is told it did not run
    everywhere: exit 1, and the denied node by name."""
    from tests.api.test_access import ANY_DOCUMENT, GROUPS_AND_COMMANDS, WEB_NODES_ONLY

    admin = fleet.client
    admin.create_principal("cli-web-operator")
    admin.create_policy(
        "cli-web-operator",
        {"Version": "2012-10-17", "Statement": [WEB_NODES_ONLY, ANY_DOCUMENT, GROUPS_AND_COMMANDS]},
    )
    admin.attach("cli-web-operator", policy="cli-web-operator")
    token = admin.create_token("cli-web-operator").token
    with running(fleet, "send", "--all", "--script", "echo ran", "--wait", token=token) as result:
        for session in fleet.sessions[:2]:  # the db node is never sent it
            session.answer([b"ran\n"])
    done = result[0]
    db = fleet.nodes[2]
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Failed on 1 of 3 node(s): Success 2 · AccessDenied 1" in done.stdout
    assert f"  AccessDenied: {db.name} ({db.node_id})" in done.stdout
    command_id = done.stderr.split()[1]
    assert fleet.client.get_command(command_id).status == "Success"
    assert not [f for f in fleet.sessions[2].received if isinstance(f, protocol.Invoke)]


def test_identical_results_are_shown_once_for_all_the_nodes_that_share_them(fleet):
    with running(fleet, "send", "--all", "--script", "echo same everywhere", "--wait") as result:
        for session in fleet.sessions:
            session.answer([b"same everywhere\n"])
    done = result[0]
    assert done.returncode == 0, done.stderr
    names = ", ".join(n.name for n in fleet.nodes)
    header = next(line for line in done.stdout.splitlines() if line.startswith("── "))
    assert header.startswith("── 3 nodes: ") and header.endswith("Success · exit 0"), header
    assert all(n.name in header for n in fleet.nodes), (header, names)
    assert done.stdout.count("same everywhere\n") == 1


def test_only_failed_shows_the_output_of_the_nodes_that_did_not_succeed(fleet):
    db = fleet.nodes[2]
    with running(
        fleet, "send", "--all", "--script", "echo; test", "--wait", "--only-failed"
    ) as result:
        for node, session in zip(fleet.nodes, fleet.sessions, strict=True):
            session.answer([f"out of {node.node_id}\n".encode()], int(node is db))
    done = result[0]
    assert done.returncode == 1
    assert f"out of {db.node_id}" in done.stdout
    assert all(f"out of {n.node_id}" not in done.stdout for n in fleet.nodes[:2])
    assert "Failed on 1 of 3 node(s): Success 2 · Failed 1" in done.stdout


def test_a_multi_step_document_shows_each_steps_output_under_a_marker(fleet):
    fleet.client.create_document(
        "cli-two-steps",
        "mainSteps:\n"
        "  - {name: prepare, action: runShellScript, inputs: {runCommand: 'echo prepared'}}\n"
        "  - {name: apply, action: runShellScript, inputs: {runCommand: 'echo applied'}}\n",
    )
    node = fleet.nodes[0]
    with running(
        fleet, "send", "--node", node.name, "--document", "cli-two-steps", "--wait"
    ) as result:
        fleet.sessions[0].answer([b"prepared\n", b"applied\n"])
    done = result[0]
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    first = lines.index("▸ step 1/2 prepare (runShellScript) Success · exit 0")
    assert lines[first + 1 : first + 4] == [
        "prepared",
        "▸ step 2/2 apply (runShellScript) Success · exit 0",
        "applied",
    ]
