"""SSM's managed-node operations through boto3, in process: DescribeInstanceInformation
(its two filter lists, tag filters, paging, each node decided by fleetrun's policies)
and DeregisterManagedInstance."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from tests.inprocess import App
from tests.ssmclient import ssm_client


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def _ids(found: dict) -> list[str]:
    return [i["InstanceId"] for i in found["InstanceInformationList"]]


def test_describe_shows_each_node_in_ssms_shape(app: App) -> None:
    (node,) = app.enrol(1, tags={"env": "prod"})
    ssm = ssm_client(app)
    with app.connect(node):
        (info,) = ssm.describe_instance_information()["InstanceInformationList"]
    assert info["InstanceId"] == node.node_id and info["PingStatus"] == "Online"
    assert info["ResourceType"] == "ManagedInstance" and info["PlatformType"] == "Linux"
    assert info["Name"] == node.name and info["ComputerName"] == node.name
    assert info["AgentVersion"] == "0.0.0-test" and info["IsLatestVersion"] is False
    assert info["LastPingDateTime"] is not None and info["RegistrationDate"] is not None
    activation = app.client.get_node(node.node_id).activation_id
    assert info["ActivationId"] == activation and info["IamRole"] == ""
    (after,) = ssm.describe_instance_information()["InstanceInformationList"]
    assert after["PingStatus"] == "ConnectionLost"


def test_filters_by_ids_ping_status_platform_and_tags(app: App) -> None:
    web = app.enrol(2, tags={"role": "web", "env": "prod"}, prefix="web")
    (db,) = app.enrol(1, tags={"role": "db"}, prefix="db")
    (bare,) = app.enrol(1, prefix="bare")
    ssm = ssm_client(app)

    def ids(**kwargs: object) -> set[str]:
        return set(_ids(ssm.describe_instance_information(**kwargs)))

    everyone = {n.node_id for n in (*web, db, bare)}
    assert ids() == everyone
    legacy = [{"key": "InstanceIds", "valueSet": [db.node_id, bare.node_id]}]
    assert ids(InstanceInformationFilterList=legacy) == {db.node_id, bare.node_id}
    assert ids(Filters=[{"Key": "PingStatus", "Values": ["ConnectionLost"]}]) == everyone
    assert ids(Filters=[{"Key": "PingStatus", "Values": ["Online"]}]) == set()
    assert ids(Filters=[{"Key": "PlatformTypes", "Values": ["Windows"]}]) == set()
    assert ids(Filters=[{"Key": "ResourceType", "Values": ["ManagedInstance"]}]) == everyone
    assert ids(Filters=[{"Key": "tag:role", "Values": ["web", "db"]}]) == everyone - {bare.node_id}
    assert ids(
        Filters=[{"Key": "tag:role", "Values": ["web"]}, {"Key": "tag:env", "Values": ["prod"]}]
    ) == {n.node_id for n in web}
    assert ids(Filters=[{"Key": "tag-key", "Values": ["env"]}]) == {n.node_id for n in web}
    with app.connect(db):
        assert ids(Filters=[{"Key": "PingStatus", "Values": ["Online"]}]) == {db.node_id}


def test_bad_filters_answer_ssms_codes(app: App) -> None:
    (node,) = app.enrol(1)
    ssm = ssm_client(app)
    with pytest.raises(ssm.exceptions.InvalidFilterKey):
        ssm.describe_instance_information(Filters=[{"Key": "Colour", "Values": ["blue"]}])
    with pytest.raises(ssm.exceptions.InvalidFilterKey):  # tags with other keys
        ssm.describe_instance_information(
            Filters=[
                {"Key": "tag:env", "Values": ["prod"]},
                {"Key": "PingStatus", "Values": ["Online"]},
            ]
        )
    with pytest.raises(ssm.exceptions.InvalidFilterKey):  # both lists
        ssm.describe_instance_information(
            Filters=[{"Key": "PingStatus", "Values": ["Online"]}],
            InstanceInformationFilterList=[{"key": "PingStatus", "valueSet": ["Online"]}],
        )
    with pytest.raises(ssm.exceptions.InvalidInstanceInformationFilterValue):
        ssm.describe_instance_information(Filters=[{"Key": "PingStatus", "Values": ["Asleep"]}])
    with pytest.raises(ssm.exceptions.InvalidInstanceId):
        ssm.describe_instance_information(
            Filters=[{"Key": "InstanceIds", "Values": ["n-0123456789abcdef0"]}]
        )
    with pytest.raises(ssm.exceptions.InvalidInstanceId):
        ssm.describe_instance_information(Filters=[{"Key": "InstanceIds", "Values": ["i-1"]}])
    with pytest.raises(ssm.exceptions.InvalidNextToken):
        ssm.describe_instance_information(NextToken="nope")
    with pytest.raises(ClientError) as too_many:
        ssm.describe_instance_information(MaxResults=51)
    assert _code(too_many) == "ValidationException"
    assert _ids(ssm.describe_instance_information()) == [node.node_id]


def test_pages_with_boto3s_paginator(app: App) -> None:
    nodes = app.enrol(12)
    ssm = ssm_client(app)
    first = ssm.describe_instance_information()
    assert len(first["InstanceInformationList"]) == 10 and first["NextToken"]
    pages = list(
        ssm.get_paginator("describe_instance_information").paginate(
            PaginationConfig={"PageSize": 5}
        )
    )
    assert [len(p["InstanceInformationList"]) for p in pages] == [5, 5, 2]
    listed = [i["InstanceId"] for p in pages for i in p["InstanceInformationList"]]
    assert listed == sorted(n.node_id for n in nodes)
    with pytest.raises(ssm.exceptions.InvalidNextToken):  # another listing's token
        ssm.list_commands(NextToken=first["NextToken"])


def test_each_node_is_listed_only_when_the_policy_allows_it(app: App) -> None:
    (dev,) = app.enrol(1, tags={"env": "dev"}, prefix="dev")
    app.enrol(1, tags={"env": "prod"}, prefix="prod")
    admin = app.client
    admin.create_principal("devs")
    statement = {
        "Effect": "Allow",
        "Action": "fleetrun:ListNodes",
        "Resource": "frn:fleetrun:node/*",
        "Condition": {"StringEquals": {"fleetrun:ResourceTag/env": "dev"}},
    }
    admin.create_policy("devs-p", {"Version": "2012-10-17", "Statement": [statement]})
    admin.attach("devs", policy="devs-p")
    created = admin.create_token("devs", aws=True)
    ssm = ssm_client(app, (str(created.access_key_id), str(created.secret_access_key)))
    assert _ids(ssm.describe_instance_information()) == [dev.node_id]
    with pytest.raises(ClientError) as refused:
        ssm.deregister_managed_instance(InstanceId="mi-" + dev.node_id[2:])
    assert _code(refused) == "AccessDeniedException"
    assert len(app.client.list_nodes()) == 2


def test_deregister_ends_what_the_node_had_not_finished(app: App) -> None:
    (gone, kept) = app.enrol(2)
    ssm = ssm_client(app)
    sent = ssm.send_command(
        InstanceIds=[gone.node_id],
        DocumentName="AWS-RunShellScript",
        Parameters={"commands": ["true"]},
    )["Command"]
    answer = ssm.deregister_managed_instance(InstanceId="mi-" + gone.node_id[2:])
    assert set(answer) == {"ResponseMetadata"}
    assert _ids(ssm.describe_instance_information()) == [kept.node_id]
    found = ssm.get_command_invocation(CommandId=sent["CommandId"], InstanceId=gone.node_id)
    assert (found["Status"], found["StatusDetails"]) == ("Failed", "Undeliverable")
    with pytest.raises(ssm.exceptions.InvalidInstanceId):  # already gone
        ssm.deregister_managed_instance(InstanceId="mi-" + gone.node_id[2:])
    with pytest.raises(ssm.exceptions.InvalidInstanceId):
        ssm.deregister_managed_instance(InstanceId="mi-0123456789abcdefz")
    with pytest.raises(ssm.exceptions.InvalidInstanceId):
        ssm.describe_instance_information(
            Filters=[{"Key": "InstanceIds", "Values": [gone.node_id]}]
        )


def test_pages_are_filled_across_chunks_of_nodes_left_out(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nodes are read a chunk at a time; a page is filled from as many chunks as the
    filters need, and the next page starts after the last node listed."""
    from fleetrun.server.ssm import instances

    monkeypatch.setattr(instances, "CHUNK", 2)
    nodes = [app.enrol(1, tags={"env": "dev" if i % 3 else "prod"})[0] for i in range(12)]
    ssm = ssm_client(app)
    dev = sorted(n.node_id for i, n in enumerate(nodes) if i % 3)
    pages = list(
        ssm.get_paginator("describe_instance_information").paginate(
            Filters=[{"Key": "tag:env", "Values": ["dev"]}], PaginationConfig={"PageSize": 5}
        )
    )
    assert [len(p["InstanceInformationList"]) for p in pages] == [5, 3]
    assert [i["InstanceId"] for p in pages for i in p["InstanceInformationList"]] == dev
