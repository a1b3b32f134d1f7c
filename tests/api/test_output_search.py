"""Searching stored output (`GET /v1/output/search`, `Client.search_output`,
`fleetrun output search`): the index is kept as output is stored, lines that arrive in
pieces are found whole and once, the scope and the caller's access bound what is found,
and bad patterns are refused with a sentence."""

from __future__ import annotations

import json

import pytest

from fleetrun.core import protocol
from fleetrun.core.errors import ValidationError
from fleetrun.server.store import outputlines
from tests.harness import wait_for
from tests.inprocess import App


def run(app: App, node, chunks: list[bytes], *, stream: str = "stdout") -> str:
    """Send a command to `node` and answer it as its agent, writing `chunks` to `stream`
    one frame each; the command id, once it has ended."""
    command = app.client.send_command(script="true", node_ids=[node.node_id])
    with app.connect(node) as session:
        iid = session.start(command.id)
        seq = 1
        for chunk in chunks:
            seq += 1
            session.send(
                protocol.Output(
                    invocation_id=iid,
                    seq=seq,
                    step=0,
                    stream=stream,
                    data=protocol.encode(chunk),
                )
            )
        session.finish(iid, seq + 1, 0, 0.0)
        app.client.wait(command.id, timeout_s=30)
    indexed(app)
    return command.id


def indexed(app: App) -> None:
    """Wait until the server has indexed all the output it has stored."""
    app.http.portal.call(app.http.app.state.fleet.indexer.drain)


def test_a_word_is_found_across_nodes_and_commands_newest_first_with_context(app):
    a, b = app.enrol(2)
    first = run(app, a, [b"boot ok\ndisk ", b"FULL on /var\n", b"done\n"])
    second = run(app, b, [b"alpha\nbeta\n", b"the disk full again\ngamma\n"])
    page = app.client.search_output("disk full", context=1)
    found = [(h.command_id, h.node_id, h.line_no, h.line) for h in page.items]
    assert found == [  # newest first; the line split over two frames is found whole, once
        (second, b.node_id, 3, "the disk full again"),
        (first, a.node_id, 2, "disk FULL on /var"),
    ]
    assert app.client.search_output("full disk").items == []  # a phrase: words in order
    newest = page.items[0]
    assert newest.command_id == second and newest.line_no == 3
    assert newest.before == ["beta"] and newest.after == ["gamma"]
    assert newest.node_name == b.name and newest.stream == "stdout"


def test_a_regex_and_the_scope_narrow_what_is_found(app):
    a, b = app.enrol(2)
    run(app, a, [b"code=17\ncode=x\n"])
    run(app, b, [b"code=42\n"], stream="stderr")
    lines = [h.line for h in app.client.search_output(r"code=\d+", regex=True).items]
    assert lines == ["code=42", "code=17"]
    only_a = app.client.search_output(r"code=\d+", regex=True, node_ids=[a.node_id])
    assert [h.line for h in only_a.items] == ["code=17"]
    errors = app.client.search_output("code", stream="stderr")
    assert [h.line for h in errors.items] == ["code=42"]
    assert app.client.search_output("code", since="2099-01-01T00:00:00Z").items == []
    for regex in (False, True):  # a time range bounds words and expressions alike
        assert len(app.client.search_output("code", regex=regex, since="1h").items) == 3
        assert (
            app.client.search_output("code", regex=regex, until="2000-01-01T00:00:00Z").items == []
        )


def test_a_regex_that_ignores_case_finds_every_case_in_the_database(app):
    """The database narrows by the expression's literal parts in lower case; the line in
    any case is found, and so is one whose letters match beyond ASCII (a dotless i for i)."""
    (node,) = app.enrol(1)
    lines = ["Disk FULL on /var", "disk full on /tmp", "D\u0131SK FULL on /home", "disk ok"]
    run(app, node, ["\n".join(lines).encode() + b"\n"])
    found = app.client.search_output(r"(?i)disk full on /\w+", regex=True).items
    assert [h.line for h in found] == lines[2::-1]


