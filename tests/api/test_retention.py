"""Output retention in process, with the server's clock set by the test: output of
invocations that ended longer ago than `--retention-output` is deleted (its status and
exit code stay), reading it answers 410 with a sentence, newer output is kept, and two
sweeps at once expire each invocation once."""

from __future__ import annotations

import asyncio

import pytest

from fleetrun.core.errors import ExpiredError, ValidationError
from fleetrun.server.settings import Settings
from tests.harness import wait_for
from tests.inprocess import App

DAY = 86400.0


@pytest.fixture
def kept_30d(tmp_path):
    a = App(tmp_path, retention_output_s=30 * DAY).start()
    try:
        yield a
    finally:
        a.close()


def _run(app: App, node, output: bytes) -> str:
    command = app.client.send_command(script="true", node_ids=[node.node_id])
    with app.connect(node) as session:
        session.answer([output], command_id=command.id)
        app.client.wait(command.id, timeout_s=30)
    return command.id


def _expired(app: App, command_id: str, node_id: str) -> bool:
    try:
        app.client.get_output(command_id, node_id)
    except ExpiredError:
        return True
    return False


def test_output_past_retention_is_deleted_and_reads_say_so(kept_30d):
    app = kept_30d
    (node,) = app.enrol(1)
    old = _run(app, node, b"old output\n")
    state = app.http.app.state.fleet
    app.advance(29 * DAY)
    assert app.http.portal.call(state.retention.sweep) == 0  # not yet
    assert app.client.get_output(old, node.node_id) == b"old output\n"
    wait_for(lambda: app.client.search_output("old output").items, what="the line indexed")
    app.advance(2 * DAY)  # it ended 31 days ago
    wait_for(lambda: _expired(app, old, node.node_id), what="the old output to expire")
    with pytest.raises(ExpiredError, match=r"expired on .*kept 30 days.*status and exit code"):
        app.client.get_output(old, node.node_id)
    with pytest.raises(ExpiredError, match=r"expired on"):  # followed, as read whole
        list(app.client.iter_output(old, node.node_id, follow=True))
    invocation = app.client.get_invocation(old, node.node_id)
    assert invocation.status == "Success" and invocation.steps[0].stdout == ""
    assert not any((app.data_dir / "output" / old).rglob("*.stdout"))
    assert invocation.output_expired_at is not None
    assert app.client.search_output("old output").items == []  # gone from the index too
    shown = app.cli("invocations", "show", old, node.node_id)
    assert shown.exit_code == 0 and "Output: expired on" in shown.stdout
    result = app.cli("invocations", "show", old, node.node_id, "--full", "--json")
    assert result.exit_code != 0 and "expired on" in result.stderr


def test_two_sweeps_at_once_expire_each_invocation_once(tmp_path):
    app = App(tmp_path).start()  # no retention: nothing is swept on its own
    try:
        nodes = app.enrol(3)
        commands = [_run(app, n, b"x\n") for n in nodes]
        state = app.http.app.state.fleet
        state.settings = Settings(**{**state.settings.__dict__, "retention_output_s": DAY})
        app.clock.advance(2 * DAY)

        async def both():
            return await asyncio.gather(state.retention.sweep(), state.retention.sweep())

        counts = app.http.portal.call(both)
        assert sorted(counts) in ([0, 3], [1, 2]) and sum(counts) == 3
        assert all(_expired(app, c, n.node_id) for c, n in zip(commands, nodes, strict=True))
    finally:
        app.close()


def test_retention_settings_take_durations_and_refuse_nonsense():
    assert Settings.load({"retention_output_s": "30d"}, env={}).retention_output_s == 30 * DAY
    assert Settings.load({}, env={"FLEETRUN_RETENTION_OUTPUT_S": "12h"}).retention_output_s == (
        12 * 3600
    )
    with pytest.raises(ValidationError, match="retention_output_s"):
        Settings.load({"retention_output_s": "a month"}, env={})
