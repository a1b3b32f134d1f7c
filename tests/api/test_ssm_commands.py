"""SSM's Run Command operations through boto3, in process: listings with Details and
paginators, filters, cancel, the waiter, targets, timeouts, rate control, notification
channels, output limits, and per-node Access Denied decided by fleetrun's policies."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, WaiterError

from tests.inprocess import App
from tests.ssmclient import ssm_client

SHELL = "AWS-RunShellScript"
FAST = {"Delay": 0.05, "MaxAttempts": 200}


def _send(ssm, **kwargs):
    kwargs.setdefault("DocumentName", SHELL)
    kwargs.setdefault("Parameters", {"commands": ["true"]})
    return ssm.send_command(**kwargs)["Command"]


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def test_list_commands_pages_newest_first_with_boto3s_paginator(app: App) -> None:
    (node,) = app.enrol(1)
    ssm = ssm_client(app)
    sent = [_send(ssm, InstanceIds=[node.node_id], Comment=f"c{i}")["CommandId"] for i in range(5)]
    pages = list(ssm.get_paginator("list_commands").paginate(PaginationConfig={"PageSize": 2}))
    assert [len(p["Commands"]) for p in pages] == [2, 2, 1]
    assert [c["CommandId"] for p in pages for c in p["Commands"]] == sent[::-1]
    assert "NextToken" not in pages[-1]
    one = ssm.list_commands(CommandId=sent[2])["Commands"]
    assert [c["Comment"] for c in one] == ["c2"]
    with pytest.raises(ssm.exceptions.InvalidNextToken):
        ssm.list_commands(NextToken="not-a-token")
    token = ssm.list_commands(MaxResults=1)["NextToken"]
    with pytest.raises(ssm.exceptions.InvalidNextToken):  # another listing's token
        ssm.list_command_invocations(NextToken=token)
    with pytest.raises(ssm.exceptions.InvalidCommandId):
        ssm.list_commands(CommandId="00000000-0000-4000-8000-000000000000")


def test_list_filters_by_status_document_stage_and_time(app: App) -> None:
    (node,) = app.enrol(1)
    ssm = ssm_client(app)
    with app.connect(node) as session:
        done = _send(ssm, InstanceIds=[node.node_id])
        session.answer(command_id=done["CommandId"])
        ssm.get_waiter("command_executed").wait(
            CommandId=done["CommandId"], InstanceId=node.node_id, WaiterConfig=FAST
        )
    waiting = _send(ssm, InstanceIds=[node.node_id])

    def ids(*filters: tuple[str, str]) -> list[str]:
        found = ssm.list_commands(Filters=[{"key": k, "value": v} for k, v in filters])
        return [c["CommandId"] for c in found["Commands"]]

    assert ids(("Status", "Success")) == [done["CommandId"]]
    assert ids(("ExecutionStage", "Complete")) == [done["CommandId"]]
    assert ids(("ExecutionStage", "Executing")) == [waiting["CommandId"]]
    assert ids(("DocumentName", SHELL)) == [waiting["CommandId"], done["CommandId"]]
    assert ids(("DocumentName", "AWS-RunPowerShellScript")) == []
    assert ids(("InvokedAfter", "2999-01-01T00:00:00Z")) == []
    assert len(ids(("InvokedBefore", "2999-01-01T00:00:00Z"))) == 2
    assert ids(("Status", "LimitExceeded")) == []
    with pytest.raises(ssm.exceptions.InvalidFilterKey):
        ids(("Colour", "blue"))
    with pytest.raises(ClientError) as bad:
        ids(("Status", "Sleeping"))
    assert _code(bad) == "ValidationException"
    invocations = ssm.list_command_invocations(
        InstanceId=node.node_id, Filters=[{"key": "Status", "value": "Success"}]
    )["CommandInvocations"]
    assert [i["CommandId"] for i in invocations] == [done["CommandId"]]
    on_node = ssm.list_command_invocations(
        InstanceId=node.node_id, Filters=[{"key": "DocumentName", "value": SHELL}]
    )["CommandInvocations"]
    assert [(i["CommandId"], i["DocumentName"]) for i in on_node] == [
        (waiting["CommandId"], SHELL),
        (done["CommandId"], SHELL),
    ]
    with pytest.raises(ssm.exceptions.InvalidFilterKey):  # ListCommands only
        ssm.list_command_invocations(Filters=[{"key": "ExecutionStage", "value": "Complete"}])


def test_invocations_with_details_carry_plugins_and_their_output(app: App) -> None:
    nodes = app.enrol(3)
    ssm = ssm_client(app)
    sessions = [app.connect(n) for n in nodes]
    opened = [s.__enter__() for s in sessions]
    try:
        sent = _send(ssm, Targets=[{"Key": "InstanceIds", "Values": [n.node_id for n in nodes]}])
        for index, session in enumerate(opened):
            session.answer(
                [f"out{index}\n".encode()], exit_code=index, command_id=sent["CommandId"]
            )
        for node in nodes[:1]:
            ssm.get_waiter("command_executed").wait(
                CommandId=sent["CommandId"], InstanceId=node.node_id, WaiterConfig=FAST
            )
        with pytest.raises(WaiterError):  # exit 1: Failed, a failure state of the waiter
            ssm.get_waiter("command_executed").wait(
                CommandId=sent["CommandId"], InstanceId=nodes[1].node_id, WaiterConfig=FAST
            )
    finally:
        for s in sessions:
            s.__exit__(None, None, None)
    pages = ssm.get_paginator("list_command_invocations").paginate(
        CommandId=sent["CommandId"], Details=True, PaginationConfig={"PageSize": 2}
    )
    found = [i for p in pages for i in p["CommandInvocations"]]
    assert [i["InstanceId"] for i in found] == [n.node_id for n in nodes]
    first, second, _ = found
    assert first["Status"] == "Success" and first["DocumentName"] == SHELL
    (plugin,) = first["CommandPlugins"]
    assert plugin["Name"] == "aws:runShellScript" and plugin["Output"] == "out0\n"
    assert plugin["ResponseCode"] == 0 and plugin["Status"] == "Success"
    assert second["Status"] == "Failed" and second["CommandPlugins"][0]["ResponseCode"] == 1
    plain = ssm.list_command_invocations(CommandId=sent["CommandId"])["CommandInvocations"]
    assert all(i["CommandPlugins"] == [] for i in plain)
    command = ssm.list_commands(CommandId=sent["CommandId"])["Commands"][0]
    # named nodes read back as InstanceIds, however they were named (docs/ssm-compat.md)
    assert command["InstanceIds"] == [n.node_id for n in nodes] and command["Targets"] == []
    assert (command["TargetCount"], command["CompletedCount"], command["ErrorCount"]) == (3, 3, 2)
    assert command["Status"] == "Failed" and command["StatusDetails"] == "Failed"


def test_output_is_cut_where_ssm_cuts_it(app: App) -> None:
    (node,) = app.enrol(1)
    ssm = ssm_client(app)
    long = ("x" * 99 + "\n") * 400  # 40,000 characters
    with app.connect(node) as session:
        sent = _send(ssm, InstanceIds=[node.node_id])
        session.answer([long.encode()], command_id=sent["CommandId"])
        ssm.get_waiter("command_executed").wait(
            CommandId=sent["CommandId"], InstanceId=node.node_id, WaiterConfig=FAST
        )
    got = ssm.get_command_invocation(CommandId=sent["CommandId"], InstanceId=node.node_id)
    out = got["StandardOutputContent"]
    assert len(out) == 24_000 and out.endswith("--output truncated--")
    assert out.startswith(long[:1000])  # the head, as SSM keeps it
    (invocation,) = ssm.list_command_invocations(CommandId=sent["CommandId"], Details=True)[
        "CommandInvocations"
    ]
    output = invocation["CommandPlugins"][0]["Output"]
    assert len(output) == 2_500 and output.endswith("---Output truncated---")


@pytest.mark.parametrize(
    ("targets", "expected"),
    [
        ([{"Key": "tag:role", "Values": ["web"]}], {"web01", "web02"}),
        ([{"Key": "tag:role", "Values": ["web", "db"]}], {"web01", "web02", "db03"}),
        ([{"Key": "tag-key", "Values": ["role"]}], {"web01", "web02", "db03"}),
        (
            [{"Key": "tag:role", "Values": ["web"]}, {"Key": "tag:env", "Values": ["prod"]}],
            {"web01"},
        ),
        ([{"Key": "resource-groups:Name", "Values": ["databases"]}], {"db03"}),
    ],
)
def test_targets_select_nodes_as_ssm_does(app: App, targets, expected) -> None:
    (web1,) = app.enrol(1, tags={"role": "web", "env": "prod"}, prefix="web")
    app.enrol(1, tags={"role": "web", "env": "test"}, prefix="web")
    app.enrol(1, tags={"role": "db"}, prefix="db")
    app.client.create_group("databases", tags={"role": "db"})
    ssm = ssm_client(app)
    sent = _send(ssm, Targets=targets)
    assert (
        sent["Targets"] == [{"Key": t["Key"], "Values": t["Values"]} for t in targets]
        and sent["InstanceIds"] == []
    )
    found = ssm.list_command_invocations(CommandId=sent["CommandId"])["CommandInvocations"]
    assert {i["InstanceName"] for i in found} == expected
    assert web1.name == "web01"


def test_bad_targets_and_members_are_refused_with_ssms_codes(app: App) -> None:
    (node,) = app.enrol(1)
    ssm = ssm_client(app)
    cases = [
        (
            {"Targets": [{"Key": "tag:Name", "Values": ["x"]}], "InstanceIds": [node.node_id]},
            "ValidationException",
        ),
        (
            {
                "Targets": [
                    {"Key": "resource-groups:ResourceTypeFilters", "Values": ["AWS::EC2::Instance"]}
                ]
            },
            "ValidationException",
        ),
        (
            {"Targets": [{"Key": "InstanceIds", "Values": ["i-0123456789abcdef0"]}]},
            "InvalidInstanceId",
        ),
        ({"InstanceIds": [node.node_id], "MaxConcurrency": "0"}, "ValidationException"),
        ({"InstanceIds": [node.node_id], "MaxErrors": "abc"}, "ValidationException"),
        ({"InstanceIds": [node.node_id], "TimeoutSeconds": 2592001}, "ValidationException"),
        ({"InstanceIds": [node.node_id], "Comment": "c" * 101}, "ValidationException"),
        ({"InstanceIds": [node.node_id], "OutputS3BucketName": "my-bucket"}, "InvalidOutputFolder"),
        (
            {"InstanceIds": [node.node_id], "AlarmConfiguration": {"Alarms": [{"Name": "a"}]}},
            "ValidationException",
        ),
        (
            {
                "InstanceIds": [node.node_id],
                "Parameters": {"commands": ["true"], "executionTimeout": ["0"]},
            },
            "InvalidParameters",
        ),
        (
            {
                "InstanceIds": [node.node_id],
                "NotificationConfig": {"NotificationArn": "arn:aws:sns:eu-west-3:1:none"},
            },
            "InvalidNotificationConfig",
        ),
        (
            {
                "InstanceIds": [node.node_id],
                "NotificationConfig": {"NotificationArn": "ops", "NotificationEvents": ["Pending"]},
            },
            "InvalidNotificationConfig",
        ),
    ]
    for kwargs, code in cases:
        with pytest.raises(ClientError) as refused:
            _send(ssm, **kwargs)
        assert _code(refused) == code, kwargs
        message = refused.value.response["Error"]["Message"]
        assert message and "Traceback" not in message
    assert list(app.client.list_commands()) == []


def test_timeouts_rate_control_and_channels_reach_the_engine(app: App) -> None:
    (node,) = app.enrol(1)
    app.client.create_channel("ops", target="webhook:https://example.com/hook", secret="s" * 20)
    ssm = ssm_client(app)
    sent = _send(
        ssm,
        InstanceIds=[node.node_id],
        Parameters={
            "commands": ["pwd"],
            "executionTimeout": ["120"],
            "workingDirectory": ["/tmp"],
        },
        TimeoutSeconds=30,
        MaxConcurrency="10%",
        MaxErrors="1",
        NotificationConfig={
            "NotificationArn": "arn:aws:sns:eu-west-3:123456789012:ops",
            "NotificationEvents": ["Success", "Failed"],
            "NotificationType": "Invocation",
        },
        CloudWatchOutputConfig={"CloudWatchOutputEnabled": True},
    )
    native = app.client.get_command(sent["CommandId"])
    assert native.execution_timeout_s == 120 and native.delivery_timeout_s == 30
    assert (native.max_concurrency, native.max_errors) == ("10%", "1")
    assert native.notification is not None and native.notification.channel == "ops"
    assert native.notification.events == ["Success", "Failed"]
    assert sent["NotificationConfig"] == {
        "NotificationArn": "ops",
        "NotificationEvents": ["Success", "Failed"],
        "NotificationType": "Invocation",
    }
    assert sent["TimeoutSeconds"] == 30 and sent["MaxConcurrency"] == "10%"
    with app.connect(node) as session:
        invoke = session.next_invoke()
    assert invoke.execution_timeout_s == 120
    assert invoke.steps[0].working_directory == "/tmp"


def test_a_command_not_delivered_in_time_is_delivery_timed_out(app: App) -> None:
    (node,) = app.enrol(1)
    ssm = ssm_client(app)
    sent = _send(ssm, InstanceIds=[node.node_id], TimeoutSeconds=30)
    app.advance(31)
    waiter = ssm.get_waiter("command_executed")
    with pytest.raises(WaiterError):
        waiter.wait(CommandId=sent["CommandId"], InstanceId=node.node_id, WaiterConfig=FAST)
    got = ssm.get_command_invocation(CommandId=sent["CommandId"], InstanceId=node.node_id)
    assert (got["Status"], got["StatusDetails"]) == ("TimedOut", "Delivery Timed Out")
    (command,) = ssm.list_commands(CommandId=sent["CommandId"])["Commands"]
    assert command["DeliveryTimedOutCount"] == 1 and command["Status"] == "TimedOut"


def test_cancel_command_cancels_what_has_not_started(app: App) -> None:
    nodes = app.enrol(2)
    ssm = ssm_client(app)
    sent = _send(ssm, InstanceIds=[n.node_id for n in nodes])
    answer = ssm.cancel_command(CommandId=sent["CommandId"], InstanceIds=[nodes[0].node_id])
    assert set(answer) == {"ResponseMetadata"}  # SSM answers nothing
    first = ssm.get_command_invocation(CommandId=sent["CommandId"], InstanceId=nodes[0].node_id)
    assert (first["Status"], first["StatusDetails"]) == ("Cancelled", "Cancelled")
    second = ssm.get_command_invocation(CommandId=sent["CommandId"], InstanceId=nodes[1].node_id)
    assert second["Status"] in ("Pending", "Delayed")
    ssm.cancel_command(CommandId=sent["CommandId"])
    (command,) = ssm.list_commands(CommandId=sent["CommandId"])["Commands"]
    assert command["Status"] == "Cancelled"
    with pytest.raises(ssm.exceptions.InvalidCommandId):
        ssm.cancel_command(CommandId="00000000-0000-4000-8000-000000000000")
    with pytest.raises(ssm.exceptions.InvalidInstanceId):
        ssm.cancel_command(CommandId=sent["CommandId"], InstanceIds=["n-0123456789abcdef0"])
    with pytest.raises(ssm.exceptions.DuplicateInstanceId):
        ssm.cancel_command(
            CommandId=sent["CommandId"], InstanceIds=[nodes[0].node_id, nodes[0].node_id]
        )


def _principal(app: App, name: str, *statements: dict) -> tuple[str, str]:
    admin = app.client
    admin.create_principal(name)
    admin.create_policy(f"{name}-p", {"Version": "2012-10-17", "Statement": list(statements)})
    admin.attach(name, policy=f"{name}-p")
    created = admin.create_token(name, aws=True)
    assert created.access_key_id and created.secret_access_key
    return created.access_key_id, created.secret_access_key


def test_per_node_access_denied_through_boto3(app: App) -> None:
    """fleetrun's policies decide each node of an SSM SendCommand, as for the native
    API: a node the principal may not send to gets an Access Denied invocation."""
    (dev,) = app.enrol(1, tags={"env": "dev"}, prefix="dev")
    (prod,) = app.enrol(1, tags={"env": "prod"}, prefix="prod")
    key = _principal(
        app,
        "devops",
        {"Effect": "Allow", "Action": ["fleetrun:Get*", "fleetrun:List*"], "Resource": "*"},
        {
            "Effect": "Allow",
            "Action": "fleetrun:SendCommand",
            "Resource": "frn:fleetrun:document/*",
        },
        {
            "Effect": "Allow",
            "Action": "fleetrun:SendCommand",
            "Resource": "frn:fleetrun:node/*",
            "Condition": {"StringEquals": {"fleetrun:ResourceTag/env": "dev"}},
        },
    )
    ssm = ssm_client(app, key)
    sent = _send(ssm, Targets=[{"Key": "tag-key", "Values": ["env"]}])
    found = {
        i["InstanceId"]: (i["Status"], i["StatusDetails"])
        for i in ssm.list_command_invocations(CommandId=sent["CommandId"])["CommandInvocations"]
    }
    assert found[prod.node_id] == ("Failed", "Access Denied")
    assert found[dev.node_id][0] in ("Pending", "Delayed")
    with pytest.raises(ClientError) as refused:
        ssm.cancel_command(CommandId=sent["CommandId"])
    assert _code(refused) == "AccessDeniedException"
    assert "fleetrun:CancelCommand" in refused.value.response["Error"]["Message"]


def test_a_principal_without_the_action_is_refused_before_anything_runs(app: App) -> None:
    (node,) = app.enrol(1)
    key = _principal(
        app, "reader", {"Effect": "Allow", "Action": "fleetrun:List*", "Resource": "*"}
    )
    ssm = ssm_client(app, key)
    with pytest.raises(ClientError) as refused:
        _send(ssm, InstanceIds=[node.node_id])
    assert _code(refused) == "AccessDeniedException"
    assert list(app.client.list_commands()) == []
    assert ssm.list_commands()["Commands"] == []


def test_past_max_errors_the_rest_is_terminated(app: App) -> None:
    nodes = app.enrol(3)
    ssm = ssm_client(app)
    sent = _send(ssm, InstanceIds=[n.node_id for n in nodes], MaxConcurrency="1", MaxErrors="0")
    order = ssm.list_command_invocations(CommandId=sent["CommandId"])["CommandInvocations"]
    first = next(n for n in nodes if n.node_id == order[0]["InstanceId"])  # released first
    with app.connect(first) as session:
        session.answer(exit_code=1, command_id=sent["CommandId"])
        for node in nodes:
            with pytest.raises(WaiterError):
                ssm.get_waiter("command_executed").wait(
                    CommandId=sent["CommandId"], InstanceId=node.node_id, WaiterConfig=FAST
                )
    found = {
        i["InstanceId"]: (i["Status"], i["StatusDetails"])
        for i in ssm.list_command_invocations(CommandId=sent["CommandId"])["CommandInvocations"]
    }
    assert found.pop(first.node_id) == ("Failed", "Failed")
    assert set(found.values()) == {("Failed", "Terminated")}
    (command,) = ssm.list_commands(CommandId=sent["CommandId"])["Commands"]
    assert (command["Status"], command["ErrorCount"], command["CompletedCount"]) == ("Failed", 1, 3)
