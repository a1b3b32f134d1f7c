"""SSM's tag operations through boto3, in process: a node's tags (which targets and
policies read) and a document's, changed and listed, decided by fleetrun's policies."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from tests.inprocess import App
from tests.ssmclient import ssm_client

DOC = {
    "schemaVersion": "2.2",
    "mainSteps": [
        {"action": "aws:runShellScript", "name": "one", "inputs": {"runCommand": ["true"]}}
    ],
}


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def _tags(ssm, kind: str, resource: str) -> dict[str, str]:
    found = ssm.list_tags_for_resource(ResourceType=kind, ResourceId=resource)["TagList"]
    return {t["Key"]: t["Value"] for t in found}


def test_a_nodes_tags_change_and_targets_follow(app: App) -> None:
    (node,) = app.enrol(1, tags={"env": "dev", "old": "yes"})
    ssm = ssm_client(app)
    assert _tags(ssm, "ManagedInstance", node.node_id) == {"env": "dev", "old": "yes"}
    ssm.add_tags_to_resource(
        ResourceType="ManagedInstance",
        ResourceId="mi-" + node.node_id[2:],
        Tags=[{"Key": "env", "Value": "prod"}, {"Key": "role", "Value": "web"}],
    )
    ssm.remove_tags_from_resource(
        ResourceType="ManagedInstance", ResourceId=node.node_id, TagKeys=["old", "never-had"]
    )
    assert _tags(ssm, "ManagedInstance", node.node_id) == {"env": "prod", "role": "web"}
    assert app.client.get_node(node.node_id).tags == {"env": "prod", "role": "web"}
    sent = ssm.send_command(
        Targets=[{"Key": "tag:env", "Values": ["prod"]}],
        DocumentName="AWS-RunShellScript",
        Parameters={"commands": ["true"]},
    )["Command"]
    assert sent["TargetCount"] == 1
    found = ssm.describe_instance_information(Filters=[{"Key": "tag:role", "Values": ["web"]}])
    assert [i["InstanceId"] for i in found["InstanceInformationList"]] == [node.node_id]


def test_a_documents_tags(app: App) -> None:
    ssm = ssm_client(app)
    ssm.create_document(Name="Tagged", Content=json.dumps(DOC), Tags=[{"Key": "a", "Value": "1"}])
    ssm.add_tags_to_resource(
        ResourceType="Document", ResourceId="Tagged", Tags=[{"Key": "b", "Value": "2"}]
    )
    ssm.remove_tags_from_resource(ResourceType="Document", ResourceId="Tagged", TagKeys=["a"])
    assert _tags(ssm, "Document", "Tagged") == {"b": "2"}
    assert ssm.describe_document(Name="Tagged")["Document"]["Tags"] == [{"Key": "b", "Value": "2"}]
    listed = ssm.list_documents(Filters=[{"Key": "tag:b", "Values": ["2"]}])
    assert [d["Name"] for d in listed["DocumentIdentifiers"]] == ["Tagged"]


def test_bad_resources_and_tags_answer_ssms_codes(app: App) -> None:
    (node,) = app.enrol(1, tags={"env": "dev"})
    ssm = ssm_client(app)
    with pytest.raises(ssm.exceptions.InvalidResourceType):
        ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId="x")
    with pytest.raises(ssm.exceptions.InvalidResourceId):
        ssm.list_tags_for_resource(ResourceType="ManagedInstance", ResourceId="i-123")
    with pytest.raises(ssm.exceptions.InvalidResourceId):
        ssm.list_tags_for_resource(
            ResourceType="ManagedInstance", ResourceId="mi-0123456789abcdef0"
        )
    with pytest.raises(ssm.exceptions.InvalidResourceId):
        ssm.list_tags_for_resource(ResourceType="Document", ResourceId="Missing")
    with pytest.raises(ssm.exceptions.InvalidResourceId):
        ssm.add_tags_to_resource(
            ResourceType="Document",
            ResourceId="AWS-RunShellScript",
            Tags=[{"Key": "a", "Value": "1"}],
        )
    too_many = [{"Key": f"k{i}", "Value": "v"} for i in range(50)]
    with pytest.raises(ssm.exceptions.TooManyTagsError):
        ssm.add_tags_to_resource(
            ResourceType="ManagedInstance", ResourceId=node.node_id, Tags=too_many
        )
    with pytest.raises(ClientError) as bad:
        ssm.add_tags_to_resource(
            ResourceType="ManagedInstance",
            ResourceId=node.node_id,
            Tags=[{"Key": "bad<key>", "Value": "v"}],
        )
    assert _code(bad) == "ValidationException"
    assert _tags(ssm, "ManagedInstance", node.node_id) == {"env": "dev"}


def test_tagging_is_decided_on_the_tags_before_and_after(app: App) -> None:
    """As the native route: a principal allowed to tag dev nodes cannot tag one out of
    dev (nor into it), and reads only what GetNode allows."""
    (dev,) = app.enrol(1, tags={"env": "dev"}, prefix="dev")
    (prod,) = app.enrol(1, tags={"env": "prod"}, prefix="prod")
    admin = app.client
    admin.create_principal("devs")
    statement = {
        "Effect": "Allow",
        "Action": ["fleetrun:TagNode", "fleetrun:GetNode"],
        "Resource": "frn:fleetrun:node/*",
        "Condition": {"StringEquals": {"fleetrun:ResourceTag/env": "dev"}},
    }
    admin.create_policy("devs-p", {"Version": "2012-10-17", "Statement": [statement]})
    admin.attach("devs", policy="devs-p")
    created = admin.create_token("devs", aws=True)
    devs = ssm_client(app, (str(created.access_key_id), str(created.secret_access_key)))
    devs.add_tags_to_resource(
        ResourceType="ManagedInstance", ResourceId=dev.node_id, Tags=[{"Key": "a", "Value": "1"}]
    )
    for node, tags in (
        (dev, [{"Key": "env", "Value": "prod"}]),
        (prod, [{"Key": "a", "Value": "1"}]),
    ):
        with pytest.raises(ClientError) as refused:
            devs.add_tags_to_resource(
                ResourceType="ManagedInstance", ResourceId=node.node_id, Tags=tags
            )
        assert _code(refused) == "AccessDeniedException"
    with pytest.raises(ClientError) as reading:
        devs.list_tags_for_resource(ResourceType="ManagedInstance", ResourceId=prod.node_id)
    assert _code(reading) == "AccessDeniedException"
    assert app.client.get_node(dev.node_id).tags == {"env": "dev", "a": "1"}
    assert app.client.get_node(prod.node_id).tags == {"env": "prod"}
    ssm = ssm_client(app)
    ssm.create_document(Name="Theirs", Content=json.dumps(DOC))
    with pytest.raises(ClientError) as document:
        devs.add_tags_to_resource(
            ResourceType="Document", ResourceId="Theirs", Tags=[{"Key": "a", "Value": "1"}]
        )
    assert _code(document) == "AccessDeniedException"
    assert "fleetrun:TagDocument" in document.value.response["Error"]["Message"]


def _key_for(app: App, name: str, *statements: dict) -> tuple[str, str]:
    admin = app.client
    admin.create_principal(name)
    admin.create_policy(f"{name}-p", {"Version": "2012-10-17", "Statement": list(statements)})
    admin.attach(name, policy=f"{name}-p")
    created = admin.create_token(name, aws=True)
    return str(created.access_key_id), str(created.secret_access_key)


@pytest.mark.parametrize(
    "actions",
    [
        ["fleetrun:TagDocument", "fleetrun:GetDocument"],
        ["ssm:AddTagsToResource", "ssm:RemoveTagsFromResource", "ssm:ListTagsForResource"],
    ],
)
def test_a_documents_tags_are_decided_as_tag_document_in_either_vocabulary(
    app: App, actions: list[str]
) -> None:
    """The gate and the document agree: fleetrun:TagDocument (ssm:AddTagsToResource on a
    document) tags documents and nothing else, whichever vocabulary grants it."""
    (node,) = app.enrol(1, tags={"env": "dev"})
    admin = ssm_client(app)
    admin.create_document(Name="Shared", Content=json.dumps(DOC))
    resource = (
        "frn:fleetrun:document/*"
        if actions[0].startswith("fleetrun:")
        else "arn:aws:ssm:*:*:document/*"
    )
    ssm = ssm_client(
        app, _key_for(app, "docs", {"Effect": "Allow", "Action": actions, "Resource": resource})
    )
    ssm.add_tags_to_resource(
        ResourceType="Document", ResourceId="Shared", Tags=[{"Key": "team", "Value": "ops"}]
    )
    assert _tags(ssm, "Document", "Shared") == {"team": "ops"}
    ssm.remove_tags_from_resource(ResourceType="Document", ResourceId="Shared", TagKeys=["team"])
    assert _tags(admin, "Document", "Shared") == {}
    for call in (
        lambda: ssm.add_tags_to_resource(
            ResourceType="ManagedInstance",
            ResourceId=node.node_id,
            Tags=[{"Key": "a", "Value": "1"}],
        ),
        lambda: ssm.list_tags_for_resource(ResourceType="ManagedInstance", ResourceId=node.node_id),
    ):
        with pytest.raises(ClientError) as refused:
            call()
        assert _code(refused) == "AccessDeniedException"
    assert app.client.get_node(node.node_id).tags == {"env": "dev"}
    records = app.client.request("GET", "/v1/audit", params={"action": "fleetrun:TagDocument"})
    tagged = [r for r in records["items"] if r.get("path") == "/" and r["principal"] == "docs"]
    assert len(tagged) == 2 and {r["status"] for r in tagged} == {200}
