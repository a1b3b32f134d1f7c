"""SSM's document operations through boto3, in process: schemaVersion 2.2 command
documents created, versioned, read back in JSON and YAML, listed with filters and
paged, run with SendCommand, and SSM's modelled exceptions."""

from __future__ import annotations

import json

import pytest
import yaml
from botocore.exceptions import ClientError

from tests.inprocess import App
from tests.ssmclient import ssm_client

RESTART = {
    "schemaVersion": "2.2",
    "description": "Restart a service.",
    "parameters": {
        "service": {"type": "String", "description": "The unit.", "default": "nginx"},
        "executionTimeout": {"type": "String", "default": "600"},
    },
    "mainSteps": [
        {
            "action": "aws:runShellScript",
            "name": "restart",
            "inputs": {
                "runCommand": ["systemctl restart {{ service }}"],
                "timeoutSeconds": "{{ executionTimeout }}",
            },
        }
    ],
}


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def _with(description: str) -> str:
    return json.dumps({**RESTART, "description": description})


def test_create_describe_and_get_a_command_document(app: App) -> None:
    ssm = ssm_client(app)
    made = ssm.create_document(
        Name="Restart-Service",
        Content=json.dumps(RESTART),
        DocumentType="Command",
        VersionName="first",
        Tags=[{"Key": "team", "Value": "web"}],
    )["DocumentDescription"]
    assert made["Name"] == "Restart-Service" and made["Status"] == "Active"
    assert (made["DocumentVersion"], made["LatestVersion"], made["DefaultVersion"]) == (
        "1",
        "1",
        "1",
    )
    assert made["SchemaVersion"] == "2.2" and made["DocumentFormat"] == "JSON"
    assert made["HashType"] == "Sha256" and len(made["Hash"]) == 64
    assert made["PlatformTypes"] == ["Linux", "MacOS"]
    assert made["VersionName"] == "first" and made["Owner"] == "admin"
    assert made["Tags"] == [{"Key": "team", "Value": "web"}]
    assert made["Parameters"] == [
        {"Name": "service", "Type": "String", "Description": "The unit.", "DefaultValue": "nginx"},
        {"Name": "executionTimeout", "Type": "String", "DefaultValue": "600"},
    ]
    got = ssm.get_document(Name="Restart-Service")
    assert got["DocumentFormat"] == "JSON" and got["DocumentType"] == "Command"
    assert json.loads(got["Content"]) == RESTART  # the aws: plugin name comes back
    as_yaml = ssm.get_document(Name="Restart-Service", DocumentFormat="YAML")
    assert yaml.safe_load(as_yaml["Content"]) == RESTART
    native = app.client.get_document("Restart-Service")
    assert native.content["mainSteps"][0]["action"] == "runShellScript"
    by_arn = ssm.describe_document(
        Name="arn:aws:ssm:eu-west-3:123456789012:document/Restart-Service"
    )
    assert by_arn["Document"]["Hash"] == made["Hash"]


def test_a_yaml_document_runs_with_send_command(app: App) -> None:
    (node,) = app.enrol(1)
    ssm = ssm_client(app)
    ssm.create_document(Name="Restart-Yaml", Content=yaml.safe_dump(RESTART), DocumentFormat="YAML")
    assert ssm.get_document(Name="Restart-Yaml")["DocumentFormat"] == "YAML"
    with app.connect(node) as session:
        sent = ssm.send_command(
            InstanceIds=[node.node_id],
            DocumentName="Restart-Yaml",
            Parameters={"service": ["sshd"]},
        )["Command"]
        invoke = session.next_invoke()
    assert sent["DocumentName"] == "Restart-Yaml" and sent["DocumentVersion"] == "1"
    (step,) = invoke.steps
    assert step.action == "runShellScript" and step.timeout_s == 600
    assert "sshd" in step.env.values()