def test_paging_goes_on_to_older_lines_each_once(app):
    (node,) = app.enrol(1)
    run(app, node, [b"".join(b"match %d\n" % i for i in range(25))])
    seen, cursor = [], None
    while True:
        page = app.client.search_output("match", limit=10, cursor=cursor)
        seen += [h.line_no for h in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == list(range(25, 0, -1))


@pytest.mark.parametrize(
    "regex", [r"hit \d+", r"(?i)hit \d+"], ids=["narrowed-by-the-database", "any-case"]
)
def test_a_regex_pages_through_batches_and_scan_limits_each_line_once(app, monkeypatch, regex):
    """Small batches, windows and scan limits per request: a regex search goes on batch
    after batch, answers with a cursor when it has looked at enough, and every matching
    line comes back once, newest first, through the cursors; whether the database looks
    for the expression's literal part first ("hit ") or cannot (any case)."""
    monkeypatch.setattr(outputlines, "BATCH", 5)
    monkeypatch.setattr(outputlines, "LEAST", 1)  # a narrowed batch: what the page lacks
    monkeypatch.setattr(outputlines, "WINDOW", 10)
    monkeypatch.setattr(outputlines, "SCAN_LINES", 8)
    monkeypatch.setattr(outputlines, "SCAN_LINES_FILTERED", 8)
    (node,) = app.enrol(1)
    text = b"".join((b"hit %d\n" if i % 3 == 0 else b"miss %d\n") % i for i in range(30))
    run(app, node, [text])
    seen, cursor, pages = [], None, 0
    while True:
        page = app.client.search_output(regex, regex=True, limit=4, cursor=cursor)
        seen += [h.line for h in page.items]
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [f"hit {i}" for i in range(27, -1, -3)]
    assert pages > 3  # the scan limit, not only the page size, cut requests short


@pytest.mark.parametrize(
    ("pattern", "regex", "says"),
    [
        ("   ", False, "is empty"),
        ("--- !!", False, "has no word"),
        ("code=(", True, "is not valid"),
    ],
)
def test_a_bad_pattern_is_refused_with_a_sentence(app, pattern, regex, says):
    with pytest.raises(ValidationError, match=says):
        app.client.search_output(pattern, regex=regex)


def test_the_cli_prints_node_command_and_line_and_json_on_request(app):
    (node,) = app.enrol(1)
    command = run(app, node, [b"one\nERROR two\nthree\n"])
    text = app.cli("output", "search", "ERROR", "-C", "1")
    assert text.exit_code == 0, text.stderr
    assert node.name in text.stdout and "ERROR two" in text.stdout and "one" in text.stdout
    data = json.loads(app.cli("output", "search", "error", "--json").stdout)
    assert data[0]["command_id"] == command and data[0]["line_no"] == 2
    bad = app.cli("output", "search", "x(", "--regex")
    assert bad.exit_code != 0 and "is not valid" in bad.stderr and "Traceback" not in bad.stderr
    both = app.cli("output", "search", "x", "--node", node.node_id, "--tag", "a=b")
    assert both.exit_code != 0 and "Choose the nodes one way" in both.stderr


def test_output_stored_but_not_yet_indexed_is_indexed_when_the_server_starts(app):
    """The index follows marks kept with each stream: what was stored but not indexed
    when a server stopped (a crash between the two) is indexed at the next start."""
    from fleetrun.server.engine.invocations import FrameApplier

    (node,) = app.enrol(1)
    run(app, node, [b"before the crash\n"])
    command = app.client.send_command(script="true", node_ids=[node.node_id])
    with app.connect(node) as session:
        iid = session.start(command.id)
        state = app.http.app.state.fleet
        # Stored up to its frame 1 (the server says so): InProgress alone could be the
        # ack's doing, with frame 1 still on its way, and frame 2 below would then be
        # out of order and dropped.
        while not (isinstance(got := session.next(), protocol.Received) and got.seq >= 1):
            pass
        frame = protocol.Output(
            invocation_id=iid, seq=2, step=0, stream="stdout", data=protocol.encode(b"unseen\n")
        )
        # Stored as the gateway stores it, but the indexer is never told.
        app.http.portal.call(
            state.db.write,
            lambda tx: FrameApplier(tx.session, node.node_id, state.output).numbered(frame),
        )
        indexed(app)
        assert app.client.search_output("unseen").items == []
    app.restart()
    indexed(app)
    assert [h.line for h in app.client.search_output("unseen").items] == ["unseen"]
    assert len(app.client.search_output("crash").items) == 1  # indexed once, not again


def test_a_word_is_found_across_20_nodes_and_two_commands_within_a_principals_tags(app):
    web = app.enrol(10, tags={"role": "web"}, prefix="web")
    db = app.enrol(10, tags={"role": "db"}, prefix="db")
    commands = [app.client.send_command(script="true", tags={"role": ["web", "db"]}) for _ in "ab"]
    for node in web + db:
        with app.connect(node) as session:
            for n in range(len(commands)):
                iid = session.start()  # the two commands' invokes, in either order
                data = protocol.encode(f"noise\nneedle {n} from {node.name}\n".encode())
                session.send(
                    protocol.Output(invocation_id=iid, seq=2, step=0, stream="stdout", data=data)
                )
                session.finish(iid, 3, 0, 0.0)
            for command in commands:
                wait_for(
                    lambda c=command, n=node: (
                        app.client.get_invocation(c.id, n.node_id).status == "Success"
                    ),
                    what="the invocation to end",
                )
    indexed(app)
    found = app.client.search_output("needle", limit=100).items
    assert len(found) == 40
    assert {(h.command_id, h.node_id) for h in found} == {
        (c.id, n.node_id) for c in commands for n in web + db
    }
    reader = principal_for_role(app, "web")
    mine = reader.search_output("needle", limit=100).items
    assert {h.node_id for h in mine} == {n.node_id for n in web} and len(mine) == 20


def principal_for_role(app: App, role: str):
    """A client whose principal may read invocations of nodes tagged role=ROLE only."""
    app.client.create_principal(f"{role}-reader")
    app.client.create_policy(
        f"{role}-invocations",
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": ["fleetrun:GetCommandInvocation"],
                    "Resource": "*",
                    "Condition": {"StringEquals": {"fleetrun:ResourceTag/role": role}},
                }
            ],
        },
    )
    app.client.attach(f"{role}-reader", policy=f"{role}-invocations")
    return app.client_for(app.client.create_token(f"{role}-reader").token)


def test_a_nul_in_output_is_indexed_as_a_replacement_and_indexing_goes_on(app):
    """A node may print any bytes (a file read whole, `find -print0`): a NUL, which
    PostgreSQL will not hold in text, is indexed as U+FFFD, and the lines around it and
    the output after it are found."""
    (node,) = app.enrol(1)
    run(app, node, [b"before\x00after\n", b"a\x00b\x00c\x00"])
    run(app, node, [b"next command\n"])
    found = app.client.search_output("after", context=1).items
    assert [h.line for h in found] == ["before\ufffdafter"]
    assert [h.after for h in found] == [["a\ufffdb\ufffdc\ufffd"]]
    assert len(app.client.search_output("next command").items) == 1
