"""The command page's output in process: a node's output followed live, line by line as
it is printed (server-sent events built on the API's output stream, resumable), and the
search within a command's output, both decided per node as the API decides them."""

from __future__ import annotations

import queue
import threading

from tests.api.test_console_pages import WEB_ONLY, fleet, token_for
from tests.api.test_console_session import sign_in
from tests.api.test_output_search import indexed, run
from tests.api.test_output_stream import Running


def events_in_thread(app, url: str, headers: dict[str, str] | None = None) -> queue.Queue:
    """The console stream's events (blocks of text) as they arrive; None once it ends."""
    got: queue.Queue = queue.Queue()

    def read() -> None:
        try:
            with app.http.stream("GET", url, headers=headers or {}) as answer:
                assert answer.headers["content-type"].startswith("text/event-stream")
                buffer = ""
                for text in answer.iter_text():
                    buffer += text
                    while "\n\n" in buffer:
                        block, buffer = buffer.split("\n\n", 1)
                        if not block.startswith(":"):
                            got.put(block)
        except Exception as exc:  # handed to the test
            got.put(exc)
        got.put(None)

    threading.Thread(target=read, daemon=True).start()
    return got


def take(got: queue.Queue) -> str:
    item = got.get(timeout=10)
    assert isinstance(item, str), item
    return item


def test_a_nodes_output_arrives_line_by_line_while_it_runs_then_the_end(app):
    (node,) = app.enrol(1)
    sign_in(app, app.token)
    command = app.client.send_command(script="true", node_ids=[node.node_id])
    with app.connect(node) as session:
        inv = Running(session, session.start(command.id))
        fragment = app.http.get(f"/ui/commands/{command.id}/nodes/{node.node_id}")
        live = f"/ui/commands/{command.id}/nodes/{node.node_id}/live"
        assert f'sse-connect="{live}"' in fragment.text  # running: the panel follows it
        got = events_in_thread(app, live)
        inv.write(b"line 0\nline <1")
        assert take(got) == "id: 7\nevent: output\ndata: line 0&#10;"  # whole lines only
        inv.write(b"> done\n")
        assert take(got) == "id: 21\nevent: output\ndata: line &lt;1&gt; done&#10;"
        errors = events_in_thread(app, live + "?stream=stderr")
        inv.write(b"oops\n", stream="stderr")
        assert take(errors) == "id: 5\nevent: output\ndata: oops&#10;"  # stderr on its own
        inv.write(b"no newline")
        inv.finish()
        assert take(got) == "id: 31\nevent: output\ndata: no newline&#10;"
        assert take(got) == "id: 31\nevent: end\ndata: Success"
        assert got.get(timeout=10) is None
        assert take(errors) == "id: 5\nevent: end\ndata: Success"
    ended = app.http.get(f"/ui/commands/{command.id}/nodes/{node.node_id}")
    assert "sse-connect" not in ended.text and "line &lt;1&gt; done" in ended.text


def test_a_reconnecting_browser_resumes_after_the_last_whole_line(app):
    (node,) = app.enrol(1)
    sign_in(app, app.token)
    command = app.client.send_command(script="true", node_ids=[node.node_id])
    with app.connect(node) as session:
        inv = Running(session, session.start(command.id))
        inv.write(b"one\ntwo\nthree\n")
        inv.finish()
    app.client.wait(command.id, timeout_s=30)
    live = f"/ui/commands/{command.id}/nodes/{node.node_id}/live"
    body = app.http.get(live, headers={"last-event-id": "4"}).text
    assert "data: two&#10;three&#10;\n" in body and "one" not in body
    bad = app.http.get(live, headers={"last-event-id": "x"})
    assert bad.status_code == 400 and "is not a byte offset" in bad.text


def test_only_whoever_may_read_the_invocation_follows_or_searches_it(app):
    web, db = fleet(app)
    targets = [web[0].node_id, db[0].node_id]
    command = app.client.send_command(script="true", node_ids=targets)
    for node in (web[0], db[0]):
        with app.connect(node) as session:
            inv = Running(session, session.start(command.id))
            inv.write(f"secret word on {node.name}\n".encode())
            inv.finish()
    app.client.wait(command.id, timeout_s=30)
    indexed(app)
    sign_in(app, token_for(app, "webops", WEB_ONLY))
    refused = app.http.get(f"/ui/commands/{command.id}/nodes/{db[0].node_id}/live")
    assert refused.status_code == 403
    allowed = app.http.get(f"/ui/commands/{command.id}/nodes/{web[0].node_id}/live")
    assert f"secret word on {web[0].name}" in allowed.text
    found = app.http.get(
        f"/ui/commands/{command.id}/search", params={"pattern": "secret word"},
        headers={"hx-request": "true"},
    )  # fmt: skip
    assert found.status_code == 200
    assert f'data-node="{web[0].node_id}"' in found.text
    assert db[0].node_id not in found.text and db[0].name not in found.text


def test_search_shows_node_stream_line_number_and_line_and_refuses_a_bad_pattern(app):
    (node,) = app.enrol(1, prefix="box")
    sign_in(app, app.token)
    command_id = run(app, node, [b"starting\ndisk ", b"FULL on /var\n"], stream="stderr")
    other = run(app, node, [b"disk full elsewhere\n"])
    page = app.http.get(f"/ui/commands/{command_id}")
    assert f'hx-get="/ui/commands/{command_id}/search"' in page.text
    found = app.http.get(
        f"/ui/commands/{command_id}/search", params={"pattern": "disk full"},
        headers={"hx-request": "true"},
    )  # fmt: skip
    cells = found.text.split('<tr data-node="')[1:]
    assert len(cells) == 1  # only this command's line, not the other command's
    row = cells[0]
    assert node.node_id in row and ">stderr<" in row and ">2<" in row
    assert "<code>disk FULL on /var</code>" in row
    assert other not in found.text
    none = app.http.get(f"/ui/commands/{command_id}/search", params={"pattern": "absent"})
    assert none.status_code == 200 and "No line of this command" in none.text
    bad = app.http.get(
        f"/ui/commands/{command_id}/search", params={"pattern": "(", "regex": "true"},
        headers={"hx-request": "true"},
    )  # fmt: skip
    assert bad.status_code == 400 and 'class="error"' in bad.text


def test_the_command_stream_ends_with_the_reason_once_the_token_is_revoked(app):
    (node,) = app.enrol(1)
    admin = app.client
    admin.create_principal("viewer")
    admin.create_policy("viewer", WEB_ONLY)
    admin.attach("viewer", policy="viewer")
    made = admin.create_token("viewer")
    command = admin.send_command(script="true", node_ids=[node.node_id])  # never connects
    sign_in(app, made.token)
    got = events_in_thread(app, f"/ui/commands/{command.id}/stream")
    assert take(got).startswith("event: summary\n")
    assert take(got).startswith("event: invocations\n")
    admin.revoke_token(made.id)
    refused = take(got)
    assert refused.startswith("event: refused\ndata: The API token is no longer valid"), refused
    assert got.get(timeout=10) is None