def test_versions_default_version_and_version_names(app: App) -> None:
    ssm = ssm_client(app)
    ssm.create_document(Name="Versioned", Content=_with("one"), VersionName="v-one")
    two = ssm.update_document(
        Name="Versioned", Content=_with("two"), DocumentVersion="$LATEST", VersionName="v-two"
    )["DocumentDescription"]
    assert (two["DocumentVersion"], two["LatestVersion"], two["DefaultVersion"]) == ("2", "2", "1")
    with pytest.raises(ssm.exceptions.DuplicateDocumentContent):
        ssm.update_document(Name="Versioned", Content=_with("two"))
    with pytest.raises(ssm.exceptions.DuplicateDocumentVersionName):
        ssm.update_document(Name="Versioned", Content=_with("three"), VersionName="v-one")
    with pytest.raises(ssm.exceptions.InvalidDocumentVersion):  # only the latest
        ssm.update_document(Name="Versioned", Content=_with("three"), DocumentVersion="1")
    assert ssm.describe_document(Name="Versioned")["Document"]["Description"] == "one"
    named = ssm.describe_document(Name="Versioned", VersionName="v-two")["Document"]
    assert named["DocumentVersion"] == "2" and named["Description"] == "two"
    latest = ssm.get_document(Name="Versioned", DocumentVersion="$LATEST")
    assert latest["VersionName"] == "v-two"
    moved = ssm.update_document_default_version(Name="Versioned", DocumentVersion="2")
    assert moved["Description"] == {
        "Name": "Versioned",
        "DefaultVersion": "2",
        "DefaultVersionName": "v-two",
    }
    versions = ssm.list_document_versions(Name="Versioned")["DocumentVersions"]
    assert [(v["DocumentVersion"], v["VersionName"], v["IsDefaultVersion"]) for v in versions] == [
        ("1", "v-one", False),
        ("2", "v-two", True),
    ]
    pages = list(
        ssm.get_paginator("list_document_versions").paginate(
            Name="Versioned", PaginationConfig={"PageSize": 1}
        )
    )
    assert [[v["DocumentVersion"] for v in p["DocumentVersions"]] for p in pages] == [["1"], ["2"]]
    with pytest.raises(ssm.exceptions.InvalidDocumentVersion):
        ssm.update_document_default_version(Name="Versioned", DocumentVersion="9")
    with pytest.raises(ssm.exceptions.InvalidDocumentVersion):
        ssm.get_document(Name="Versioned", VersionName="nope")
    with pytest.raises(ssm.exceptions.InvalidDocumentOperation):  # the default
        ssm.delete_document(Name="Versioned", DocumentVersion="2")
    ssm.update_document(Name="Versioned", Content=_with("three"))
    ssm.delete_document(Name="Versioned", DocumentVersion="1")
    left = ssm.list_document_versions(Name="Versioned")["DocumentVersions"]
    assert [v["DocumentVersion"] for v in left] == ["2", "3"]
    with pytest.raises(ssm.exceptions.InvalidDocumentVersion):  # deleted
        ssm.update_document_default_version(Name="Versioned", DocumentVersion="1")
    with pytest.raises(ssm.exceptions.InvalidDocumentVersion):
        ssm.get_document(Name="Versioned", DocumentVersion="1")
    ssm.delete_document(Name="Versioned")
    with pytest.raises(ssm.exceptions.InvalidDocument):
        ssm.describe_document(Name="Versioned")


def test_the_built_ins_are_ssms_names(app: App) -> None:
    ssm = ssm_client(app)
    shell = ssm.describe_document(Name="AWS-RunShellScript")["Document"]
    assert shell["Owner"] == "Amazon" and shell["DocumentVersion"] == "1"
    assert shell["PlatformTypes"] == ["Linux", "MacOS"]
    content = json.loads(ssm.get_document(Name="AWS-RunShellScript")["Content"])
    assert content["mainSteps"][0]["action"] == "aws:runShellScript"
    assert "commands" in content["parameters"]
    power = json.loads(ssm.get_document(Name="AWS-RunPowerShellScript")["Content"])
    assert power["mainSteps"][0]["action"] == "aws:runPowerShellScript"
    with pytest.raises(ssm.exceptions.InvalidDocumentOperation):
        ssm.update_document(Name="AWS-RunShellScript", Content=json.dumps(RESTART))
    with pytest.raises(ssm.exceptions.InvalidDocumentOperation):
        ssm.delete_document(Name="AWS-RunShellScript")
    with pytest.raises(ClientError) as reserved:
        ssm.create_document(Name="AWS-Mine", Content=json.dumps(RESTART))
    assert _code(reserved) == "ValidationException"


