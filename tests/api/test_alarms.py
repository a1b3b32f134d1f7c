"""Output alarms in process: lines that nodes print are counted per period, the alarm
moves INSUFFICIENT_DATA → ALARM → OK with the server's clock set by the test, each
change is an event that a rule delivers to a real webhook receiver, and the counts and
the history are readable through the SDK and the CLI."""

from __future__ import annotations

import json
import time

import pytest

from fleetrun.core.errors import NotFoundError, ValidationError
from tests.e2e.receivers import WebhookReceiver
from tests.harness import wait_for
from tests.inprocess import App

SECRET = "a-webhook-secret-of-some-length"
ALARM_EVENTS = {"source": ["fleetrun"], "detail-type": ["Output Alarm State-change Notification"]}


def _print(app: App, node, output: bytes, document: str | None = None) -> str:
    command = app.client.send_command(script="true", node_ids=[node.node_id])
    with app.connect(node) as session:
        session.answer([output], command_id=command.id)
        app.client.wait(command.id, timeout_s=30)
    return command.id


def _state(app: App, name: str, state: str, timeout_s: float = 10.0):
    return wait_for(
        lambda: (a := app.client.get_alarm(name)).state == state and a,
        timeout_s=timeout_s,
        what=f"alarm {name} in {state}",
    )


def test_an_alarm_on_error_fires_a_webhook_within_5s_and_returns_to_ok(app):
    (node,) = app.enrol(1)
    # The lines land in the minute that starts now: a minute ending between the count
    # and the read would show its successor, empty, as the newest datapoint.
    app.advance(60 - app.clock.now().timestamp() % 60 + 1)
    with WebhookReceiver(SECRET) as hook:
        app.client.create_rule(
            "alarms",
            pattern=ALARM_EVENTS,
            targets=[{"target": f"webhook:{hook.url}", "secret": SECRET}],
        )
        app.client.create_alarm("errors", pattern="ERROR", threshold=1, period="1m")
        _state(app, "errors", "OK")  # no output in the last period: silence is no error
        sent = time.monotonic()
        _print(app, node, b"starting\nERROR: disk full\ndone\n")
        alarm = _state(app, "errors", "ALARM", timeout_s=5.0)
        assert time.monotonic() - sent < 5.0
        assert "Threshold crossed" in alarm.state_reason
        point = alarm.datapoints[0]
        assert (point.lines, point.matched) == (3, 1)

        # Both deliveries recorded before the clock jumps: a delivery still in flight
        # when two minutes pass would be past its lease, and is rightly sent again.
        wait_for(
            lambda: len(app.client.list_rule_deliveries("alarms", state="delivered")) == 2,
            what="the OK and ALARM deliveries recorded",
        )
        app.advance(121)  # two silent minutes later
        _state(app, "errors", "OK")
        delivered = wait_for(
            lambda: len(hook.delivered()) >= 3 and hook.delivered(), what="3 hooks"
        )
    states = [json.loads(r.body)["detail"]["state"]["value"] for r in delivered]
    assert states == ["OK", "ALARM", "OK"]
    history = app.client.get_alarm_history("errors")
    assert [(h.old_state, h.new_state) for h in history] == [
        ("ALARM", "OK"),
        ("OK", "ALARM"),
        ("INSUFFICIENT_DATA", "OK"),
    ]


def test_stored_output_wakes_the_evaluator_without_waiting_for_a_sweep(tmp_path):
    app = App(tmp_path / "app", sweep_interval_s=3600.0).start()
    try:
        (node,) = app.enrol(1)
        app.client.create_alarm("boom", pattern="boom", threshold=1, period="1m")
        _print(app, node, b"boom\n")
        _state(app, "boom", "ALARM")  # no sweep falls due in this test: the store woke it
    finally:
        app.close()


