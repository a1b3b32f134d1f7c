"""Output forwarding to real log systems: the real app in process (nodes spoken for over
its real gateway), forwarding to a real rsyslog over TCP and over TLS, and to an OTLP/HTTP
receiver that decodes with opentelemetry-proto. Every line arrives once, labelled,
across a restart of the receiver; while it is down the forwarder lags and says why."""

from __future__ import annotations

import itertools

import pytest

from fleetrun.server.tls import self_signed
from tests.e2e.logsinks import OtlpReceiver, Rsyslog
from tests.harness import wait_for
from tests.inprocess import App


def _run(app: App, node, output: bytes) -> str:
    command = app.client.send_command(script="true", node_ids=[node.node_id])
    with app.connect(node) as session:
        session.answer([output], command_id=command.id)
        app.client.wait(command.id, timeout_s=30)
    return command.id


def _numbered(start: int, count: int) -> bytes:
    return b"".join(f"line {n}\n".encode() for n in range(start, start + count))


@pytest.fixture
def rsyslog(tmp_path):
    receiver = Rsyslog(tmp_path / "rsyslog").start()
    try:
        yield receiver
    finally:
        receiver.stop()


@pytest.fixture
def forwarding_app(tmp_path, request):
    def make(**settings):
        app = App(tmp_path / "app", **settings).start()
        request.addfinalizer(app.close)
        return app

    return make


def test_syslog_over_tcp_gets_every_line_once_across_a_restart(rsyslog, forwarding_app):
    app = forwarding_app(forward_syslog=rsyslog.url)
    (node,) = app.enrol(1, tags={"env": "prod"})
    first = _run(app, node, _numbered(1, 50))
    wait_for(lambda: len(rsyslog.lines()) >= 50, what="50 lines in rsyslog")
    host, msgid, sd, message = rsyslog.lines()[0]
    assert (host, msgid, message) == (node.name, "stdout", "line 1")
    assert f'node-id="{node.node_id}"' in sd and f'command-id="{first}"' in sd
    assert ('tags="env=prod"' in sd and 'document="AWS-RunShellScript"' in sd) or "document=" in sd

    rsyslog.stop()
    _run(app, node, _numbered(51, 50))  # the command is not held up by the log system
    (view,) = wait_for(
        lambda: [f for f in app.client.list_forwarders() if f.last_error and f.lag_chunks],
        what=f"the forwarder to report the receiver down {app.client.list_forwarders()}",
    )
    assert view.name == "syslog" and "syslog 127.0.0.1" in view.last_error

    rsyslog.start()
    wait_for(lambda: len(rsyslog.lines()) >= 100, timeout_s=60, what="100 lines in rsyslog")
    messages = [m for _, _, _, m in rsyslog.lines()]
    assert messages == [f"line {n}" for n in range(1, 101)]
    (view,) = wait_for(lambda: [f for f in app.client.list_forwarders() if f.lag_chunks == 0])
    assert view.sent_lines == 100
    shown = app.cli("outputs", "forwarders")
    assert shown.exit_code == 0 and "syslog" in shown.stdout and "0 chunks" in shown.stdout


def test_syslog_over_tls(tmp_path, forwarding_app):
    files = self_signed(tmp_path / "tls", [])
    assert files.ca is not None
    receiver = Rsyslog(tmp_path / "rsyslog", tls=(files.ca, files.cert, files.key)).start()
    try:
        app = forwarding_app(forward_syslog=receiver.url, forward_syslog_ca_file=str(files.ca))
        (node,) = app.enrol(1)
        _run(app, node, b"secret-free line\nand a second\n")
        wait_for(lambda: len(receiver.lines()) >= 2, what="2 lines over TLS")
        assert [m for *_, m in receiver.lines()] == ["secret-free line", "and a second"]
    finally:
        receiver.stop()


def test_otlp_gets_every_line_once_labelled_across_a_restart(forwarding_app):
    receiver = OtlpReceiver().start()
    try:
        app = forwarding_app(forward_otlp=receiver.url)
        nodes = app.enrol(2, tags={"team": "blue"})
        commands = [_run(app, n, _numbered(1, 20)) for n in nodes]
        wait_for(lambda: len(receiver.records) >= 40, what="40 records")
        resource, attributes, body = receiver.records[0]
        assert resource["service.name"] == "fleetrun" and resource["fleetrun.tag.team"] == "blue"
        assert resource["host.id"] == nodes[0].node_id and body == "line 1"
        assert attributes["fleetrun.command_id"] == commands[0]
        assert attributes["log.iostream"] == "stdout" and attributes["fleetrun.step"] == 0

        receiver.stop()
        _run(app, nodes[0], _numbered(21, 20))
        wait_for(
            lambda: [f for f in app.client.list_forwarders() if f.last_error and f.lag_chunks],
            what="the forwarder to report the receiver down",
        )
        receiver.start()
        wait_for(lambda: len(receiver.records) >= 60, timeout_s=60, what="60 records")
    finally:
        receiver.stop()
    by_node = {
        node_id: [body for _, _, body in group]
        for node_id, group in itertools.groupby(
            sorted(receiver.records, key=lambda r: r[0]["host.id"]), key=lambda r: r[0]["host.id"]
        )
    }
    assert by_node[nodes[0].node_id] == [f"line {n}" for n in range(1, 41)]
    assert by_node[nodes[1].node_id] == [f"line {n}" for n in range(1, 21)]


@pytest.mark.parametrize(
    ("name", "value"),
    [("forward_syslog", "udp://127.0.0.1:514"), ("forward_otlp", "collector:4318")],
)
def test_a_forwarder_url_of_the_wrong_kind_is_refused_at_start(name, value):
    from fleetrun.core.errors import ValidationError
    from fleetrun.server.settings import Settings

    with pytest.raises(ValidationError, match=f"Setting {name} must start with"):
        Settings.load({name: value}, env={})