def test_every_built_in_is_aws_named_even_without_an_aws_twin(app: App) -> None:
    """One mapping (core/ssmnames.py): every built-in is AWS-<name> in SSM's answers,
    and its fleetrun name is taken as well."""
    (node,) = app.enrol(1)
    ssm = ssm_client(app)
    amazon = ssm.list_documents(Filters=[{"Key": "Owner", "Values": ["Amazon"]}])
    assert sorted(d["Name"] for d in amazon["DocumentIdentifiers"]) == [
        "AWS-GetNodeInfo",
        "AWS-RunPowerShellScript",
        "AWS-RunPythonScript",
        "AWS-RunShellScript",
    ]
    python = ssm.describe_document(Name="AWS-RunPythonScript")["Document"]
    assert python["Name"] == "AWS-RunPythonScript" and python["Owner"] == "Amazon"
    assert ssm.describe_document(Name="RunPythonScript")["Document"]["Name"] == (
        "AWS-RunPythonScript"
    )
    for name in ("AWS-RunPythonScript", "RunPythonScript"):
        sent = ssm.send_command(
            InstanceIds=[node.node_id], DocumentName=name, Parameters={"commands": ["print(1)"]}
        )["Command"]
        assert sent["DocumentName"] == "AWS-RunPythonScript"
        assert app.client.get_command(sent["CommandId"]).document_name == "RunPythonScript"
    listed = ssm.list_commands(Filters=[{"key": "DocumentName", "value": "AWS-RunPythonScript"}])
    assert len(listed["Commands"]) == 2
    invocation = ssm.list_command_invocations(CommandId=sent["CommandId"])["CommandInvocations"]
    assert invocation[0]["DocumentName"] == "AWS-RunPythonScript"
    with pytest.raises(ssm.exceptions.InvalidDocument):
        ssm.describe_document(Name="AWS-RunRubyScript")


def test_list_documents_filters_and_pages(app: App) -> None:
    ssm = ssm_client(app)
    for name in ("Alpha-Doc", "Beta-Doc", "Gamma-Doc"):
        tags = [{"Key": "team", "Value": "web" if name != "Beta-Doc" else "db"}]
        ssm.create_document(Name=name, Content=json.dumps(RESTART), Tags=tags)
    power = {
        **RESTART,
        "mainSteps": [{**RESTART["mainSteps"][0], "action": "aws:runPowerShellScript"}],
    }
    ssm.create_document(Name="Win-Doc", Content=json.dumps(power))

    def names(**kwargs: object) -> list[str]:
        return [d["Name"] for d in ssm.list_documents(**kwargs)["DocumentIdentifiers"]]

    mine = ["Alpha-Doc", "Beta-Doc", "Gamma-Doc", "Win-Doc"]
    assert names(Filters=[{"Key": "Owner", "Values": ["Self"]}]) == mine
    amazon = names(Filters=[{"Key": "Owner", "Values": ["Amazon"]}])
    assert "AWS-RunShellScript" in amazon and "AWS-RunPowerShellScript" in amazon
    assert "Alpha-Doc" not in amazon
    assert names(Filters=[{"Key": "Name", "Values": ["Beta", "Gam"]}]) == ["Beta-Doc", "Gamma-Doc"]
    assert names(Filters=[{"Key": "tag:team", "Values": ["web"]}]) == [
        "Alpha-Doc",
        "Gamma-Doc",
    ]
    windows = names(
        Filters=[
            {"Key": "PlatformTypes", "Values": ["Windows"]},
            {"Key": "Owner", "Values": ["Self"]},
        ]
    )
    assert windows == ["Win-Doc"]
    assert names(DocumentFilterList=[{"key": "Name", "value": "Alpha"}]) == ["Alpha-Doc"]
    assert names(Filters=[{"Key": "DocumentType", "Values": ["Automation"]}]) == []
    with pytest.raises(ssm.exceptions.InvalidFilterKey):
        names(Filters=[{"Key": "Colour", "Values": ["blue"]}])
    with pytest.raises(ssm.exceptions.InvalidNextToken):
        names(NextToken="nope")
    pages = list(ssm.get_paginator("list_documents").paginate(PaginationConfig={"PageSize": 2}))
    listed = [d["Name"] for p in pages for d in p["DocumentIdentifiers"]]
    assert listed == sorted(listed) and set(mine) <= set(listed)
    assert all(len(p["DocumentIdentifiers"]) == 2 for p in pages[:-1])
    (alpha,) = ssm.list_documents(Filters=[{"Key": "Name", "Values": ["Alpha"]}])[
        "DocumentIdentifiers"
    ]
    assert alpha["DocumentVersion"] == "1" and alpha["SchemaVersion"] == "2.2"
    assert alpha["Tags"] == [{"Key": "team", "Value": "web"}]