def test_lines_split_across_chunks_count_once_and_scope_limits_the_nodes(app):
    web, db = app.enrol(2, tags={"role": "web"})[0], app.enrol(1, tags={"role": "db"})[0]
    app.client.create_alarm(
        "web-fail",
        pattern=r"FAIL(ED)? \d+",
        regex=True,
        threshold=3,
        period="1m",
        targets=[{"key": "tag:role", "values": ["web"]}],
    )
    command = app.client.send_command(script="true", node_ids=[web.node_id])
    from fleetrun.core import protocol
    from fleetrun.core.statuses import InvocationStatus

    # Counted by the minute each chunk is stored in: the four land in one minute, or a
    # loaded machine storing them across a minute's end counts 2 and 1, never 3.
    app.advance(60 - app.clock.now().timestamp() % 60 + 1)

    with app.connect(web) as session:
        iid = session.start(command.id)
        chunks = [b"FAIL 1\nFAI", b"LED 2\n", b"ok\nFAIL 3", b"\n"]
        for seq, data in enumerate(chunks, start=2):
            session.send(
                protocol.Output(
                    invocation_id=iid, seq=seq, step=0, stream="stdout", data=protocol.encode(data)
                )
            )
        session.send(
            protocol.State(invocation_id=iid, seq=6, status=InvocationStatus.SUCCESS, exit_code=0)
        )
        app.client.wait(command.id, timeout_s=30)
    alarm = _state(app, "web-fail", "ALARM")
    assert (alarm.datapoints[0].lines, alarm.datapoints[0].matched) == (4, 3)
    _print(app, db, b"FAIL 4\nFAIL 5\nFAIL 6\n")  # not in scope
    app.advance(121)  # the period that breached is over, and the next
    alarm = _state(app, "web-fail", "OK")
    assert alarm.datapoints[0].lines == 0


def test_alarms_cli_create_show_list_history_delete(app):
    result = app.cli(
        "alarms",
        "create",
        "oops",
        "--pattern",
        "oops",
        "--threshold",
        "2",
        "--period",
        "5m",
        "--evaluation-periods",
        "2",
        "--treat-missing",
        "breaching",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    created = json.loads(result.stdout)
    assert created["period_s"] == 300 and created["treat_missing"] == "breaching"
    shown = app.cli("alarms", "show", "oops")
    assert shown.exit_code == 0 and "oops" in shown.stdout and "MATCHED" in shown.stdout
    listed = json.loads(app.cli("alarms", "list", "--json").stdout)
    assert [a["name"] for a in listed] == ["oops"]
    assert app.cli("alarms", "history", "oops", "--json").exit_code == 0
    assert app.cli("alarms", "delete", "oops").exit_code == 0
    with pytest.raises(NotFoundError):
        app.client.get_alarm("oops")


def test_alarms_cli_scope_options_name_nodes_tags_and_a_group_as_send_does(app):
    (web,) = app.enrol(1, tags={"role": "web"})
    app.client.create_group("g", tags={"role": "web"})
    argv = ["--pattern", "x", "--threshold", "1", "--period", "1m", "--json"]
    scope = ["--node", web.name, "--tag", "role=web", "--tag", "role=db", "--group", "g"]
    result = app.cli("alarms", "create", "scoped", *argv, *scope)
    assert result.exit_code == 0, result.stderr
    targets = {t["key"]: t["values"] for t in json.loads(result.stdout)["targets"]}
    assert targets == {"NodeIds": [web.node_id], "tag:role": ["web", "db"], "group": ["g"]}
    shown = app.cli("alarms", "show", "scoped")
    assert "tag:role=web,db" in shown.stdout and "group=g" in shown.stdout


@pytest.mark.parametrize(
    ("args", "sentence"),
    [
        (["--pattern", "(", "--regex"], "not a valid regular expression"),
        (["--pattern", "x", "--period", "7s"], "The period must be a multiple of 10s"),
        (["--pattern", "x", "--threshold", "0"], "threshold"),
        (["--pattern", "x", "--period", "soon"], "malformed"),
    ],
)
def test_a_bad_alarm_is_refused_with_one_sentence_and_not_stored(app, args, sentence):
    base = {"--threshold": "1", "--period": "1m"}
    for flag, value in zip(args[::2], args[1::2], strict=False):
        base[flag] = value
    argv = [x for pair in base.items() for x in pair if x != "--regex"]
    if "--regex" in args:
        argv.append("--regex")
    result = app.cli("alarms", "create", "bad", *argv)
    assert result.exit_code != 0
    assert sentence in result.stderr and "Traceback" not in result.stderr
    assert app.client.list_alarms() == []


def test_an_alarm_name_taken_is_a_conflict(app):
    app.client.create_alarm("dup", pattern="x", threshold=1, period=60)
    with pytest.raises(Exception, match="exists"):
        app.client.create_alarm("dup", pattern="y", threshold=1, period=60)
    with pytest.raises(ValidationError):
        app.client.create_alarm("bad name!", pattern="y", threshold=1, period=60)