def test_bad_documents_answer_ssms_codes_and_change_nothing(app: App) -> None:
    ssm = ssm_client(app)
    ssm.create_document(Name="Taken", Content=json.dumps(RESTART))
    with pytest.raises(ssm.exceptions.DocumentAlreadyExists):
        ssm.create_document(Name="Taken", Content=json.dumps(RESTART))
    with pytest.raises(ssm.exceptions.InvalidDocumentSchemaVersion):
        ssm.create_document(Name="Old", Content=json.dumps({**RESTART, "schemaVersion": "1.2"}))
    steps = [{**RESTART["mainSteps"][0], "action": "aws:runDocument"}]
    with pytest.raises(ssm.exceptions.InvalidDocumentContent) as plugin:
        ssm.create_document(Name="Other", Content=json.dumps({**RESTART, "mainSteps": steps}))
    assert "aws:runDocument" in plugin.value.response["Error"]["Message"]
    final = [{**RESTART["mainSteps"][0], "finallyStep": True}]
    with pytest.raises(ssm.exceptions.InvalidDocumentContent):
        ssm.create_document(Name="Final", Content=json.dumps({**RESTART, "mainSteps": final}))
    with pytest.raises(ssm.exceptions.InvalidDocumentContent):
        ssm.create_document(Name="Broken", Content="{not json")
    with pytest.raises(ssm.exceptions.MaxDocumentSizeExceeded):
        ssm.create_document(Name="Huge", Content=" " * (64 * 1024 + 1))
    with pytest.raises(ssm.exceptions.InvalidDocument):
        ssm.get_document(Name="Missing")
    with pytest.raises(ssm.exceptions.InvalidDocument):
        ssm.update_document(Name="Missing", Content=json.dumps(RESTART))
    with pytest.raises(ssm.exceptions.InvalidDocument):
        ssm.delete_document(Name="Missing")
    with pytest.raises(ssm.exceptions.InvalidDocument):
        ssm.list_document_versions(Name="Missing")
    with pytest.raises(ssm.exceptions.InvalidDocumentVersion):
        ssm.get_document(Name="Taken", DocumentVersion="latest")
    with pytest.raises(ClientError) as text:
        ssm.create_document(Name="Texty", Content="echo", DocumentFormat="TEXT")
    assert _code(text) == "ValidationException"
    with pytest.raises(ClientError) as automation:
        ssm.create_document(Name="Auto", Content=json.dumps(RESTART), DocumentType="Automation")
    assert _code(automation) == "ValidationException"
    names = [d.name for d in app.client.list_documents()]
    assert "Taken" in names and not {"Old", "Other", "Final", "Broken", "Huge"} & set(names)


def test_document_operations_are_decided_on_the_document(app: App) -> None:
    ssm = ssm_client(app)
    ssm.create_document(Name="Team-Doc", Content=json.dumps(RESTART))
    ssm.create_document(Name="Other-Doc", Content=json.dumps(RESTART))
    admin = app.client
    admin.create_principal("team")
    statements = [
        {"Effect": "Allow", "Action": "fleetrun:ListDocuments", "Resource": "*"},
        {
            "Effect": "Allow",
            "Action": ["fleetrun:GetDocument", "fleetrun:UpdateDocument"],
            "Resource": "frn:fleetrun:document/Team-*",
        },
    ]
    admin.create_policy("team-p", {"Version": "2012-10-17", "Statement": statements})
    admin.attach("team", policy="team-p")
    created = admin.create_token("team", aws=True)
    team = ssm_client(app, (str(created.access_key_id), str(created.secret_access_key)))
    team.update_document(Name="Team-Doc", Content=_with("changed"))
    with pytest.raises(ClientError) as refused:
        team.update_document(Name="Other-Doc", Content=_with("changed"))
    assert _code(refused) == "AccessDeniedException"
    with pytest.raises(ClientError) as reading:
        team.get_document(Name="Other-Doc")
    assert _code(reading) == "AccessDeniedException"
    with pytest.raises(ClientError) as creating:
        team.create_document(Name="Team-New", Content=json.dumps(RESTART))
    assert _code(creating) == "AccessDeniedException"
    assert ssm.describe_document(Name="Other-Doc")["Document"]["LatestVersion"] == "1"
